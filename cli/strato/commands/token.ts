/** `strato token issue|revoke` — openstackclient's token commands. */
import { TokensClient } from '../../../proto/gen/strato/identity/v1/identity.js'
import type { Command } from '../registry.js'

/** openstackclient prints expiry as `2024-05-01T12:00:00+0000`. */
const expires = (iso: string) => iso.replace(/\.\d+Z$|Z$/, '+0000')

export const tokenCommands: Command[] = [
  {
    name: 'token issue',
    summary: 'Issue new token',
    description: 'Shows the token the CLI authenticates with: taken from the cache while it is valid, otherwise newly issued.',
    output: 'show',
    async run(ctx) {
      // Ask the server about it, so a cached token that has been revoked is replaced rather than shown.
      await ctx.call(TokensClient, 'validateToken', {})
      const t = await ctx.tokenInfo()
      return {
        kind: 'show',
        data: {
          expires: expires(t.expiresAt),
          id: t.token,
          ...(t.projectId ? { project_id: t.projectId } : {}),
          ...(t.domainId ? { domain_id: t.domainId } : {}),
          user_id: t.userId,
        },
      }
    },
  },
  {
    name: 'token revoke',
    summary: 'Revoke existing token',
    output: 'none',
    positionals: [{ name: 'token', help: 'Token to be deleted' }],
    async run(ctx, a) {
      const token = a.pos('token')
      await ctx.call(TokensClient, 'revokeToken', { token })
      // Revoking our own token: do not keep using it from the cache.
      if ((await ctx.tokenInfo()).token === token) ctx.session.invalidate()
      return { kind: 'none' }
    },
  },
]

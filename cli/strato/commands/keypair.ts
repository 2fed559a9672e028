/** `strato keypair …` — openstackclient's compute keypair commands. Keypairs belong to a user, not a project. */
import { chmodSync, readFileSync, writeFileSync } from 'node:fs'
import { KeypairsClient, type Keypair } from '../../../proto/gen/strato/compute/v1/compute.js'
import type { Context } from '../context.js'
import { CliError, UsageError } from '../errors.js'
import { findUser, flag, opt } from '../identity.js'
import type { Args, Command } from '../registry.js'
import { expandHome, iso } from '../resources.js'
import { deleteEach } from './delete.js'

const userOpts = [
  opt('--user', 'user', '<user>', "The owner of the keypair, when not the caller (admin only) (name or ID)"),
  opt('--user-domain', 'user_domain', '<user-domain>', 'Domain the user belongs to (name or ID), to resolve a user name'),
]

async function userIdOf(ctx: Context, a: Args): Promise<string> {
  const u = a.str('user')
  return u ? (await findUser(ctx, u, a.str('user_domain'))).id ?? '' : ''
}

const keypairFields = (k: Keypair) => ({
  created_at: iso(k.createdAt),
  fingerprint: k.fingerprint ?? '',
  id: k.name ?? '',
  name: k.name ?? '',
  type: k.type ?? 'ssh',
  user_id: k.userId ?? '',
})

export const keypairCommands: Command[] = [
  {
    name: 'keypair create',
    summary: 'Create new public or private key for server ssh access',
    description:
      'With --public-key, imports that OpenSSH public key (ssh-rsa of 2048 bits or more, ssh-ed25519, ecdsa-sha2-nistp256/384/521). ' +
      'Without it, the server generates an ed25519 key pair and the private key is printed (or written to --private-key): it is shown only once.',
    output: 'show',
    positionals: [{ name: 'name', help: 'New public or private key name' }],
    options: [
      opt('--public-key', 'public_key', '<file>', 'Filename for public key to add. If not used, generates a private key'),
      opt('--private-key', 'private_key', '<file>', 'Filename for private key to save. If not used, print private key in console'),
      opt('--type', 'type', '<type>', "Keypair type: ssh (the only one)"),
      ...userOpts,
    ],
    async run(ctx, a) {
      const pubFile = a.str('public_key')
      const privFile = a.str('private_key')
      if (pubFile && privFile) throw new UsageError('strato keypair create: give --public-key or --private-key, not both')
      const type = a.str('type')
      if (type !== undefined && type !== 'ssh') throw new UsageError(`strato keypair create: --type '${type}' is not supported; Strato keypairs are ssh`)
      let publicKey = ''
      if (pubFile) {
        const file = expandHome(pubFile, ctx.env)
        try {
          publicKey = readFileSync(file, 'utf8').trim()
        } catch (err) {
          throw new CliError(`Key file ${pubFile} not found: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err })
        }
      }
      const k = await ctx.call(KeypairsClient, 'createKeypair', { name: a.pos('name'), publicKey, userId: await userIdOf(ctx, a) })
      if (k.privateKey) {
        if (!privFile) {
          // As openstackclient does: the generated private key itself is the output.
          ctx.io.stdout(k.privateKey.endsWith('\n') ? k.privateKey : k.privateKey + '\n')
          return { kind: 'none' }
        }
        const file = expandHome(privFile, ctx.env)
        try {
          writeFileSync(file, k.privateKey, { mode: 0o600 })
          chmodSync(file, 0o600)
        } catch (err) {
          throw new CliError(`Key file ${privFile} can not be saved: ${(err as Error).message}`, { cause: err })
        }
      }
      return { kind: 'show', data: keypairFields(k) }
    },
  },
  {
    name: 'keypair list',
    summary: 'List key fingerprints',
    output: 'list',
    options: userOpts,
    async run(ctx, a) {
      const keys = (await ctx.call(KeypairsClient, 'listKeypairs', { userId: await userIdOf(ctx, a) })).keypairs ?? []
      return { kind: 'list', columns: ['Name', 'Fingerprint', 'Type'], rows: keys.map((k) => [k.name ?? '', k.fingerprint ?? '', k.type ?? 'ssh']) }
    },
  },
  {
    name: 'keypair show',
    summary: 'Display key details',
    output: 'show',
    positionals: [{ name: 'keypair', help: 'Public or private key to display (name only)' }],
    options: [flag('--public-key', 'public_key', 'Show only bare public key paired with the generated key'), ...userOpts],
    async run(ctx, a) {
      const k = await ctx.call(KeypairsClient, 'getKeypair', { name: a.pos('keypair'), userId: await userIdOf(ctx, a) })
      if (a.flag('public_key')) {
        ctx.io.stdout((k.publicKey ?? '') + '\n')
        return { kind: 'none' }
      }
      return { kind: 'show', data: keypairFields(k) }
    },
  },
  {
    name: 'keypair delete',
    summary: 'Delete public or private key(s)',
    output: 'none',
    positionals: [{ name: 'key', help: 'Name of key(s) to delete (name only)', variadic: true }],
    options: userOpts,
    async run(ctx, a) {
      const userId = await userIdOf(ctx, a)
      await deleteEach(ctx, 'key', 'keys', a.posList('key'), async (name) => {
        await ctx.call(KeypairsClient, 'deleteKeypair', { name, userId })
      })
      return { kind: 'none' }
    },
  },
]

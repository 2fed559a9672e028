/** `strato domain …` — openstackclient's identity v3 domain commands. */
import { AlreadyExists, FailedPrecondition } from '../../../proto/errors.js'
import { DomainsClient } from '../../../proto/gen/strato/identity/v1/identity.js'
import { domainFields, enableDisable, findDomain, opt, orShow } from '../identity.js'
import type { Command } from '../registry.js'
import { deleteEach } from './delete.js'

export const domainCommands: Command[] = [
  {
    name: 'domain create',
    summary: 'Create new domain',
    output: 'show',
    positionals: [{ name: 'domain-name', help: 'New domain name' }],
    options: [opt('--description', 'description', '<description>', 'New domain description'), ...enableDisable('domain'), orShow('domain')],
    async run(ctx, a) {
      const name = a.pos('domain-name')
      try {
        const d = await ctx.call(DomainsClient, 'createDomain', {
          name,
          description: a.str('description') ?? '',
          ...(a.bool('enabled') !== undefined ? { enabled: a.bool('enabled') } : {}),
        })
        return { kind: 'show', data: domainFields(d) }
      } catch (err) {
        if (err instanceof AlreadyExists && a.flag('or_show')) return { kind: 'show', data: domainFields(await findDomain(ctx, name)) }
        throw err
      }
    },
  },
  {
    name: 'domain list',
    summary: 'List domains',
    output: 'list',
    options: [opt('--name', 'name', '<name>', 'The domain name'), { flags: ['--enabled'], dest: 'enabled', kind: 'flag', help: 'List only enabled domains' }],
    async run(ctx, a) {
      const res = await ctx.call(DomainsClient, 'listDomains', { name: a.str('name') ?? '', ...(a.flag('enabled') ? { enabled: true } : {}) })
      return {
        kind: 'list',
        columns: ['ID', 'Name', 'Enabled', 'Description'],
        rows: (res.domains ?? []).map((d) => [d.id ?? '', d.name ?? '', d.enabled ?? false, d.description ?? '']),
      }
    },
  },
  {
    name: 'domain show',
    summary: 'Display domain details',
    output: 'show',
    positionals: [{ name: 'domain', help: 'Domain to display (name or ID)' }],
    async run(ctx, a) {
      return { kind: 'show', data: domainFields(await findDomain(ctx, a.pos('domain'))) }
    },
  },
  {
    name: 'domain set',
    summary: 'Set domain properties',
    output: 'none',
    positionals: [{ name: 'domain', help: 'Domain to modify (name or ID)' }],
    options: [opt('--name', 'name', '<name>', 'New domain name'), opt('--description', 'description', '<description>', 'New domain description'), ...enableDisable('domain')],
    async run(ctx, a) {
      const d = await findDomain(ctx, a.pos('domain'))
      await ctx.call(DomainsClient, 'updateDomain', {
        id: d.id ?? '',
        ...(a.str('name') !== undefined ? { name: a.str('name') } : {}),
        ...(a.str('description') !== undefined ? { description: a.str('description') } : {}),
        ...(a.bool('enabled') !== undefined ? { enabled: a.bool('enabled') } : {}),
      })
      return { kind: 'none' }
    },
  },
  {
    name: 'domain delete',
    summary: 'Delete domain(s)',
    description: 'An enabled domain cannot be deleted: disable it first with `strato domain set <domain> --disable`.',
    output: 'none',
    positionals: [{ name: 'domain', help: 'Domain(s) to delete (name or ID)', variadic: true }],
    async run(ctx, a) {
      await deleteEach(ctx, 'domain', 'domains', a.posList('domain'), async (ref) => {
        const d = await findDomain(ctx, ref)
        try {
          await ctx.call(DomainsClient, 'deleteDomain', { id: d.id ?? '' })
        } catch (err) {
          // The server says what and why; add the CLI spelling of the fix.
          if (err instanceof FailedPrecondition && d.enabled) throw new FailedPrecondition(`${err.message} — run: strato domain set ${ref} --disable`, { cause: err })
          throw err
        }
      })
      return { kind: 'none' }
    },
  },
]

/** `strato catalog list|show` — the service catalog, as openstackclient prints it. */
import { NotFound } from '../../../proto/errors.js'
import { CatalogClient, type CatalogEntry } from '../../../proto/gen/strato/identity/v1/identity.js'
import type { Command } from '../registry.js'

/** One line of region, then `  interface: url`, per endpoint (openstackclient's catalog format). */
const endpoints = (e: CatalogEntry) => (e.endpoints ?? []).map((ep) => `${ep.region ? ep.region + '\n' : ''}  ${ep.interface ?? ''}: ${ep.url ?? ''}`).join('\n')

export const catalogCommands: Command[] = [
  {
    name: 'catalog list',
    summary: 'List services in the service catalog',
    output: 'list',
    async run(ctx) {
      const catalog = (await ctx.call(CatalogClient, 'listCatalog', {})).catalog ?? []
      return { kind: 'list', columns: ['Name', 'Type', 'Endpoints'], rows: catalog.map((e) => [e.name ?? '', e.type ?? '', endpoints(e)]) }
    },
  },
  {
    name: 'catalog show',
    summary: 'Display service catalog details',
    output: 'show',
    positionals: [{ name: 'service', help: 'Service to display (type or name)' }],
    async run(ctx, a) {
      const ref = a.pos('service')
      const catalog = (await ctx.call(CatalogClient, 'listCatalog', {})).catalog ?? []
      const e = catalog.find((x) => x.type === ref) ?? catalog.find((x) => x.name === ref)
      if (!e) throw new NotFound(`No service with a type, name or ID of '${ref}' exists; see 'strato catalog list'.`)
      return { kind: 'show', data: { endpoints: endpoints(e), id: e.id ?? '', name: e.name ?? '', type: e.type ?? '' } }
    },
  },
]

/** `strato flavor …` — openstackclient's compute flavor commands. */
import { PermissionDenied } from '../../../proto/errors.js'
import { FlavorsClient, type Flavor } from '../../../proto/gen/strato/compute/v1/compute.js'
import type { Context } from '../context.js'
import { UsageError } from '../errors.js'
import { findProject, flag, opt } from '../identity.js'
import { Dict } from '../output.js'
import type { Command } from '../registry.js'
import { findFlavor, intOpt, keyValues } from '../resources.js'
import { deleteEach } from './delete.js'

const projectDomainOpt = opt('--project-domain', 'project_domain', '<project-domain>', 'Domain the project belongs to (name or ID), to resolve a project name')
const propertyOpt = (help: string) => ({ ...opt('--property', 'property', '<key=value>', help), kind: 'list' as const })

/** The Field/Value shape openstackclient prints for a flavor. */
async function flavorFields(ctx: Context, f: Flavor) {
  let access: string[] | null = null
  if (f.isPublic === false) {
    try {
      access = ((await ctx.call(FlavorsClient, 'listFlavorAccess', { flavorId: f.id ?? '' })).access ?? []).map((x) => x.projectId ?? '')
    } catch (err) {
      if (!(err instanceof PermissionDenied)) throw err
    }
  }
  return {
    'OS-FLV-DISABLED:disabled': false,
    'OS-FLV-EXT-DATA:ephemeral': f.ephemeral ?? 0,
    description: f.description || null,
    disk: f.disk ?? 0,
    id: f.id ?? '',
    name: f.name ?? '',
    'os-flavor-access:is_public': f.isPublic ?? true,
    properties: new Dict(f.extraSpecs ?? {}),
    ram: f.ram ?? 0,
    rxtx_factor: (f.rxtxFactor ?? 1).toFixed(1),
    swap: f.swap ?? 0,
    vcpus: f.vcpus ?? 0,
    ...(access ? { access_project_ids: access } : {}),
  }
}

export const flavorCommands: Command[] = [
  {
    name: 'flavor create',
    summary: 'Create new flavor',
    output: 'show',
    positionals: [{ name: 'flavor-name', help: 'New flavor name' }],
    options: [
      opt('--id', 'id', '<id>', "Unique flavor ID; 'auto' creates a UUID (default: auto)"),
      opt('--ram', 'ram', '<size-mb>', 'Memory size in MB (default 256M)'),
      opt('--disk', 'disk', '<size-gb>', 'Disk size in GB (default 0G)'),
      opt('--ephemeral', 'ephemeral', '<size-gb>', 'Ephemeral disk size in GB (default 0G)'),
      opt('--swap', 'swap', '<size-mb>', 'Additional swap space size in MB (default 0M)'),
      opt('--vcpus', 'vcpus', '<vcpus>', 'Number of vcpus (default 1)'),
      flag('--public', 'is_public', 'Flavor is available to other projects (default)'),
      flag('--private', 'is_public', 'Flavor is not available to other projects', false),
      propertyOpt('Property to add for this flavor (repeat option to set multiple properties)'),
      opt('--project', 'project', '<project>', 'Allow <project> to access private flavor (name or ID); must be used with --private'),
      projectDomainOpt,
      opt('--description', 'description', '<description>', 'Description for the flavor'),
    ],
    async run(ctx, a) {
      const c = 'flavor create'
      const project = a.str('project')
      if (project && a.bool('is_public') !== false) throw new UsageError('strato flavor create: --project is only allowed with --private')
      const f = await ctx.call(FlavorsClient, 'createFlavor', {
        id: a.str('id') ?? 'auto',
        name: a.pos('flavor-name'),
        vcpus: intOpt(c, a, 'vcpus', '--vcpus', 1) ?? 1,
        ram: intOpt(c, a, 'ram', '--ram', 1) ?? 256,
        disk: intOpt(c, a, 'disk', '--disk') ?? 0,
        ephemeral: intOpt(c, a, 'ephemeral', '--ephemeral') ?? 0,
        swap: intOpt(c, a, 'swap', '--swap') ?? 0,
        isPublic: a.bool('is_public') ?? true,
        description: a.str('description') ?? '',
        extraSpecs: keyValues(c, '--property', a.list('property')),
      })
      if (project) {
        const p = await findProject(ctx, project, a.str('project_domain'))
        await ctx.call(FlavorsClient, 'addFlavorAccess', { flavorId: f.id ?? '', projectId: p.id ?? '' })
      }
      return { kind: 'show', data: await flavorFields(ctx, f) }
    },
  },
  {
    name: 'flavor list',
    summary: 'List flavors',
    output: 'list',
    options: [
      flag('--public', 'which', 'List only public flavors (default)'),
      flag('--private', 'which', 'List only private flavors', false),
      opt('--min-ram', 'min_ram', '<ram>', 'Filter by minimum RAM (MB)'),
      opt('--min-disk', 'min_disk', '<disk>', 'Filter by minimum disk (GB)'),
      flag('--all', 'all', 'List all flavors, whether public or private'),
      flag('--long', 'long', 'List additional fields in output'),
    ],
    async run(ctx, a) {
      const c = 'flavor list'
      const which = a.flag('all') ? 'all' : a.bool('which') === false ? 'private' : 'public'
      const flavors = (await ctx.call(FlavorsClient, 'listFlavors', { isPublic: which, minRam: intOpt(c, a, 'min_ram', '--min-ram') ?? 0, minDisk: intOpt(c, a, 'min_disk', '--min-disk') ?? 0 })).flavors ?? []
      const columns = ['ID', 'Name', 'RAM', 'Disk', 'Ephemeral', 'VCPUs', 'Is Public']
      const row = (f: Flavor) => [f.id ?? '', f.name ?? '', f.ram ?? 0, f.disk ?? 0, f.ephemeral ?? 0, f.vcpus ?? 0, f.isPublic ?? true]
      if (a.flag('long')) {
        return {
          kind: 'list',
          columns: [...columns, 'Swap', 'RXTX Factor', 'Properties'],
          rows: flavors.map((f) => [...row(f), f.swap || '', (f.rxtxFactor ?? 1).toFixed(1), new Dict(f.extraSpecs ?? {})]),
        }
      }
      return { kind: 'list', columns, rows: flavors.map(row) }
    },
  },
  {
    name: 'flavor show',
    summary: 'Display flavor details',
    output: 'show',
    positionals: [{ name: 'flavor', help: 'Flavor to display (name or ID)' }],
    async run(ctx, a) {
      return { kind: 'show', data: await flavorFields(ctx, await findFlavor(ctx, a.pos('flavor'))) }
    },
  },
  {
    name: 'flavor set',
    summary: 'Set flavor properties',
    description: 'Flavors are immutable except their description, properties (extra specs) and, for private flavors, the projects that may use them.',
    output: 'none',
    positionals: [{ name: 'flavor', help: 'Flavor to modify (name or ID)' }],
    options: [
      propertyOpt('Property to add or modify for this flavor (repeat option to set multiple properties)'),
      opt('--project', 'project', '<project>', 'Set flavor access to project (name or ID) (admin only)'),
      projectDomainOpt,
      opt('--description', 'description', '<description>', 'Set description for the flavor'),
    ],
    async run(ctx, a) {
      const f = await findFlavor(ctx, a.pos('flavor'))
      const props = keyValues('flavor set', '--property', a.list('property'))
      if (a.str('description') !== undefined || Object.keys(props).length) {
        await ctx.call(FlavorsClient, 'updateFlavor', {
          id: f.id ?? '',
          ...(a.str('description') !== undefined ? { description: a.str('description') } : {}),
          setExtraSpecs: props,
        })
      }
      const project = a.str('project')
      if (project) {
        const p = await findProject(ctx, project, a.str('project_domain'))
        await ctx.call(FlavorsClient, 'addFlavorAccess', { flavorId: f.id ?? '', projectId: p.id ?? '' })
      }
      return { kind: 'none' }
    },
  },
  {
    name: 'flavor unset',
    summary: 'Unset flavor properties',
    output: 'none',
    positionals: [{ name: 'flavor', help: 'Flavor to modify (name or ID)' }],
    options: [
      { ...opt('--property', 'property', '<key>', 'Property to remove from flavor (repeat option to unset multiple properties)'), kind: 'list' },
      opt('--project', 'project', '<project>', 'Remove flavor access from project (name or ID) (admin only)'),
      projectDomainOpt,
    ],
    async run(ctx, a) {
      const f = await findFlavor(ctx, a.pos('flavor'))
      if (a.list('property').length) await ctx.call(FlavorsClient, 'updateFlavor', { id: f.id ?? '', unsetExtraSpecs: a.list('property') })
      const project = a.str('project')
      if (project) {
        const p = await findProject(ctx, project, a.str('project_domain'))
        await ctx.call(FlavorsClient, 'removeFlavorAccess', { flavorId: f.id ?? '', projectId: p.id ?? '' })
      }
      return { kind: 'none' }
    },
  },
  {
    name: 'flavor delete',
    summary: 'Delete flavor(s)',
    output: 'none',
    positionals: [{ name: 'flavor', help: 'Flavor(s) to delete (name or ID)', variadic: true }],
    async run(ctx, a) {
      await deleteEach(ctx, 'flavor', 'flavors', a.posList('flavor'), async (ref) => {
        const f = await findFlavor(ctx, ref)
        await ctx.call(FlavorsClient, 'deleteFlavor', { id: f.id ?? '' })
      })
      return { kind: 'none' }
    },
  },
]

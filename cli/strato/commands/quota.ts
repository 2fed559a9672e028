/** `strato quota show|set` — openstackclient's quota commands over Strato's one quota service (compute, network and image limits). */
import { QuotasClient, type QuotaSet } from '../../../proto/gen/strato/compute/v1/compute.js'
import { UsageError } from '../errors.js'
import { findProject, flag, opt } from '../identity.js'
import type { Command, OptionSpec } from '../registry.js'
import { intOpt } from '../resources.js'

/** openstackclient's resource names (and `quota set` flags) → Strato's. */
const RESOURCES: Array<[string, string, string]> = [
  ['cores', 'cores', 'New value for the cores quota'],
  ['instances', 'instances', 'New value for the instances quota'],
  ['ram', 'ram', 'New value for the ram quota (MiB)'],
  ['key-pairs', 'key_pairs', 'New value for the key-pairs quota (per user)'],
  ['properties', 'metadata_items', 'New value for the properties (metadata items) quota'],
  ['server-groups', 'server_groups', 'New value for the server-groups quota'],
  ['server-group-members', 'server_group_members', 'New value for the server-group-members quota'],
  ['networks', 'networks', 'New value for the networks quota'],
  ['subnets', 'subnets', 'New value for the subnets quota'],
  ['ports', 'ports', 'New value for the ports quota'],
  ['floating-ips', 'floating_ips', 'New value for the floating-ips quota'],
  ['routers', 'routers', 'New value for the routers quota'],
  ['secgroups', 'security_groups', 'New value for the secgroups quota'],
  ['secgroup-rules', 'security_group_rules', 'New value for the secgroup-rules quota'],
  ['images', 'images', 'New value for the images quota'],
  ['image-size-total', 'image_size_total', 'New value for the total size of images quota (MiB)'],
  ['volumes', 'volumes', 'New value for the volumes quota'],
  ['gigabytes', 'gigabytes', 'New value for the gigabytes quota (GiB of volumes and snapshots)'],
  ['snapshots', 'snapshots', 'New value for the snapshots quota'],
]
const cliName = new Map(RESOURCES.map(([cli, strato]) => [strato, cli]))
/** The quotas `--volume-type` makes per type (Cinder's `<resource>_<type>`, shown so by openstackclient). */
const PER_TYPE = ['volumes', 'gigabytes', 'snapshots']
const PER_TYPE_NAME = /^(volumes|gigabytes|snapshots)_./

const quotaRows = (q: QuotaSet, usage: boolean): unknown[][] =>
  (q.items ?? [])
    .map((i) => ({ name: cliName.get(i.resource ?? '') ?? (PER_TYPE_NAME.test(i.resource ?? '') ? i.resource ?? '' : (i.resource ?? '').replaceAll('_', '-')), limit: i.limit ?? 0, inUse: i.inUse ?? 0 }))
    .sort((a, b) => a.name.localeCompare(b.name))
    .map((r) => (usage ? [r.name, r.limit, r.inUse] : [r.name, r.limit]))

export const quotaCommands: Command[] = [
  {
    name: 'quota show',
    summary: 'Show quotas for project',
    description: 'Limits are shown as a Resource/Limit list (-1 is unlimited); --usage adds what the project uses.',
    output: 'list',
    positionals: [{ name: 'project', help: 'Show quotas for this project (name or ID; default: the project of the token)', optional: true }],
    options: [
      flag('--default', 'default', 'Show default quotas for <project>'),
      flag('--usage', 'usage', 'Show details about quotas usage'),
      opt('--project-domain', 'project_domain', '<project-domain>', 'Domain the project belongs to (name or ID), to resolve a project name'),
    ],
    async run(ctx, a) {
      const ref = a.positionals.project === undefined ? undefined : a.pos('project')
      const projectId = ref ? (await findProject(ctx, ref, a.str('project_domain'))).id ?? '' : ''
      const q = await ctx.call(QuotasClient, a.flag('default') ? 'getDefaultQuota' : 'getQuota', { projectId })
      const usage = a.flag('usage') && !a.flag('default')
      return { kind: 'list', columns: usage ? ['Resource', 'Limit', 'In Use'] : ['Resource', 'Limit'], rows: quotaRows(q, usage) }
    },
  },
  {
    name: 'quota set',
    summary: 'Set quotas for project',
    description: 'Cloud admin only. -1 means unlimited. A limit below the current usage is accepted and blocks new usage. With --volume-type, --volumes, --gigabytes and --snapshots set the quotas of that volume type only (volumes_<type>, …); other limits cannot be given with it.',
    output: 'none',
    positionals: [{ name: 'project', help: 'Set quotas for this project (name or ID)' }],
    options: [
      ...RESOURCES.map(([cli, , help]): OptionSpec => opt(`--${cli}`, `q_${cli}`, `<${cli}>`, help)),
      opt('--volume-type', 'volume_type', '<volume-type>', 'Set quotas for a specific <volume-type> (--volumes, --gigabytes, --snapshots)'),
      opt('--project-domain', 'project_domain', '<project-domain>', 'Domain the project belongs to (name or ID), to resolve a project name'),
    ],
    async run(ctx, a) {
      const limits: Record<string, number> = {}
      const type = a.str('volume_type')
      if (type === '') throw new UsageError(`strato quota set: --volume-type needs a volume type name. See 'strato help quota set'.`)
      for (const [cli, strato] of RESOURCES) {
        const v = intOpt('quota set', a, `q_${cli}`, `--${cli}`, -1)
        if (v === undefined) continue
        if (type !== undefined && !PER_TYPE.includes(strato)) throw new UsageError(`strato quota set: --${cli} is not a per-type quota; with --volume-type give only --volumes, --gigabytes or --snapshots. See 'strato help quota set'.`)
        limits[type !== undefined ? `${strato}_${type}` : strato] = v
      }
      if (Object.keys(limits).length === 0) throw new UsageError(`strato quota set: give at least one limit, e.g. --instances 20${type !== undefined ? ' (with --volume-type: --volumes, --gigabytes or --snapshots)' : ''}. See 'strato help quota set'.`)
      const p = await findProject(ctx, a.pos('project'), a.str('project_domain'))
      await ctx.call(QuotasClient, 'updateQuota', { projectId: p.id ?? '', limits })
      return { kind: 'none' }
    },
  },
]

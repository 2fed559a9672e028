/** `strato server group …` — openstackclient's server group commands (compute API 2.64 shape: one policy, rules). */
import { ServerGroupsClient, type ServerGroup } from '../../../proto/gen/strato/compute/v1/servers.js'
import { UsageError } from '../errors.js'
import { flag, opt } from '../identity.js'
import { Dict } from '../output.js'
import type { Command } from '../registry.js'
import { keyValues } from '../resources.js'
import { deleteEach } from './delete.js'
import { listOpt } from './network.js'

const POLICIES = ['affinity', 'anti-affinity', 'soft-affinity', 'soft-anti-affinity']

const groupFields = (g: ServerGroup) => ({
  id: g.id ?? '',
  members: (g.members ?? []).join(', '),
  name: g.name ?? '',
  policy: g.policy ?? '',
  project_id: g.projectId ?? '',
  rules: new Dict(g.policy === 'anti-affinity' && (g.maxServerPerHost ?? 1) !== 1 ? { max_server_per_host: String(g.maxServerPerHost) } : {}),
  user_id: g.userId ?? '',
})

export const serverGroupCommands: Command[] = [
  {
    name: 'server group create',
    summary: 'Create a new server group',
    description: "Servers join a group at creation: 'strato server create --hint group=<group> …'. anti-affinity places at most max_server_per_host members (default 1) on one host; affinity puts them all on one host; the soft policies prefer the same, without refusing.",
    output: 'show',
    positionals: [{ name: 'name', help: 'New server group name' }],
    options: [
      opt('--policy', 'policy', '<policy>', `Add a policy to <name> (${POLICIES.join(', ')}; default: affinity)`),
      listOpt('--rule', 'rule', '<key=value>', 'A rule of the policy: max_server_per_host=<n> (anti-affinity only)'),
    ],
    async run(ctx, a) {
      const policy = a.str('policy') ?? 'affinity'
      if (!POLICIES.includes(policy)) throw new UsageError(`strato server group create: --policy '${policy}' is not one of ${POLICIES.join(', ')}`)
      const rules = keyValues('server group create', '--rule', a.list('rule'))
      for (const k of Object.keys(rules)) if (k !== 'max_server_per_host') throw new UsageError(`strato server group create: --rule '${k}' is unknown; the one rule is max_server_per_host=<n>`)
      const max = rules.max_server_per_host === undefined ? 0 : Number(rules.max_server_per_host)
      if (rules.max_server_per_host !== undefined && (!Number.isInteger(max) || max < 1)) throw new UsageError(`strato server group create: --rule max_server_per_host must be a whole number ≥ 1, got '${rules.max_server_per_host}'`)
      return { kind: 'show', data: groupFields(await ctx.call(ServerGroupsClient, 'createServerGroup', { name: a.pos('name'), policy, maxServerPerHost: max })) }
    },
  },
  {
    name: 'server group list',
    summary: 'List all server groups',
    output: 'list',
    options: [flag('--all-projects', 'all_projects', 'Display information from all projects (admin only)'), flag('--long', 'long', 'List additional fields in output')],
    async run(ctx, a) {
      const groups = (await ctx.call(ServerGroupsClient, 'listServerGroups', { allProjects: a.flag('all_projects') })).serverGroups ?? []
      const long = a.flag('long')
      return {
        kind: 'list',
        columns: long ? ['ID', 'Name', 'Policy', 'Members', 'Project Id', 'User Id'] : ['ID', 'Name', 'Policy'],
        rows: groups.map((g) => {
          const f = groupFields(g)
          return long ? [f.id, f.name, f.policy, f.members, f.project_id, f.user_id] : [f.id, f.name, f.policy]
        }),
      }
    },
  },
  {
    name: 'server group show',
    summary: 'Display server group details',
    output: 'show',
    positionals: [{ name: 'server-group', help: 'server group to display (name or ID)' }],
    async run(ctx, a) {
      return { kind: 'show', data: groupFields(await ctx.call(ServerGroupsClient, 'getServerGroup', { id: a.pos('server-group') })) }
    },
  },
  {
    name: 'server group delete',
    summary: 'Delete existing server group(s)',
    description: 'Its members keep running, no longer in a group.',
    output: 'none',
    positionals: [{ name: 'server-group', help: 'server group(s) to delete (name or ID)', variadic: true }],
    async run(ctx, a) {
      await deleteEach(ctx, 'server group', 'server groups', a.posList('server-group'), async (ref) => {
        await ctx.call(ServerGroupsClient, 'deleteServerGroup', { id: ref })
      })
      return { kind: 'none' }
    },
  },
]

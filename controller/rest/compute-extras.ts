/**
 * The smaller compute resources over REST: limits (from the quota engine),
 * availability zones, and server groups.
 *
 * Per microversion: limits lose the nova-network fields (floating IPs,
 * security groups) at 2.36, maxImageMeta at 2.39, the personality limits at
 * 2.57; server groups gain project_id/user_id at 2.13, the soft policies at
 * 2.15, and at 2.64 show one `policy` with `rules` instead of `policies`.
 */
import { FailedPrecondition, InvalidArgument, NotFound } from '../../proto/errors.js'
import { isUuid } from '../../proto/ids.js'
import type { ServerGroupView } from '../compute/server-groups.js'
import { availabilityZones } from '../compute/zones.js'
import { QUOTA_DEFAULTS } from '../quota/quota.js'
import { bodyObject, type AuthedRequest, type RestRequest, type Route } from './http.js'
import type { RestDomain } from './services.js'
import { microversion, mv } from './compute-microversion.js'
import { boolParam, callerOf, intParam, isoMicro, onlyQuery, requireAdmin } from './compute-common.js'
import { onlyKeys } from './body.js'

const C = 'strato.compute.v1'

/** GET /limits: the project's quota limits and usage under Nova's names. */
async function limits(d: RestDomain, req: RestRequest) {
  const a = (req as AuthedRequest).auth
  // Whose limits the policy decided (GetQuota: a reader of that project, or a cloud admin).
  const projectId = req.query.get('tenant_id') || a.projectId
  if (!projectId) throw new FailedPrecondition('limits belong to projects: use a project-scoped token or give tenant_id')
  const items = new Map((await d.quota.report(projectId, a.userId)).map((i) => [i.resource, i]))
  const max = (r: string) => items.get(r)?.limit ?? -1
  const used = (r: string) => items.get(r)?.inUse ?? 0
  const v = microversion(req)
  const absolute: Record<string, number> = {
    maxTotalInstances: max('instances'), maxTotalCores: max('cores'), maxTotalRAMSize: max('ram'), maxServerMeta: max('metadata_items'),
    maxTotalKeypairs: max('key_pairs'), maxServerGroups: max('server_groups'), maxServerGroupMembers: max('server_group_members'),
    totalInstancesUsed: used('instances'), totalCoresUsed: used('cores'), totalRAMUsed: used('ram'), totalServerGroupsUsed: used('server_groups'),
  }
  if (v < mv('2.36')) {
    Object.assign(absolute, {
      maxTotalFloatingIps: max('floating_ips'), totalFloatingIpsUsed: used('floating_ips'),
      maxSecurityGroups: max('security_groups'), totalSecurityGroupsUsed: used('security_groups'), maxSecurityGroupRules: max('security_group_rules'),
    })
  }
  // Nova's defaults for what Strato does not count: image metadata items and injected files.
  if (v < mv('2.39')) absolute.maxImageMeta = 128
  if (v < mv('2.57')) Object.assign(absolute, { maxPersonality: 5, maxPersonalitySize: 10240 })
  return { limits: { rate: [], absolute } }
}

/** Nova's quota-set keys and the quota engine's resources; null: a limit Strato does not keep, shown with Nova's default. */
const QUOTA_KEYS: Array<[key: string, resource: string | null, nova: number, until?: string]> = [
  ['instances', 'instances', 10], ['cores', 'cores', 20], ['ram', 'ram', 51200], ['metadata_items', 'metadata_items', 128],
  ['key_pairs', 'key_pairs', 100], ['server_groups', 'server_groups', 10], ['server_group_members', 'server_group_members', 10],
  ['floating_ips', 'floating_ips', 10, '2.36'], ['fixed_ips', null, -1, '2.36'], ['security_groups', 'security_groups', 10, '2.36'],
  ['security_group_rules', 'security_group_rules', 20, '2.36'],
  ['injected_files', null, 5, '2.57'], ['injected_file_content_bytes', null, 10240, '2.57'], ['injected_file_path_bytes', null, 255, '2.57'],
]

const quotaKeys = (req: RestRequest) => QUOTA_KEYS.filter(([, , , until]) => !until || microversion(req) < mv(until))

/** A quota set as Nova shows it: limits, or with `detail` each as {limit, in_use, reserved}. */
async function quotaSet(d: RestDomain, req: RestRequest, projectId: string, how: 'limits' | 'detail' | 'defaults') {
  const items = new Map((how === 'defaults' ? [] : await d.quota.report(projectId, (req as AuthedRequest).auth.userId)).map((i) => [i.resource, i]))
  const out: Record<string, unknown> = { id: projectId }
  for (const [key, resource, nova] of quotaKeys(req)) {
    const item = resource ? items.get(resource) : undefined
    const limit = how === 'defaults' ? (resource ? QUOTA_DEFAULTS[resource] ?? nova : nova) : item?.limit ?? nova
    out[key] = how === 'detail' ? { limit, in_use: item?.inUse ?? 0, reserved: 0 } : limit
  }
  return out
}

/**
 * The project of a quota-set call. Strato keeps quotas per project only: a
 * user's limits are their project's (what Nova shows for a user without
 * quotas of their own), so `user_id` may be read but not set.
 */
function quotaProject(req: RestRequest, write = false): string {
  if (write && req.query.has('user_id')) throw new InvalidArgument('Strato keeps quotas per project, not per user: set them without user_id', { field: 'user_id' })
  return req.params.tenant!
}

function groupView(req: RestRequest, g: ServerGroupView): Record<string, unknown> {
  const v = microversion(req)
  const base = { id: g.id, name: g.name, members: g.members }
  if (v >= mv('2.64')) return { ...base, policy: g.policy, rules: g.policy === 'anti-affinity' ? { max_server_per_host: g.maxServerPerHost } : {}, project_id: g.projectId, user_id: g.userId }
  return { ...base, policies: [g.policy], metadata: {}, ...(v >= mv('2.13') ? { project_id: g.projectId, user_id: g.userId } : {}) }
}

async function createGroup(d: RestDomain, req: RestRequest) {
  const b = await bodyObject(req, 'server_group')
  onlyKeys(b, ['name', 'policies', 'policy', 'rules'])
  const v = microversion(req)
  let policy: unknown
  let maxServerPerHost: number | undefined
  if (v >= mv('2.64')) {
    if (b.policies !== undefined) throw new InvalidArgument("Additional properties are not allowed ('policies' was unexpected); from 2.64 give 'policy'", { field: 'policies' })
    policy = b.policy
    if (b.rules !== undefined) {
      const rules = b.rules as Record<string, unknown>
      if (rules === null || typeof rules !== 'object' || Object.keys(rules).some((k) => k !== 'max_server_per_host')) throw new InvalidArgument("rules may hold only 'max_server_per_host'", { field: 'rules' })
      const m = rules.max_server_per_host
      if (m !== undefined) {
        if (!(typeof m === 'number' || (typeof m === 'string' && /^\d+$/.test(m)))) throw new InvalidArgument('max_server_per_host must be a positive integer', { field: 'rules.max_server_per_host' })
        maxServerPerHost = Number(m)
      }
    }
  } else {
    if (b.policy !== undefined) throw new InvalidArgument("Additional properties are not allowed ('policy' was unexpected) before 2.64; give 'policies'", { field: 'policy' })
    if (!Array.isArray(b.policies) || b.policies.length !== 1) throw new InvalidArgument("'policies' must be a list of exactly one policy", { field: 'policies' })
    policy = b.policies[0]
    if (v < mv('2.15') && (policy === 'soft-affinity' || policy === 'soft-anti-affinity')) throw new InvalidArgument(`policy ${policy} needs microversion 2.15`, { field: 'policies' })
  }
  if (typeof policy !== 'string') throw new InvalidArgument("'policy' is a required string", { field: 'policy' })
  if (typeof b.name !== 'string') throw new InvalidArgument("'name' is a required string", { field: 'name' })
  const g = await d.serverGroups.create({ name: b.name, policy, ...(maxServerPerHost !== undefined ? { maxServerPerHost } : {}) }, callerOf(req))
  return { server_group: groupView(req, g) }
}

const SG = `${C}.ServerGroups`

export function extraRoutes(d: RestDomain): Route[] {
  const groupOf = (req: RestRequest) => {
    const id = req.params.id!
    if (!isUuid(id)) throw new NotFound(`Instance group ${id} could not be found.`)
    return d.serverGroups.get(id, callerOf(req))
  }
  return [
    {
      method: 'GET', path: '/os-quota-sets/:tenant', policy: `${C}.Quotas/GetQuota`, target: (req) => ({ projectId: req.params.tenant }),
      handler: async (req) => (onlyQuery(req, ['user_id']), { body: { quota_set: await quotaSet(d, req, quotaProject(req), 'limits') } }),
    },
    {
      method: 'GET', path: '/os-quota-sets/:tenant/detail', policy: `${C}.Quotas/GetQuota`, target: (req) => ({ projectId: req.params.tenant }),
      handler: async (req) => (onlyQuery(req, ['user_id']), { body: { quota_set: await quotaSet(d, req, quotaProject(req), 'detail') } }),
    },
    {
      method: 'GET', path: '/os-quota-sets/:tenant/defaults', policy: `${C}.Quotas/GetDefaultQuota`,
      handler: async (req) => ({ body: { quota_set: await quotaSet(d, req, req.params.tenant!, 'defaults') } }),
    },
    {
      method: 'PUT', path: '/os-quota-sets/:tenant', policy: `${C}.Quotas/UpdateQuota`,
      handler: async (req) => {
        onlyQuery(req, ['user_id'])
        const projectId = quotaProject(req, true)
        const b = await bodyObject(req, 'quota_set')
        const known = new Map(quotaKeys(req).map(([key, resource]) => [key, resource]))
        const limits: Record<string, number> = {}
        for (const [key, value] of Object.entries(b)) {
          if (key === 'force') continue // Strato does not check usage against a new limit: nothing to force
          if (!known.has(key)) throw new InvalidArgument(`Additional properties are not allowed ('${key}' was unexpected)`, { field: key })
          const resource = known.get(key)
          if (!resource) throw new InvalidArgument(`${key}: Strato keeps no such limit`, { field: key })
          const n = typeof value === 'string' && /^-?\d+$/.test(value) ? Number(value) : value
          if (typeof n !== 'number' || !Number.isInteger(n)) throw new InvalidArgument(`${key} must be an integer`, { field: key })
          limits[resource] = n
        }
        await d.identity.getProject({ id: projectId }) // 404 for a project that does not exist
        await d.quota.update(projectId, limits)
        const { id: _id, ...set } = await quotaSet(d, req, projectId, 'limits')
        return { body: { quota_set: set } }
      },
    },
    { method: 'GET', path: '/limits', policy: `${C}.Quotas/GetQuota`, target: (req) => ({ projectId: req.query.get('tenant_id') ?? '' }), handler: async (req) => (onlyQuery(req, ['tenant_id']), { body: await limits(d, req) }) },
    {
      method: 'GET', path: '/os-availability-zone', policy: `${C}.AvailabilityZones/ListAvailabilityZones`,
      handler: async () => ({
        body: { availabilityZoneInfo: (await availabilityZones(d.hosts, d.defaultAvailabilityZone, false)).map((z) => ({ zoneName: z.name, zoneState: { available: z.available }, hosts: null })) },
      }),
    },
    {
      method: 'GET', path: '/os-availability-zone/detail', policy: `${C}.AvailabilityZones/ListAvailabilityZones`,
      handler: async (req) => {
        requireAdmin(req, 'the zones\' hosts')
        const zones = await availabilityZones(d.hosts, d.defaultAvailabilityZone, true)
        return {
          body: {
            availabilityZoneInfo: zones.map((z) => ({
              zoneName: z.name, zoneState: { available: z.available },
              hosts: z.hosts.length ? Object.fromEntries(z.hosts.map((h) => [h.host, { 'nova-compute': { available: h.available, active: h.active, updated_at: isoMicro(h.updatedAt) } }])) : null,
            })),
          },
        }
      },
    },
    {
      method: 'GET', path: '/os-server-groups', policy: `${SG}/ListServerGroups`,
      handler: async (req) => {
        onlyQuery(req, ['all_projects', 'limit', 'offset'])
        let all = await d.serverGroups.list(boolParam(req, 'all_projects'), callerOf(req))
        const offset = intParam(req, 'offset') ?? 0
        const limit = intParam(req, 'limit')
        all = all.slice(offset, limit === undefined ? undefined : offset + limit)
        return { body: { server_groups: all.map((g) => groupView(req, g)) } }
      },
    },
    { method: 'POST', path: '/os-server-groups', policy: `${SG}/CreateServerGroup`, handler: async (req) => ({ body: await createGroup(d, req) }) },
    { method: 'GET', path: '/os-server-groups/:id', policy: `${SG}/GetServerGroup`, handler: async (req) => ({ body: { server_group: groupView(req, await groupOf(req)) } }) },
    {
      method: 'DELETE', path: '/os-server-groups/:id', policy: `${SG}/DeleteServerGroup`,
      handler: async (req) => {
        const g = await groupOf(req)
        await d.serverGroups.delete(g.id, callerOf(req))
        return { status: 204 }
      },
    },
  ]
}

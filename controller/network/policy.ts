/**
 * Policy entries for strato.network.v1 (the mechanism is in identity/policy.ts).
 * The table checks the caller's role in its own project (members change,
 * readers read; a project named in a create must be the caller's unless the
 * caller is a cloud admin). Ownership of the resource itself (Neutron's
 * `admin_or_owner`, shared and external networks) is checked by the catalogs.
 */
import type { PolicyEntry, Target, TargetLookup } from '../identity/policy.js'
import { projectTarget } from '../identity/policy.js'
import type { AuthContext } from '../identity/model.js'

const N = 'strato.network.v1'

/** The caller's own scope. */
const scope = (_req: unknown, c: AuthContext): Target => ({ ...(c.projectId ? { projectId: c.projectId } : {}), ...(c.domainId ? { domainId: c.domainId } : {}) })
/** Where a new resource goes: the project named in the request, else the caller's. */
const newIn = (req: { projectId?: string }, c: AuthContext, l: TargetLookup) => (req.projectId && req.projectId !== c.projectId ? projectTarget({ id: req.projectId }, c, l) : scope(req, c))

const create: PolicyEntry = { allow: ['cloud_admin', 'project_member'], target: newIn }
const read: PolicyEntry = { allow: ['cloud_admin', 'project_reader', 'domain_reader'], target: scope }
const list: PolicyEntry = { ...read, list: true }
const change: PolicyEntry = { allow: ['cloud_admin', 'project_member'], target: scope }

function crud(service: string, kind: string, plural = `${kind}s`): Record<string, PolicyEntry> {
  return {
    [`${N}.${service}/Create${kind}`]: create,
    [`${N}.${service}/Get${kind}`]: read,
    [`${N}.${service}/List${plural}`]: list,
    [`${N}.${service}/Update${kind}`]: change,
    [`${N}.${service}/Delete${kind}`]: change,
  }
}

export const networkPolicy: Record<string, PolicyEntry> = {
  ...crud('Networks', 'Network'),
  ...crud('Subnets', 'Subnet'),
  ...crud('Ports', 'Port'),
  ...crud('FloatingIps', 'FloatingIp'),
  ...crud('Routers', 'Router'),
  [`${N}.Routers/AddRouterInterface`]: change,
  [`${N}.Routers/RemoveRouterInterface`]: change,
  ...crud('SecurityGroups', 'SecurityGroup'),
  [`${N}.SecurityGroups/CreateSecurityGroupRule`]: change,
  [`${N}.SecurityGroups/ListSecurityGroupRules`]: list,
  [`${N}.SecurityGroups/DeleteSecurityGroupRule`]: change,
}

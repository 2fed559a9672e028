/**
 * Cinder's os-quota-sets (`/v3/{project_id}/os-quota-sets/{target}`, with
 * `/defaults`, `?usage=true`, PUT for admins, DELETE for admins: the
 * project's volume limits back to the defaults) over the quota engine the
 * volume catalogs check in their creating transactions: volumes, snapshots,
 * gigabytes, and per volume type `volumes_<type>`, `gigabytes_<type>`,
 * `snapshots_<type>` (-1 unless set). Cinder's backup and group limits are
 * shown with Cinder's defaults; Strato keeps neither, and refuses to set them
 * to anything else (setting them to what is shown, as a client restoring a
 * saved set does, changes nothing and succeeds).
 */
import { InvalidArgument } from '../../proto/errors.js'
import { QUOTA_DEFAULTS } from '../quota/quota.js'
import { bodyObject, type RestRequest, type Route } from './http.js'
import type { RestDomain } from './services.js'

const C = 'strato.compute.v1'
const KEPT = ['volumes', 'snapshots', 'gigabytes']
/** Cinder's limits Strato does not keep, with Cinder's defaults. */
const NOT_KEPT: Record<string, number> = { backups: 10, backup_gigabytes: 1000, groups: 10, per_volume_gigabytes: -1 }
const PER_TYPE = /^(volumes|gigabytes|snapshots)_.+$/

async function quotaSet(d: RestDomain, projectId: string, how: 'limits' | 'usage' | 'defaults'): Promise<Record<string, unknown>> {
  const items = (await d.quota.report(projectId)).filter((i) => KEPT.includes(i.resource) || PER_TYPE.test(i.resource))
  const out: Record<string, unknown> = { id: projectId }
  for (const i of items) {
    const limit = how === 'defaults' ? QUOTA_DEFAULTS[i.resource] ?? -1 : i.limit
    out[i.resource] = how === 'usage' ? { limit, in_use: i.inUse, reserved: 0, allocated: 0 } : limit
  }
  for (const [k, v] of Object.entries(NOT_KEPT)) out[k] = how === 'usage' ? { limit: v, in_use: 0, reserved: 0, allocated: 0 } : v
  return out
}

const usage = (req: RestRequest) => ['true', 'True', '1'].includes(req.query.get('usage') ?? '')

export function volumeQuotaRoutes(d: RestDomain): Route[] {
  return [
    {
      method: 'GET', path: '/os-quota-sets/:target/defaults', policy: `${C}.Quotas/GetDefaultQuota`,
      handler: async (req) => ({ body: { quota_set: await quotaSet(d, req.params.target!, 'defaults') } }),
    },
    {
      method: 'GET', path: '/os-quota-sets/:target', policy: `${C}.Quotas/GetQuota`, target: (req) => ({ projectId: req.params.target }),
      handler: async (req) => ({ body: { quota_set: await quotaSet(d, req.params.target!, usage(req) ? 'usage' : 'limits') } }),
    },
    {
      method: 'PUT', path: '/os-quota-sets/:target', policy: `${C}.Quotas/UpdateQuota`,
      handler: async (req) => {
        const projectId = req.params.target!
        const b = await bodyObject(req, 'quota_set')
        const limits: Record<string, number> = {}
        for (const [key, value] of Object.entries(b)) {
          // cinderclient repeats the project in the body; the path names it.
          if (key === 'tenant_id') continue
          // What GET shows may come back (clients restore a saved set); another value would be a limit nothing keeps.
          if (key in NOT_KEPT) {
            if (Number(value) === NOT_KEPT[key]) continue
            throw new InvalidArgument(`${key}: Strato keeps no such limit (it has no volume backups or groups); it stays ${NOT_KEPT[key]}`, { field: key })
          }
          if (!KEPT.includes(key) && !PER_TYPE.test(key)) throw new InvalidArgument(`Bad key(s) in quota set: ${key}`, { field: key })
          const n = typeof value === 'string' && /^-?\d+$/.test(value) ? Number(value) : value
          if (typeof n !== 'number' || !Number.isInteger(n)) throw new InvalidArgument(`Quota value ${JSON.stringify(value)} for ${key} must be an integer`, { field: key })
          limits[key] = n
        }
        await d.identity.getProject({ id: projectId }) // 404 for a project that does not exist
        // Checked as a whole (unknown types, bad values) before any limit is written.
        await d.quota.update(projectId, limits)
        const { id: _id, ...set } = await quotaSet(d, projectId, 'limits')
        return { body: { quota_set: set } }
      },
    },
    {
      // Cinder's quota delete: the project's volume limits (not its compute or network ones) back to the defaults; 200, no body.
      method: 'DELETE', path: '/os-quota-sets/:target', policy: `${C}.Quotas/UpdateQuota`,
      handler: async (req) => {
        const projectId = req.params.target!
        await d.identity.getProject({ id: projectId }) // 404 for a project that does not exist
        await d.quota.reset(projectId, (r) => KEPT.includes(r) || PER_TYPE.test(r))
        return { status: 200 }
      },
    },
  ]
}

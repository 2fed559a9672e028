/** Policy entries for strato.compute.v1 (the mechanism is in identity/policy.ts). */
import type { PolicyEntry, Target, TargetLookup } from '../identity/policy.js'
import { projectTarget } from '../identity/policy.js'
import type { AuthContext } from '../identity/model.js'

const C = 'strato.compute.v1'
const ownerTarget = (req: { userId?: string }, c: AuthContext): Target => ({ userId: req.userId || c.userId })
const quotaTarget = (req: { projectId?: string }, c: AuthContext, l: TargetLookup) => projectTarget({ id: req.projectId || c.projectId || '' }, c, l)

export const computePolicy: Record<string, PolicyEntry> = {
  [`${C}.Flavors/CreateFlavor`]: { allow: ['cloud_admin'] },
  [`${C}.Flavors/GetFlavor`]: { allow: ['authenticated'] },
  [`${C}.Flavors/ListFlavors`]: { allow: ['authenticated'] },
  [`${C}.Flavors/UpdateFlavor`]: { allow: ['cloud_admin'] },
  [`${C}.Flavors/DeleteFlavor`]: { allow: ['cloud_admin'] },
  [`${C}.Flavors/AddFlavorAccess`]: { allow: ['cloud_admin'] },
  [`${C}.Flavors/RemoveFlavorAccess`]: { allow: ['cloud_admin'] },
  [`${C}.Flavors/ListFlavorAccess`]: { allow: ['cloud_admin'] },

  [`${C}.Keypairs/CreateKeypair`]: { allow: ['cloud_admin', 'self'], target: ownerTarget },
  [`${C}.Keypairs/GetKeypair`]: { allow: ['cloud_admin', 'self'], target: ownerTarget },
  [`${C}.Keypairs/ListKeypairs`]: { allow: ['cloud_admin', 'self'], target: ownerTarget },
  [`${C}.Keypairs/DeleteKeypair`]: { allow: ['cloud_admin', 'self'], target: ownerTarget },

  [`${C}.Quotas/GetQuota`]: { allow: ['cloud_admin', 'domain_reader', 'project_reader'], target: quotaTarget },
  [`${C}.Quotas/UpdateQuota`]: { allow: ['cloud_admin'] },
  [`${C}.Quotas/GetDefaultQuota`]: { allow: ['authenticated'] },
}

/** The caller's own project; a server's owner is checked by the catalog (Nova's `admin_or_owner`). */
const ownScope = (_req: unknown, c: AuthContext): Target => (c.projectId ? { projectId: c.projectId } : {})
const S = `${C}.Servers`

export const serverPolicy: Record<string, PolicyEntry> = {
  [`${S}/CreateServer`]: { allow: ['cloud_admin', 'project_member'], target: ownScope },
  [`${S}/GetServer`]: { allow: ['cloud_admin', 'project_reader'], target: ownScope },
  [`${S}/ListServers`]: { allow: ['cloud_admin', 'project_reader'], target: ownScope },
  // REST's PUT /servers/{id} (gRPC has no UpdateServer yet): the owner's members, as Nova's admin_or_owner.
  [`${S}/UpdateServer`]: { allow: ['cloud_admin', 'project_member'], target: ownScope },
  [`${S}/DeleteServer`]: { allow: ['cloud_admin', 'project_member'], target: ownScope },
  [`${S}/StartServer`]: { allow: ['cloud_admin', 'project_member'], target: ownScope },
  [`${S}/StopServer`]: { allow: ['cloud_admin', 'project_member'], target: ownScope },
  [`${S}/RebootServer`]: { allow: ['cloud_admin', 'project_member'], target: ownScope },
  [`${S}/GetConsoleOutput`]: { allow: ['cloud_admin', 'project_member'], target: ownScope },
  // Nova's os_compute_api:servers:create_image: admin or owner (the catalog checks the server's project).
  [`${S}/CreateServerImage`]: { allow: ['cloud_admin', 'project_member'], target: ownScope },
  // Nova os-volume_attachments: admin_or_owner; the catalog checks the owner.
  [`${S}/AttachVolume`]: { allow: ['cloud_admin', 'project_member'], target: ownScope },
  [`${S}/DetachVolume`]: { allow: ['cloud_admin', 'project_member'], target: ownScope },
  [`${S}/ListServerVolumes`]: { allow: ['cloud_admin', 'project_reader'], target: ownScope },
  [`${C}.ServerGroups/CreateServerGroup`]: { allow: ['cloud_admin', 'project_member'], target: ownScope },
  [`${C}.ServerGroups/GetServerGroup`]: { allow: ['cloud_admin', 'project_reader'], target: ownScope },
  [`${C}.ServerGroups/ListServerGroups`]: { allow: ['cloud_admin', 'project_reader'], target: ownScope },
  [`${C}.ServerGroups/DeleteServerGroup`]: { allow: ['cloud_admin', 'project_member'], target: ownScope },
  [`${C}.AvailabilityZones/ListAvailabilityZones`]: { allow: ['authenticated'] },
}

/** gRPC adapters for strato.compute.v1 catalogs: flavors, keypairs, quotas. */
import type { UntypedServiceImplementation } from '@grpc/grpc-js'
import { FailedPrecondition } from '../../proto/errors.js'
import { Empty } from '../../proto/gen/google/protobuf/empty.js'
import {
  Flavor, FlavorsService, Keypair, KeypairsService, ListFlavorAccessResponse, ListFlavorsResponse, ListKeypairsResponse, QuotaSet, QuotasService,
} from '../../proto/gen/strato/compute/v1/compute.js'
import type { FlavorCatalog } from '../compute/flavors.js'
import type { KeypairCatalog } from '../compute/keypairs.js'
import type { AuthContext } from '../identity/model.js'
import { QUOTA_DEFAULTS, type QuotaEngine } from '../quota/quota.js'
import { implement, type CallContext, type RpcDeps } from './rpc.js'

export interface ComputeApiDeps {
  flavors: FlavorCatalog
  keypairs: KeypairCatalog
  quota: QuotaEngine
}

const auth = (c: CallContext): AuthContext => c.auth!
const viewer = (c: CallContext) => ({ isAdmin: auth(c).isCloudAdmin, projectId: auth(c).projectId })
const empty = () => Empty.fromPartial({})

function quotaProject(c: CallContext, requested: string | undefined): string {
  const id = requested || auth(c).projectId
  if (!id) throw new FailedPrecondition('quotas belong to projects: name a project_id or use a project-scoped token')
  return id
}

export function computeServices(d: ComputeApiDeps, rpc: RpcDeps): Array<[object, UntypedServiceImplementation]> {
  return [
    [FlavorsService, implement(FlavorsService, {
      createFlavor: async (req) => Flavor.fromPartial(await d.flavors.create(req)),
      getFlavor: async (req, c) => Flavor.fromPartial(await d.flavors.get(req, viewer(c))),
      listFlavors: async (req, c) => ListFlavorsResponse.fromPartial({ flavors: await d.flavors.list(req, viewer(c)) }),
      updateFlavor: async (req) => Flavor.fromPartial(await d.flavors.update(req.id, req)),
      deleteFlavor: async (req) => (await d.flavors.delete(req.id), empty()),
      addFlavorAccess: async (req) => (await d.flavors.addAccess(req.flavorId, req.projectId), empty()),
      removeFlavorAccess: async (req) => (await d.flavors.removeAccess(req.flavorId, req.projectId), empty()),
      listFlavorAccess: async (req) => ListFlavorAccessResponse.fromPartial({ access: await d.flavors.listAccess(req.flavorId) }),
    }, rpc)],

    [KeypairsService, implement(KeypairsService, {
      createKeypair: async (req, c) => {
        const projectId = auth(c).projectId
        if (!projectId) throw new FailedPrecondition('keypairs count against a project quota: use a project-scoped token')
        return Keypair.fromPartial(await d.keypairs.create({ ...req, userId: req.userId || auth(c).userId, projectId }))
      },
      getKeypair: async (req, c) => Keypair.fromPartial(await d.keypairs.get(req.name, req.userId || auth(c).userId)),
      listKeypairs: async (req, c) => ListKeypairsResponse.fromPartial({ keypairs: await d.keypairs.list(req.userId || auth(c).userId) }),
      deleteKeypair: async (req, c) => (await d.keypairs.delete(req.name, req.userId || auth(c).userId), empty()),
    }, rpc)],

    [QuotasService, implement(QuotasService, {
      getQuota: async (req, c) => {
        const projectId = quotaProject(c, req.projectId)
        return QuotaSet.fromPartial({ projectId, items: await d.quota.report(projectId, auth(c).userId) })
      },
      updateQuota: async (req, c) => {
        const projectId = quotaProject(c, req.projectId)
        await d.quota.update(projectId, req.limits ?? {})
        return QuotaSet.fromPartial({ projectId, items: await d.quota.report(projectId) })
      },
      getDefaultQuota: async () => QuotaSet.fromPartial({ items: Object.entries(QUOTA_DEFAULTS).map(([resource, limit]) => ({ resource, limit, inUse: 0 })) }),
    }, rpc)],
  ]
}

/** gRPC adapter for strato.placement.v1.Placement (read-only views for operators). */
import type { UntypedServiceImplementation } from '@grpc/grpc-js'
import { InvalidArgument } from '../../proto/errors.js'
import {
  GetInventoriesResponse, GetUsagesResponse, ListAllocationsResponse, ListResourceProvidersResponse, PlacementService,
} from '../../proto/gen/strato/placement/v1/placement.js'
import type { Placement } from '../scheduler/placement.js'
import { implement, type RpcDeps } from './rpc.js'

export function placementServices(placement: Placement, rpc: RpcDeps): Array<[object, UntypedServiceImplementation]> {
  return [
    [PlacementService, implement(PlacementService, {
      listResourceProviders: async (req) =>
        ListResourceProvidersResponse.fromPartial({ resourceProviders: await placement.listProviders({ name: req.name, uuid: req.uuid, resources: req.resources ?? {} }) }),
      getInventories: async (req) => {
        const r = await placement.getInventories(req.resourceProviderUuid ?? '')
        return GetInventoriesResponse.fromPartial({ resourceProviderGeneration: r.generation, inventories: r.inventories })
      },
      getUsages: async (req) => {
        if (!req.resourceProviderUuid && !req.projectId) throw new InvalidArgument('name a resource_provider_uuid or a project_id', { field: 'resource_provider_uuid' })
        const r = await placement.getUsages({ providerUuid: req.resourceProviderUuid, projectId: req.projectId })
        return GetUsagesResponse.fromPartial({ resourceProviderGeneration: r.generation, usages: r.usages })
      },
      listAllocations: async (req) =>
        ListAllocationsResponse.fromPartial({
          allocations: (await placement.listAllocations({ providerUuid: req.resourceProviderUuid, consumerUuid: req.consumerUuid })).map(({ providerUuid, ...a }) => ({ ...a, resourceProviderUuid: providerUuid })),
        }),
    }, rpc)],
  ]
}

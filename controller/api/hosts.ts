/** gRPC adapter for strato.compute.v1.Hosts. */
import type { UntypedServiceImplementation } from '@grpc/grpc-js'
import { DiscoverHostsResponse, Host, HostsService, ListHostsResponse } from '../../proto/gen/strato/compute/v1/hosts.js'
import type { HostRegistry, HostView } from '../compute/hosts.js'
import { checkHostName } from '../compute/hosts.js'
import { implement, type RpcDeps } from './rpc.js'

function toHost(h: HostView): Host {
  return Host.fromPartial({ ...h, ...(h.lastHeartbeatAt ? { lastHeartbeatAt: h.lastHeartbeatAt } : {}) })
}

export function hostServices(hosts: HostRegistry, rpc: RpcDeps): Array<[object, UntypedServiceImplementation]> {
  return [
    [HostsService, implement(HostsService, {
      listHosts: async (req) => ListHostsResponse.fromPartial({ hosts: (await hosts.list({ availabilityZone: req.availabilityZone, unmappedOnly: req.unmappedOnly })).map(toHost) }),
      discoverHosts: async () => {
        const r = await hosts.discover()
        return DiscoverHostsResponse.fromPartial({ lines: r.lines, mapped: r.mapped.map(toHost) })
      },
      updateHost: async (req) => toHost(await hosts.update(checkHostName(req.host), { ...(req.enabled !== undefined ? { enabled: req.enabled } : {}), disabledReason: req.disabledReason })),
    }, rpc)],
  ]
}

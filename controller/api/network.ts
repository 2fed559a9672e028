/** gRPC adapters for strato.network.v1: networks, subnets, ports, floating IPs, routers, security groups. */
import type { UntypedServiceImplementation } from '@grpc/grpc-js'
import { Empty } from '../../proto/gen/google/protobuf/empty.js'
import {
  FloatingIp, FloatingIpsService, ListFloatingIpsResponse, ListNetworksResponse, ListPortsResponse, ListSecurityGroupRulesResponse, ListSecurityGroupsResponse,
  ListSubnetsResponse, Network, NetworksService, Port, PortsService, SecurityGroup, SecurityGroupRule, SecurityGroupsService, Subnet, SubnetsService,
  ListRoutersResponse, Router, RouterInterfaceInfo, RoutersService, type ExternalGatewayInfo,
} from '../../proto/gen/strato/network/v1/network.js'
import { actorOf, type Actor } from '../network/access.js'
import type { FloatingIpCatalog } from '../network/floating-ips.js'
import type { NetworkCatalog } from '../network/networks.js'
import type { PortCatalog } from '../network/ports.js'
import type { SecurityGroupCatalog } from '../network/security-groups.js'
import type { SubnetCatalog } from '../network/subnets.js'
import type { GatewayRequest, RouterCatalog } from '../network/routers.js'
import { implement, keptResponse, type CallContext, type RpcDeps } from './rpc.js'

export interface NetworkApiDeps {
  networks: NetworkCatalog
  subnets: SubnetCatalog
  ports: PortCatalog
  floatingIps: FloatingIpCatalog
  securityGroups: SecurityGroupCatalog
  routers: RouterCatalog
}

const gateway = (g: ExternalGatewayInfo | undefined): GatewayRequest | undefined =>
  g ? { networkId: g.networkId ?? '', ...(g.enableSnat !== undefined ? { enableSnat: g.enableSnat } : {}), externalFixedIps: (g.externalFixedIps ?? []).map((f) => ({ subnetId: f.subnetId ?? '', ipAddress: f.ipAddress ?? '' })) } : undefined

const actor = (c: CallContext): Actor => actorOf(c.auth!)
const empty = () => Empty.fromPartial({})

export function networkServices(d: NetworkApiDeps, rpc: RpcDeps): Array<[object, UntypedServiceImplementation]> {
  return [
    [NetworksService, implement(NetworksService, {
      createNetwork: async (req, c) => Network.fromPartial(await d.networks.create(req, actor(c))),
      getNetwork: async (req, c) => Network.fromPartial(await d.networks.get(req, actor(c))),
      listNetworks: async (req, c) => keptResponse(await d.networks.list(req, actor(c)), (networks) => ListNetworksResponse.fromPartial({ networks })),
      updateNetwork: async (req, c) => Network.fromPartial(await d.networks.update(req.id, req, actor(c))),
      deleteNetwork: async (req, c) => (await d.networks.delete(req.id, actor(c)), empty()),
    }, rpc)],

    [SubnetsService, implement(SubnetsService, {
      createSubnet: async (req, c) => Subnet.fromPartial(await d.subnets.create({ ...req, allocationPools: req.allocationPools?.map((p) => ({ start: p.start ?? '', end: p.end ?? '' })), hostRoutes: req.hostRoutes?.map((r) => ({ destination: r.destination ?? '', nexthop: r.nexthop ?? '' })) }, actor(c))),
      getSubnet: async (req, c) => Subnet.fromPartial(await d.subnets.get(req, actor(c))),
      listSubnets: async (req, c) => keptResponse(await d.subnets.list(req, actor(c)), (subnets) => ListSubnetsResponse.fromPartial({ subnets })),
      updateSubnet: async (req, c) => {
        const { allocationPools, dnsNameservers, hostRoutes, ...rest } = req
        return Subnet.fromPartial(await d.subnets.update(req.id, {
          ...rest,
          ...(allocationPools ? { allocationPools: (allocationPools.pools ?? []).map((p) => ({ start: p.start ?? '', end: p.end ?? '' })) } : {}),
          ...(dnsNameservers ? { dnsNameservers: dnsNameservers.addresses ?? [] } : {}),
          ...(hostRoutes ? { hostRoutes: (hostRoutes.routes ?? []).map((r) => ({ destination: r.destination ?? '', nexthop: r.nexthop ?? '' })) } : {}),
        }, actor(c)))
      },
      deleteSubnet: async (req, c) => (await d.subnets.delete(req.id, actor(c)), empty()),
    }, rpc)],

    [PortsService, implement(PortsService, {
      createPort: async (req, c) => Port.fromPartial(await d.ports.create(req, actor(c))),
      getPort: async (req, c) => Port.fromPartial(await d.ports.get(req.id, actor(c))),
      listPorts: async (req, c) => keptResponse(await d.ports.list(req, actor(c)), (ports) => ListPortsResponse.fromPartial({ ports })),
      updatePort: async (req, c) => {
        const { securityGroups, ...rest } = req
        return Port.fromPartial(await d.ports.update(req.id, { ...rest, ...(securityGroups ? { securityGroups: securityGroups.ids ?? [] } : {}) }, actor(c)))
      },
      deletePort: async (req, c) => (await d.ports.delete(req.id, actor(c)), empty()),
    }, rpc)],

    [FloatingIpsService, implement(FloatingIpsService, {
      createFloatingIp: async (req, c) => FloatingIp.fromPartial(await d.floatingIps.create(req, actor(c))),
      getFloatingIp: async (req, c) => FloatingIp.fromPartial(await d.floatingIps.get(req.id, actor(c))),
      listFloatingIps: async (req, c) => keptResponse(await d.floatingIps.list(req, actor(c)), (floatingIps) => ListFloatingIpsResponse.fromPartial({ floatingIps })),
      updateFloatingIp: async (req, c) => FloatingIp.fromPartial(await d.floatingIps.update(req.id, req, actor(c))),
      deleteFloatingIp: async (req, c) => (await d.floatingIps.delete(req.id, actor(c)), empty()),
    }, rpc)],

    [RoutersService, implement(RoutersService, {
      createRouter: async (req, c) => Router.fromPartial(await d.routers.create({ ...req, externalGatewayInfo: gateway(req.externalGatewayInfo) }, actor(c))),
      getRouter: async (req, c) => Router.fromPartial(await d.routers.get(req, actor(c))),
      listRouters: async (req, c) => keptResponse(await d.routers.list(req, actor(c)), (routers) => ListRoutersResponse.fromPartial({ routers })),
      updateRouter: async (req, c) => {
        const { externalGatewayInfo, routes, ...rest } = req
        return Router.fromPartial(await d.routers.update(req.id, {
          ...rest,
          ...(externalGatewayInfo ? { externalGatewayInfo: gateway(externalGatewayInfo) } : {}),
          ...(routes ? { routes: (routes.routes ?? []).map((r) => ({ destination: r.destination ?? '', nexthop: r.nexthop ?? '' })) } : {}),
        }, actor(c)))
      },
      deleteRouter: async (req, c) => (await d.routers.delete(req.id, actor(c)), empty()),
      addRouterInterface: async (req, c) => RouterInterfaceInfo.fromPartial(await d.routers.addInterface(req.routerId, req, actor(c))),
      removeRouterInterface: async (req, c) => RouterInterfaceInfo.fromPartial(await d.routers.removeInterface(req.routerId, req, actor(c))),
    }, rpc)],

    [SecurityGroupsService, implement(SecurityGroupsService, {
      createSecurityGroup: async (req, c) => SecurityGroup.fromPartial(await d.securityGroups.create(req, actor(c))),
      getSecurityGroup: async (req, c) => SecurityGroup.fromPartial(await d.securityGroups.get(req, actor(c))),
      listSecurityGroups: async (req, c) => keptResponse(await d.securityGroups.list(req, actor(c)), (securityGroups) => ListSecurityGroupsResponse.fromPartial({ securityGroups })),
      updateSecurityGroup: async (req, c) => SecurityGroup.fromPartial(await d.securityGroups.update(req.id, req, actor(c))),
      deleteSecurityGroup: async (req, c) => (await d.securityGroups.delete(req.id, actor(c)), empty()),
      createSecurityGroupRule: async (req, c) => SecurityGroupRule.fromPartial(await d.securityGroups.createRule(req, actor(c))),
      listSecurityGroupRules: async (req, c) => keptResponse(await d.securityGroups.listRules(req, actor(c)), (securityGroupRules) => ListSecurityGroupRulesResponse.fromPartial({ securityGroupRules })),
      deleteSecurityGroupRule: async (req, c) => (await d.securityGroups.deleteRule(req.id, actor(c)), empty()),
    }, rpc)],
  ]
}

/** gRPC adapters for strato.compute.v1.Servers, ServerGroups and AvailabilityZones. */
import type { UntypedServiceImplementation } from '@grpc/grpc-js'
import { InvalidArgument } from '../../proto/errors.js'
import { ConsoleOutput, CreateServerImageResponse, CreateServerResponse, ListServerGroupsResponse, ListServerVolumesResponse, ListServersResponse, Server, ServerGroup, ServerGroupsService, ServersService, ServerVolume } from '../../proto/gen/strato/compute/v1/servers.js'
import type { AttachmentCatalog, ServerVolumeView } from '../volume/attachments.js'
import type { ServerGroupCatalog } from '../compute/server-groups.js'
import { AvailabilityZonesService, ListAvailabilityZonesResponse } from '../../proto/gen/strato/compute/v1/compute.js'
import type { ServerCaller, ServerCatalog, ServerListing, ServerView } from '../compute/servers.js'
import { serverCaller } from '../compute/server-model.js'
import type { HostRegistry } from '../compute/hosts.js'
import { availabilityZones } from '../compute/zones.js'
import { implement, keepEncoding, type CallContext, type RpcDeps } from './rpc.js'

const caller = (c: CallContext): ServerCaller => serverCaller(c.auth!, c.requestId)

/**
 * Each view's message, kept with it: ServerViews hands out the same frozen
 * view for as long as its server is unchanged, so an unchanged server's
 * message is not built again for every listing.
 */
const messages = new WeakMap<ServerView, Server>()

function toServer(view: ServerView): Server {
  let m = messages.get(view)
  if (!m) {
    // The wire's Server has no hostId, user data, delete_on_termination, guest hostname or pinned zone (REST's alone).
    const { hostId: _h, userData: _u, volumesDeletedWith: _d, hostname: _n, pinnedAvailabilityZone: _z, ...v } = view
    m = Server.fromPartial({
      ...v,
      fault: v.fault,
      ...(v.launchedAt ? { launchedAt: v.launchedAt } : {}),
      ...(v.terminatedAt ? { terminatedAt: v.terminatedAt } : {}),
    })
    messages.set(view, m)
  }
  return m
}

/** Each listing's response, kept with it (ServerViews hands out the same listing while it is unchanged), encoded once. */
/** An attachment as the wire's ServerVolume (which has no delete_on_termination field). */
const wireVolume = ({ deleteOnTermination: _, ...v }: ServerVolumeView): ServerVolume => ServerVolume.fromPartial(v)

const listings = new WeakMap<ServerListing, ListServersResponse>()

function toListing(views: ServerListing): ListServersResponse {
  let m = listings.get(views)
  if (!m) {
    // The kept messages as they are (fromPartial would copy each again).
    m = keepEncoding(Object.freeze({ servers: views.map(toServer) }))
    listings.set(views, m)
  }
  return m
}

export function serverServices(servers: ServerCatalog, groups: ServerGroupCatalog, hosts: HostRegistry, defaultZone: string, rpc: RpcDeps, attachments: AttachmentCatalog): Array<[object, UntypedServiceImplementation]> {
  return [
    [ServersService, implement(ServersService, {
      createServer: async (req, c) => {
        const r = await servers.create(req, caller(c))
        return CreateServerResponse.fromPartial({ servers: r.servers.map(toServer), reservationId: r.reservationId })
      },
      getServer: async (req, c) => toServer(await servers.get(req.id, caller(c))),
      listServers: async (req, c) => toListing(await servers.list(req, caller(c))),
      deleteServer: async (req, c) => toServer(await servers.act(req.id, 'delete', caller(c))),
      startServer: async (req, c) => toServer(await servers.act(req.id, 'start', caller(c))),
      stopServer: async (req, c) => toServer(await servers.act(req.id, 'stop', caller(c))),
      rebootServer: async (req, c) => {
        const type = (req.type || 'SOFT').toUpperCase()
        if (type !== 'SOFT' && type !== 'HARD') throw new InvalidArgument(`reboot type must be SOFT or HARD, got '${req.type}'`, { field: 'type' })
        return toServer(await servers.act(req.id, type === 'HARD' ? 'reboot_hard' : 'reboot', caller(c)))
      },
      getConsoleOutput: async (req, c) => ConsoleOutput.fromPartial({ output: await servers.consoleOutput(req.id, req.length || undefined, caller(c)) }),
      createServerImage: async (req, c) => {
        const r = await servers.createImage(req.id, { name: req.name, metadata: req.metadata, compress: req.compress }, caller(c))
        return CreateServerImageResponse.fromPartial({ imageId: r.imageId, server: toServer(r.server) })
      },
      // Volume attachments (Nova's os-volume_attachments) are volume/'s attachment records.
      attachVolume: async (req, c) => wireVolume(await attachments.attach(req, caller(c))),
      detachVolume: async (req, c) => {
        await attachments.detach(req, caller(c))
        return {}
      },
      listServerVolumes: async (req, c) => ListServerVolumesResponse.fromPartial({ volumeAttachments: (await attachments.serverVolumes(req.serverId, caller(c))).map(wireVolume) }),
    }, rpc)],

    [ServerGroupsService, implement(ServerGroupsService, {
      createServerGroup: async (req, c) => ServerGroup.fromPartial(await groups.create(req, caller(c))),
      getServerGroup: async (req, c) => ServerGroup.fromPartial(await groups.get(req.id, caller(c))),
      listServerGroups: async (req, c) => ListServerGroupsResponse.fromPartial({ serverGroups: await groups.list(req.allProjects ?? false, caller(c)) }),
      deleteServerGroup: async (req, c) => {
        await groups.delete(req.id, caller(c))
        return {}
      },
    }, rpc)],

    [AvailabilityZonesService, implement(AvailabilityZonesService, {
      listAvailabilityZones: async (_req, c) => ListAvailabilityZonesResponse.fromPartial({
        availabilityZones: (await availabilityZones(hosts, defaultZone, c.auth!.isCloudAdmin)).map((z) => ({
          name: z.name,
          available: z.available,
          hosts: z.hosts.map((h) => ({ host: h.host, service: 'nova-compute', active: h.active, available: h.available, ...(h.updatedAt ? { updatedAt: h.updatedAt } : {}) })),
        })),
      }),
    }, rpc)],
  ]
}

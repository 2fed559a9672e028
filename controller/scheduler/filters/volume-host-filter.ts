/**
 * VolumeHostFilter: the volumes a new server makes (from an image, blank, or
 * copy-on-write from a snapshot) are made by the volume backend of the
 * server's host, so the server goes where such a backend has room (or where
 * the snapshot is). Existing volumes set no host: one on another host is
 * attached over the network (an NBD export of its host), so they constrain
 * nothing. (Nova has no such filter: Cinder places volumes by itself.)
 */
import type { HostFilter } from '../model.js'

export const volumeHostFilter: HostFilter = {
  name: 'VolumeHostFilter',
  hostPasses: (host, spec) => !spec.volumeHosts || spec.volumeHosts.hosts.includes(host.host),
  describe: (spec) => (spec.volumeHosts ? `${spec.volumeHosts.why}: ${spec.volumeHosts.hosts.slice(0, 5).join(', ') || 'none'}` : undefined),
  reason: (host, spec) => `'${host.host}' is not among the ${spec.volumeHosts?.why ?? 'volume hosts'}`,
}

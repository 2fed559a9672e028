/**
 * ServerGroupAffinityFilter: a server of an `affinity` group goes where the
 * group's members are (anywhere while it has none).
 */
import type { HostFilter } from '../model.js'

export const serverGroupAffinityFilter: HostFilter = {
  name: 'ServerGroupAffinityFilter',
  hostPasses: (host, spec) => spec.group?.policy !== 'affinity' || spec.group.memberHosts.length === 0 || spec.group.memberHosts.includes(host.host),
  describe: (spec) => (spec.group?.policy === 'affinity' && spec.group.memberHosts.length ? `affinity with group ${spec.group.id} on ${[...new Set(spec.group.memberHosts)].join(', ')}` : undefined),
  reason: (host) => `'${host.host}' is not where the group runs`,
}

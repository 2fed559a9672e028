/**
 * ServerGroupAntiAffinityFilter: a server of an `anti-affinity` group goes to
 * a host holding fewer than `max_server_per_host` (default 1) of its members.
 */
import { groupMembersOn, type HostFilter } from '../model.js'

export const serverGroupAntiAffinityFilter: HostFilter = {
  name: 'ServerGroupAntiAffinityFilter',
  hostPasses: (host, spec) => spec.group?.policy !== 'anti-affinity' || groupMembersOn(spec, host.host) < spec.group.maxServerPerHost,
  describe: (spec) => (spec.group?.policy === 'anti-affinity' ? `anti-affinity with group ${spec.group.id} (at most ${spec.group.maxServerPerHost} per host)` : undefined),
  reason: (host, spec) => `'${host.host}' holds ${groupMembersOn(spec, host.host)} of the group's members`,
}

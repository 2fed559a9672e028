/**
 * ServerGroupSoftAffinityWeigher and ServerGroupSoftAntiAffinityWeigher: for
 * `soft-affinity` groups, prefer hosts holding more members; for
 * `soft-anti-affinity`, fewer. Other requests weigh every host 0.
 */
import { groupMembersOn, type HostWeigher } from '../model.js'

export const serverGroupSoftAffinityWeigher: HostWeigher = {
  name: 'ServerGroupSoftAffinityWeigher',
  resource: false,
  weigh: (host, spec) => (spec.group?.policy === 'soft-affinity' ? groupMembersOn(spec, host.host) : 0),
}

export const serverGroupSoftAntiAffinityWeigher: HostWeigher = {
  name: 'ServerGroupSoftAntiAffinityWeigher',
  resource: false,
  weigh: (host, spec) => (spec.group?.policy === 'soft-anti-affinity' ? -groupMembersOn(spec, host.host) : 0),
}

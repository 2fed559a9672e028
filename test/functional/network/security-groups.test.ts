// Security groups and rules through the real gRPC server (Neutron semantics).
import t from 'tap'
import { startController, type TestController } from '../../helpers/controller.js'
import { call, failure, fieldOf, status } from '../../helpers/grpc.js'
import type { ListSecurityGroupRulesResponse, ListSecurityGroupsResponse, Network, Port, SecurityGroup, SecurityGroupRule } from '../../../proto/gen/strato/network/v1/network.js'
import { netClients, tenant, type NetClients, type Tenant } from './fixtures.js'

let s: TestController
let c: NetClients
let demo: Tenant
let other: Tenant

t.before(async () => {
  s = await startController()
  c = netClients(s.address)
  demo = await tenant(s, 'demo')
  other = await tenant(s, 'other')
})
t.teardown(async () => {
  c.close()
  await s.close()
})

const rulesOf = (g: { securityGroupRules: Array<{ direction: string; ethertype: string; protocol: string; remoteIpPrefix: string; remoteGroupId: string; portRangeMin?: number | undefined; portRangeMax?: number | undefined }> }) =>
  g.securityGroupRules.map((r) => ({ direction: r.direction, ethertype: r.ethertype, protocol: r.protocol, remoteIpPrefix: r.remoteIpPrefix, remoteGroupId: r.remoteGroupId, portRangeMin: r.portRangeMin, portRangeMax: r.portRangeMax }))
const sortRules = <T extends { direction: string; ethertype: string }>(rules: T[]) => [...rules].sort((a, b) => `${a.direction}${a.ethertype}`.localeCompare(`${b.direction}${b.ethertype}`))

let defaultGroup: { id: string }

t.test('every project has a `default` group on first use, with Neutron\'s default rules', async (t) => {
  const list = await call<ListSecurityGroupsResponse>(c.securityGroups, 'listSecurityGroups', {}, demo.token)
  t.equal(list.securityGroups.length, 1, 'openstack security group list: default exists')
  const g = list.securityGroups[0]!
  defaultGroup = g
  t.match(g, { name: 'default', projectId: demo.projectId, stateful: true, description: 'Default security group' })
  t.same(sortRules(rulesOf(g)), [
    { direction: 'egress', ethertype: 'IPv4', protocol: '', remoteIpPrefix: '', remoteGroupId: '', portRangeMin: undefined, portRangeMax: undefined },
    { direction: 'egress', ethertype: 'IPv6', protocol: '', remoteIpPrefix: '', remoteGroupId: '', portRangeMin: undefined, portRangeMax: undefined },
    { direction: 'ingress', ethertype: 'IPv4', protocol: '', remoteIpPrefix: '', remoteGroupId: g.id, portRangeMin: undefined, portRangeMax: undefined },
    { direction: 'ingress', ethertype: 'IPv6', protocol: '', remoteIpPrefix: '', remoteGroupId: g.id, portRangeMin: undefined, portRangeMax: undefined },
  ], 'egress allow-all v4/v6; ingress from members of the group itself')
  const again = await Promise.all(Array.from({ length: 5 }, () => call<ListSecurityGroupsResponse>(c.securityGroups, 'listSecurityGroups', {}, demo.token)))
  t.ok(again.every((l) => l.securityGroups.length === 1 && l.securityGroups[0]!.id === g.id), 'created once, even with concurrent first uses')
  t.equal((await call<SecurityGroup>(c.securityGroups, 'getSecurityGroup', { name: 'default' }, demo.token)).id, g.id, 'found by name')
  const theirs = await call<ListSecurityGroupsResponse>(c.securityGroups, 'listSecurityGroups', {}, other.token)
  t.equal(theirs.securityGroups.length, 1)
  t.not(theirs.securityGroups[0]!.id, g.id, 'each project has its own')
  t.equal((await failure(call(c.securityGroups, 'getSecurityGroup', { id: g.id }, other.token))).code, status.NOT_FOUND, 'and cannot see another\'s')
  const fresh = await tenant(s, 'fresh')
  const rule = await call<SecurityGroupRule>(c.securityGroups, 'createSecurityGroupRule', { securityGroupId: (await call<SecurityGroup>(c.securityGroups, 'getSecurityGroup', { name: 'default' }, fresh.token)).id, protocol: 'udp', portRangeMin: 53, portRangeMax: 53 }, fresh.token)
  t.equal(rule.projectId, fresh.projectId)
})

t.test('the seed: security group rule create --proto icmp default; --proto tcp --dst-port 22 default', async (t) => {
  // What openstackclient sends: direction ingress, ethertype IPv4, remote 0.0.0.0/0.
  const icmp = await call<SecurityGroupRule>(c.securityGroups, 'createSecurityGroupRule', { securityGroupId: defaultGroup.id, protocol: 'icmp', direction: 'ingress', ethertype: 'IPv4', remoteIpPrefix: '0.0.0.0/0' }, demo.token)
  t.match(icmp, { securityGroupId: defaultGroup.id, direction: 'ingress', ethertype: 'IPv4', protocol: 'icmp', remoteIpPrefix: '0.0.0.0/0', remoteGroupId: '', projectId: demo.projectId })
  t.equal(icmp.portRangeMin, undefined)
  t.equal(icmp.portRangeMax, undefined)
  const ssh = await call<SecurityGroupRule>(c.securityGroups, 'createSecurityGroupRule', { securityGroupId: defaultGroup.id, protocol: 'tcp', portRangeMin: 22, portRangeMax: 22 }, demo.token)
  t.match(ssh, { direction: 'ingress', ethertype: 'IPv4', protocol: 'tcp', portRangeMin: 22, portRangeMax: 22, remoteIpPrefix: '0.0.0.0/0' }, 'defaults: ingress, IPv4, from anywhere')
  const g = await call<SecurityGroup>(c.securityGroups, 'getSecurityGroup', { id: defaultGroup.id }, demo.token)
  t.equal(g.securityGroupRules.length, 6)
  const listed = await call<ListSecurityGroupRulesResponse>(c.securityGroups, 'listSecurityGroupRules', { securityGroupId: defaultGroup.id, direction: 'ingress', protocol: 'tcp' }, demo.token)
  t.same(listed.securityGroupRules.map((r) => r.id), [ssh.id])
})

t.test('duplicates are ALREADY_EXISTS, however they are spelled', async (t) => {
  const count = async () => (await call<ListSecurityGroupRulesResponse>(c.securityGroups, 'listSecurityGroupRules', { securityGroupId: defaultGroup.id }, demo.token)).securityGroupRules.length
  const before = await count()
  for (const [what, req] of [
    ['the same icmp rule', { protocol: 'icmp', remoteIpPrefix: '0.0.0.0/0' }],
    ['icmp with no remote (any address)', { protocol: 'ICMP' }],
    ['icmp by number', { protocol: '1' }],
    ['ssh by protocol number', { protocol: '6', portRangeMin: 22, portRangeMax: 22 }],
    ['the default ingress-from-self rule', { remoteGroupId: defaultGroup.id }],
    ['the default egress rule', { direction: 'egress', ethertype: 'IPv4', protocol: 'any' }],
  ] as const) {
    const e = await failure(call(c.securityGroups, 'createSecurityGroupRule', { securityGroupId: defaultGroup.id, ...req }, demo.token))
    t.equal(e.code, status.ALREADY_EXISTS, what)
    t.match(e.details, /already has this rule/)
  }
  t.equal(await count(), before, 'nothing added')
  const narrower = await call<SecurityGroupRule>(c.securityGroups, 'createSecurityGroupRule', { securityGroupId: defaultGroup.id, protocol: 'tcp', portRangeMin: 22, portRangeMax: 22, remoteIpPrefix: '10.0.0.7/8' }, demo.token)
  t.equal(narrower.remoteIpPrefix, '10.0.0.0/8', 'a different prefix is a different rule (normalised)')
  const v6 = await call<SecurityGroupRule>(c.securityGroups, 'createSecurityGroupRule', { securityGroupId: defaultGroup.id, protocol: 'icmp', ethertype: 'IPv6' }, demo.token)
  t.match(v6, { protocol: 'ipv6-icmp', ethertype: 'IPv6', remoteIpPrefix: '::/0' }, 'icmp with IPv6 is ipv6-icmp')
  t.equal((await failure(call(c.securityGroups, 'createSecurityGroupRule', { securityGroupId: defaultGroup.id, protocol: '58', ethertype: 'IPv6' }, demo.token))).code, status.ALREADY_EXISTS)
})

t.test('rule validation: protocol, ports against protocol, remotes; the field is named, nothing stored', async (t) => {
  const count = async () => (await call<ListSecurityGroupRulesResponse>(c.securityGroups, 'listSecurityGroupRules', {}, demo.token)).securityGroupRules.length
  const before = await count()
  const cases: Array<[string, object, number, string, RegExp]> = [
    ['direction', { direction: 'sideways' }, status.INVALID_ARGUMENT, 'direction', /ingress or egress/],
    ['ethertype', { ethertype: 'IPX' }, status.INVALID_ARGUMENT, 'ethertype', /IPv4 or IPv6/],
    ['unknown protocol', { protocol: 'bogus' }, status.INVALID_ARGUMENT, 'protocol', /unknown protocol 'bogus'/],
    ['protocol number too big', { protocol: '256' }, status.INVALID_ARGUMENT, 'protocol', /0-255/],
    ['ipv6-icmp on IPv4', { protocol: 'ipv6-icmp' }, status.INVALID_ARGUMENT, 'protocol', /IPv6-only/],
    ['tcp port 0', { protocol: 'tcp', portRangeMin: 0, portRangeMax: 10 }, status.INVALID_ARGUMENT, 'port_range_min', /not a port/],
    ['tcp port too big', { protocol: 'tcp', portRangeMin: 1, portRangeMax: 65536 }, status.INVALID_ARGUMENT, 'port_range_max', /not a port/],
    ['tcp min > max', { protocol: 'udp', portRangeMin: 100, portRangeMax: 90 }, status.INVALID_ARGUMENT, 'port_range_min', /greater than/],
    ['tcp max only', { protocol: 'tcp', portRangeMax: 90 }, status.INVALID_ARGUMENT, 'port_range_min', /both/],
    ['icmp type too big', { protocol: 'icmp', portRangeMin: 256 }, status.INVALID_ARGUMENT, 'port_range_min', /ICMP type/],
    ['icmp code too big', { protocol: 'icmp', portRangeMin: 8, portRangeMax: 300 }, status.INVALID_ARGUMENT, 'port_range_max', /ICMP code/],
    ['icmp code without type', { protocol: 'icmp', portRangeMax: 0 }, status.INVALID_ARGUMENT, 'port_range_min', /needs an ICMP type/],
    ['ports with any protocol', { portRangeMin: 22, portRangeMax: 22 }, status.INVALID_ARGUMENT, 'port_range_min', /apply only to/],
    ['ports with gre', { protocol: 'gre', portRangeMin: 22, portRangeMax: 22 }, status.INVALID_ARGUMENT, 'port_range_min', /apply only to/],
    ['prefix of the other family', { remoteIpPrefix: '2001:db8::/32' }, status.INVALID_ARGUMENT, 'remote_ip_prefix', /is IPv6 but the rule's ethertype is IPv4/],
    ['bad prefix', { remoteIpPrefix: '10.0.0.0/40' }, status.INVALID_ARGUMENT, 'remote_ip_prefix', /prefix length/],
    ['both remotes', { remoteIpPrefix: '10.0.0.0/8', remoteGroupId: defaultGroup.id }, status.INVALID_ARGUMENT, 'remote_ip_prefix', /not both/],
    ['unknown remote group', { remoteGroupId: 'nope' }, status.NOT_FOUND, 'remote_group_id', /not found/],
    ['unknown group', { securityGroupId: 'nope', protocol: 'tcp' }, status.NOT_FOUND, 'security_group_id', /not found/],
  ]
  for (const [what, req, code, field, msg] of cases) {
    const e = await failure(call(c.securityGroups, 'createSecurityGroupRule', { securityGroupId: defaultGroup.id, ...req }, demo.token))
    t.equal(e.code, code, `${what}: code`)
    t.equal(fieldOf(e), field, `${what}: names ${field}`)
    t.match(e.details, msg, `${what}: says why`)
  }
  t.equal(await count(), before, 'nothing stored')
  const icmpType = await call<SecurityGroupRule>(c.securityGroups, 'createSecurityGroupRule', { securityGroupId: defaultGroup.id, protocol: 'icmp', portRangeMin: 8, portRangeMax: 0, remoteIpPrefix: '192.168.0.0/16' }, demo.token)
  t.match(icmpType, { portRangeMin: 8, portRangeMax: 0 }, 'icmp echo-request: type 8 code 0')
  const byNumber = await call<SecurityGroupRule>(c.securityGroups, 'createSecurityGroupRule', { securityGroupId: defaultGroup.id, protocol: '132', portRangeMin: 5000, portRangeMax: 5010 }, demo.token)
  t.match(byNumber, { protocol: '132', portRangeMin: 5000, portRangeMax: 5010 }, 'sctp by number takes ports')
  t.equal((await failure(call(c.securityGroups, 'createSecurityGroupRule', { securityGroupId: defaultGroup.id, protocol: 'tcp' }, other.token))).code, status.NOT_FOUND, 'another project cannot add rules to the group')
  await call(c.securityGroups, 'deleteSecurityGroupRule', { id: byNumber.id }, demo.token)
  t.equal((await failure(call(c.securityGroups, 'deleteSecurityGroupRule', { id: byNumber.id }, demo.token))).code, status.NOT_FOUND, 'deleted')
  t.equal((await failure(call(c.securityGroups, 'deleteSecurityGroupRule', { id: icmpType.id }, other.token))).code, status.NOT_FOUND)
})

t.test('groups: new ones get the egress rules; default cannot go; a group in use cannot go; quota', async (t) => {
  const web = await call<SecurityGroup>(c.securityGroups, 'createSecurityGroup', { name: 'web', description: 'http' }, demo.token)
  t.same(sortRules(rulesOf(web)).map((r) => `${r.direction}/${r.ethertype}/${r.remoteGroupId || r.remoteIpPrefix || 'any'}`), ['egress/IPv4/any', 'egress/IPv6/any'])
  const e = await failure(call(c.securityGroups, 'deleteSecurityGroup', { id: defaultGroup.id }, demo.token))
  t.equal(e.code, status.FAILED_PRECONDITION)
  t.match(e.details, /`default` security group cannot be deleted/)
  t.equal((await failure(call(c.securityGroups, 'createSecurityGroup', { name: 'default' }, demo.token))).code, status.ALREADY_EXISTS, 'a second `default` is refused')
  t.equal((await failure(call(c.securityGroups, 'updateSecurityGroup', { id: defaultGroup.id, name: 'renamed' }, demo.token))).code, status.FAILED_PRECONDITION, 'default keeps its name')
  t.equal((await call<SecurityGroup>(c.securityGroups, 'updateSecurityGroup', { id: web.id, description: 'http and https' }, demo.token)).description, 'http and https')

  const net = await call<Network>(c.networks, 'createNetwork', { name: 'n' }, demo.token)
  await call(c.subnets, 'createSubnet', { networkId: net.id, cidr: '10.0.0.0/24' }, demo.token)
  const port = await call<Port>(c.ports, 'createPort', { networkId: net.id, securityGroups: [web.id, defaultGroup.id] }, demo.token)
  t.same([...port.securityGroups].sort(), [web.id, defaultGroup.id].sort())
  const theirs = (await call<ListSecurityGroupsResponse>(c.securityGroups, 'listSecurityGroups', {}, other.token)).securityGroups[0]!
  const foreign = await failure(call(c.ports, 'createPort', { networkId: net.id, securityGroups: [theirs.id] }, demo.token))
  t.equal(foreign.code, status.NOT_FOUND, 'another project\'s group cannot be used')
  t.equal(fieldOf(foreign), 'security_groups[0]')
  const inUse = await failure(call(c.securityGroups, 'deleteSecurityGroup', { id: web.id }, demo.token))
  t.equal(inUse.code, status.ABORTED, 'a group in use by a port cannot be deleted (Neutron 409)')
  t.match(inUse.details, new RegExp(`in use by port ${port.id}`))
  await call(c.ports, 'deletePort', { id: port.id }, demo.token)
  await call(c.securityGroups, 'deleteSecurityGroup', { id: web.id }, demo.token)
  t.equal((await failure(call(c.securityGroups, 'getSecurityGroup', { id: web.id }, demo.token))).code, status.NOT_FOUND)

  const q = await tenant(s, 'sgquota')
  await call(c.quotas, 'updateQuota', { projectId: q.projectId, limits: { security_groups: 4, security_group_rules: 8 } }, s.adminToken)
  const made = await Promise.allSettled(Array.from({ length: 20 }, (_, i) => call<SecurityGroup>(c.securityGroups, 'createSecurityGroup', { name: `g${i}` }, q.token)))
  t.equal(made.filter((r) => r.status === 'fulfilled').length, 3, 'the quota of 4 counts the default group')
  t.ok(made.filter((r) => r.status === 'rejected').every((r) => (r as PromiseRejectedResult).reason.code === status.RESOURCE_EXHAUSTED))
  // 4 default rules + 2 egress rules x 3 groups = 10 > 8: the quota is already exceeded for new rules.
  const def = await call<SecurityGroup>(c.securityGroups, 'getSecurityGroup', { name: 'default' }, q.token)
  const r = await failure(call(c.securityGroups, 'createSecurityGroupRule', { securityGroupId: def.id, protocol: 'tcp', portRangeMin: 80, portRangeMax: 80 }, q.token))
  t.equal(r.code, status.RESOURCE_EXHAUSTED)
  t.match(r.details, /quota exceeded for security_group_rules/)
})

// The pure parts of the agent's L3 data plane (agent/net/l3.ts): device and
// namespace names, what a router spec must be, the nat table and routes it
// renders, and the diff that decides which steps an apply runs.
import t from 'tap'
import {
  type AppliedRouter, type MadeRouter, type Present, isEmptyPlan, linkFingerprint, planRouter, portAddresses, renderNat, renderRoutes, routerDevices, routerNamespace, routesFingerprint, validateRouter,
} from '../../../../agent/net/l3.js'
import type { RouterNetwork, RouterSpec } from '../../../../proto/router.js'

const R = '7e1f0a2b-1111-4a2b-8c3d-0123456789ab'
const P1 = 'a1a1a1a1-2222-4b3c-9d4e-0123456789ab'
const P2 = 'b2b2b2b2-3333-4c4d-8e5f-0123456789ab'
const G = 'c3c3c3c3-4444-4d5e-9f60-0123456789ab'
const net = (id: string, mtu = 1450): RouterNetwork => ({ networkId: id, networkType: 'local', physicalNetwork: '', segmentationId: 0, mtu })
const bridgeFor = (n: RouterNetwork) => `brq${n.networkId.slice(0, 11)}`

const spec = (): RouterSpec => ({
  id: R,
  adminStateUp: true,
  interfaces: [
    { portId: P1, macAddress: 'fa:16:3e:00:01:01', network: net('n1n1n1n1-0000'), addresses: ['10.0.1.1/24'], cidrs: ['10.0.1.0/24'] },
    { portId: P2, macAddress: 'fa:16:3e:00:02:01', network: net('n2n2n2n2-0000'), addresses: ['10.0.2.1/24', 'fd00:2::1/64'], cidrs: ['10.0.2.0/24', 'fd00:2::/64'] },
  ],
  gateway: { portId: G, macAddress: 'fa:16:3e:00:0e:0a', network: net('extextext-000', 1500), addresses: ['203.0.113.10/24'], cidrs: ['203.0.113.0/24'], nexthop: '203.0.113.1', enableSnat: true },
  routes: [{ destination: '192.168.50.0/24', nexthop: '10.0.1.254' }],
  floatingIps: [{ id: 'f1', floatingIpAddress: '203.0.113.20', fixedIpAddress: '10.0.1.5' }],
})

/** What the state file and the run would hold right after `s` was applied. */
function afterApply(s: RouterSpec): { made: MadeRouter; applied: AppliedRouter } {
  const all = [...s.interfaces.map((p) => ({ p, kind: 'qr' as const })), ...(s.gateway ? [{ p: s.gateway, kind: 'qg' as const }] : [])]
  return {
    made: {
      id: s.id, namespace: routerNamespace(s.id),
      ports: all.map(({ p, kind }) => ({ portId: p.portId, kind, ...routerDevices(p.portId, kind), bridge: bridgeFor(p.network), addresses: p.addresses })),
      floatingIps: s.floatingIps.map((f) => ({ floatingIpAddress: f.floatingIpAddress, fixedIpAddress: f.fixedIpAddress })),
    },
    applied: {
      links: new Map(all.map(({ p }) => [p.portId, linkFingerprint(s, p, bridgeFor(p.network))])),
      addresses: new Map(all.map(({ p, kind }) => [p.portId, portAddresses(s, p, kind)])),
      routes: routesFingerprint(s),
      nat: renderNat(s),
    },
  }
}
const everything: Present = { namespace: true, device: () => true }

t.test('names: qrouter-<id>; veth ends of 14 characters, tap on the host', async (t) => {
  t.equal(routerNamespace(R), `qrouter-${R}`)
  t.same(routerDevices(P1, 'qr'), { host: 'tapa1a1a1a1-22', inner: 'qr-a1a1a1a1-22' })
  t.same(routerDevices(G, 'qg'), { host: 'tapc3c3c3c3-44', inner: 'qg-c3c3c3c3-44' })
})

t.test('the nat table: floating DNAT and SNAT before the general SNAT; no NAT between own subnets', async (t) => {
  t.equal(renderNat(spec()), [
    '*nat', ':PREROUTING ACCEPT [0:0]', ':INPUT ACCEPT [0:0]', ':OUTPUT ACCEPT [0:0]', ':POSTROUTING ACCEPT [0:0]',
    '-A PREROUTING -d 203.0.113.20/32 -j DNAT --to-destination 10.0.1.5',
    '-A OUTPUT -d 203.0.113.20/32 -j DNAT --to-destination 10.0.1.5',
    '-A POSTROUTING ! -o qg-c3c3c3c3-44 -m conntrack ! --ctstate DNAT -j ACCEPT',
    '-A POSTROUTING -s 10.0.1.5/32 -o qg-c3c3c3c3-44 -j SNAT --to-source 203.0.113.20',
    '-A POSTROUTING -s 10.0.1.0/24 -o qg-c3c3c3c3-44 -j SNAT --to-source 203.0.113.10',
    '-A POSTROUTING -s 10.0.2.0/24 -o qg-c3c3c3c3-44 -j SNAT --to-source 203.0.113.10',
    '-A POSTROUTING -s 10.0.1.0/24 -m conntrack --ctstate DNAT -j SNAT --to-source 203.0.113.10',
    '-A POSTROUTING -s 10.0.2.0/24 -m conntrack --ctstate DNAT -j SNAT --to-source 203.0.113.10',
    'COMMIT', '',
  ].join('\n'), 'IPv6 subnets are not translated')
  const noSnat = renderNat({ ...spec(), gateway: { ...spec().gateway!, enableSnat: false } })
  t.notMatch(noSnat, /--to-source 203\.0\.113\.10/, 'enableSnat false: no SNAT to the gateway address…')
  t.match(noSnat, '-j SNAT --to-source 203.0.113.20', '…but floating IPs still translate')
  const noGateway = renderNat({ ...spec(), gateway: undefined, floatingIps: [] })
  t.notMatch(noGateway, /-A /, 'no gateway: an empty table')
})

t.test('routes: the default via the nexthop, extra routes; none while down', async (t) => {
  t.same([...renderRoutes(spec())], [['0.0.0.0/0', '203.0.113.1'], ['192.168.50.0/24', '10.0.1.254']])
  t.same([...renderRoutes({ ...spec(), gateway: { ...spec().gateway!, nexthop: '' } })], [['192.168.50.0/24', '10.0.1.254']], 'no nexthop: no default route')
  t.same([...renderRoutes({ ...spec(), adminStateUp: false })], [])
})

t.test('bad input is refused, naming the router and what', async (t) => {
  const bad = (change: (s: RouterSpec) => void, message: RegExp) => {
    const s = spec()
    change(s)
    t.throws(() => validateRouter(s), { name: 'InvalidArgument', message }, message.source)
  }
  t.doesNotThrow(() => validateRouter(spec()))
  bad((s) => (s.id = 'a/b'), /^router "a\/b": its id cannot name a network namespace/)
  bad((s) => (s.interfaces[0]!.portId = 'short'), /interface port "short": a port id needs 11 or more/)
  bad((s) => (s.interfaces[1]!.portId = `${P1.slice(0, 11)}zzz`), /another port of the router starts with a1a1a1a1-22/)
  bad((s) => (s.interfaces[0]!.macAddress = 'fa:16:3e'), /"fa:16:3e" is not a MAC address/)
  bad((s) => (s.interfaces[0]!.addresses = ['10.0.1.1']), /"10\.0\.1\.1" is not an address with a prefix length/)
  bad((s) => (s.interfaces[0]!.cidrs = ['10.0.1.0/33']), /"10\.0\.1\.0\/33"/)
  bad((s) => (s.interfaces[0]!.network.mtu = 20), /MTU 20 is not 0/)
  bad((s) => (s.routes = [{ destination: '192.168.50.0/24', nexthop: 'gw' }]), /needs a destination CIDR and a nexthop address/)
  bad((s) => (s.gateway = undefined), /floating IPs need an external gateway/)
  bad((s) => (s.gateway!.addresses = ['2001:db8::10/64']), /the gateway has no IPv4 address/)
  bad((s) => (s.floatingIps[0]!.fixedIpAddress = 'fd00::5'), /must be two IPv4 addresses/)
  bad((s) => s.floatingIps.push({ ...s.floatingIps[0]!, id: 'f2' }), /203\.0\.113\.20 is given twice/)
})

t.test('the diff: a no-change apply does nothing', async (t) => {
  const { made, applied } = afterApply(spec())
  const plan = planRouter(spec(), made, applied, everything, bridgeFor)
  t.ok(isEmptyPlan(plan), JSON.stringify(plan))
})

t.test('the diff: first apply of a run converges everything from the kernel, recreating nothing', async (t) => {
  const { made } = afterApply(spec())
  const plan = planRouter(spec(), made, undefined, everything, bridgeFor)
  t.same(plan.plumb, [], 'devices that exist are kept (flows survive a restart)')
  t.same(plan.links, [P1, P2, G])
  t.same(plan.addresses.map((c) => [c.portId, c.have]), [[P1, undefined], [P2, undefined], [G, undefined]], 'addresses compared with what the kernel lists')
  t.same(plan.addresses.find((c) => c.portId === G)?.want, ['203.0.113.10/24', '203.0.113.20/32'], 'the gateway holds the floating IPs')
  t.ok(plan.setup && plan.routes && plan.nat !== undefined)
  t.notOk(plan.createNamespace)
  t.same(plan.forget, [])
})

t.test('the diff: a new router builds everything', async (t) => {
  const plan = planRouter(spec(), undefined, undefined, { namespace: false, device: () => false }, bridgeFor)
  t.ok(plan.createNamespace && plan.setup && plan.routes && plan.nat !== undefined)
  t.same(plan.plumb, [P1, P2, G])
  t.same(plan.links, [P1, P2, G])
  t.same(plan.addresses.map((c) => [c.portId, c.have]), [[P1, []], [P2, []], [G, []]])
})

t.test('the diff: a device or the namespace gone is rebuilt', async (t) => {
  const { made, applied } = afterApply(spec())
  const tap = routerDevices(P2, 'qr').host
  const oneGone = planRouter(spec(), made, applied, { namespace: true, device: (n) => n !== tap }, bridgeFor)
  t.same(oneGone.plumb, [P2])
  t.same(oneGone.links, [P2])
  t.same(oneGone.addresses.map((c) => [c.portId, c.have]), [[P2, []]], 'a new device has no addresses: no need to ask')
  t.ok(oneGone.routes, 'routes again: a recreated device loses them')
  t.equal(oneGone.setup, false)
  t.equal(oneGone.nat, undefined, 'the nat table matches devices by name: kept')
  const nsGone = planRouter(spec(), made, applied, { namespace: false, device: () => true }, bridgeFor)
  t.ok(nsGone.createNamespace && nsGone.setup && nsGone.nat !== undefined)
  t.same(nsGone.plumb, [P1, P2, G], 'every pair again (a host end left over is replaced)')
})

t.test('the diff: a floating IP removed, moved or added touches only the gateway\'s addresses and the nat table', async (t) => {
  const { made, applied } = afterApply(spec())
  const gone = planRouter({ ...spec(), floatingIps: [] }, made, applied, everything, bridgeFor)
  t.same(gone.forget, ['203.0.113.20'], 'its flows are forgotten')
  t.same(gone.addresses, [{ portId: G, want: ['203.0.113.10/24'], have: ['203.0.113.10/24', '203.0.113.20/32'] }], 'its address goes, known without asking the kernel')
  t.notMatch(gone.nat ?? '', /203\.0\.113\.20/, 'and its rules')
  t.same([gone.plumb, gone.links, gone.routes, gone.setup], [[], [], false, false], 'nothing else')
  const moved = planRouter({ ...spec(), floatingIps: [{ id: 'f1', floatingIpAddress: '203.0.113.20', fixedIpAddress: '10.0.2.5' }] }, made, applied, everything, bridgeFor)
  t.same(moved.forget, ['203.0.113.20'], 'another fixed IP: the old flows go')
  t.same(moved.addresses, [], 'the address stays')
  t.match(moved.nat, '--to-destination 10.0.2.5')
  const added = planRouter({ ...spec(), floatingIps: [...spec().floatingIps, { id: 'f2', floatingIpAddress: '203.0.113.21', fixedIpAddress: '10.0.2.5' }] }, made, applied, everything, bridgeFor)
  t.same(added.forget, [], 'one more: the others keep their flows')
  t.same(added.addresses.map((c) => c.portId), [G])
  t.equal(added.routes, false)
})

t.test('the diff: an interface removed, a route or SNAT changed, admin state', async (t) => {
  const { made, applied } = afterApply(spec())
  const one = planRouter({ ...spec(), interfaces: [spec().interfaces[0]!] }, made, applied, everything, bridgeFor)
  t.same(one.unplug.map((p) => p.host), [routerDevices(P2, 'qr').host])
  t.same([one.links, one.addresses], [[], []])
  t.ok(one.nat !== undefined, 'its subnet leaves the SNAT rules')
  t.ok(one.routes, 'routes checked again (a nexthop may have been on it)')
  const route = planRouter({ ...spec(), routes: [] }, made, applied, everything, bridgeFor)
  t.ok(route.routes)
  t.equal(route.nat, undefined)
  t.same([route.links, route.addresses], [[], []])
  const snat = planRouter({ ...spec(), gateway: { ...spec().gateway!, enableSnat: false } }, made, applied, everything, bridgeFor)
  t.ok(snat.nat !== undefined && !snat.routes && !snat.links.length && !snat.addresses.length)
  const down = planRouter({ ...spec(), adminStateUp: false }, made, applied, everything, bridgeFor)
  t.same(down.links, [P1, P2, G], 'down: every link')
  t.same(down.addresses, [])
  t.ok(down.routes)
  t.equal(down.setup, false)
  const mtu = spec()
  mtu.interfaces[0]!.network.mtu = 1400
  t.same(planRouter(mtu, made, applied, everything, bridgeFor).links, [P1], 'a new MTU: that link only')
})

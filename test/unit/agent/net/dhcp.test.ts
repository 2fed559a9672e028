// The pure parts of the agent's DHCP (agent/net/dhcp.ts): dnsmasq's command
// line, hosts file and options file for a network, the names of the
// namespace and veth ends, and the DHCP configuration as it comes off the wire.
import t from 'tap'
import { cidrParts, dhcpInterfaces, dhcpNamespace, dnsmasqArgs, renderHosts, renderOpts, servedSubnets, staleLeases } from '../../../../agent/net/dhcp.js'
import { dhcpFromWire } from '../../../../agent/conductor-client.js'
import { ConductorReply } from '../../../../proto/gen/strato/agent/v1/agent.js'
import type { DhcpNetwork } from '../../../../proto/dhcp.js'

const NET = '3a0b6c7d-1111-4a2b-8c3d-0123456789ab'
const PORT = '5f0e1d2c-2222-4b3c-9d4e-0123456789ab'
const S1 = 'aaaaaaaa-3333-4c4d-8e5f-0123456789ab'
const S2 = 'bbbbbbbb-4444-4d5e-9f60-0123456789ab'
const VM = 'cccccccc-5555-4e6f-8a71-0123456789ab'

const network = (): DhcpNetwork => ({
  networkId: NET, networkType: 'flat', physicalNetwork: 'provider', segmentationId: 0, mtu: 1450,
  port: { id: PORT, macAddress: 'fa:16:3e:00:00:02', fixedIps: [{ subnetId: S1, ipAddress: '10.0.0.2', cidr: '10.0.0.0/24' }, { subnetId: S2, ipAddress: '10.9.0.2', cidr: '10.9.0.0/26' }] },
  subnets: [
    { id: S1, ipVersion: 4, cidr: '10.0.0.0/24', gatewayIp: '10.0.0.1', dnsNameservers: ['8.8.8.8', '1.1.1.1'], hostRoutes: [{ destination: '172.16.0.0/12', nexthop: '10.0.0.254' }], enableDhcp: true, hasRouter: false },
    { id: S2, ipVersion: 4, cidr: '10.9.0.0/26', gatewayIp: '', dnsNameservers: [], hostRoutes: [], enableDhcp: true, hasRouter: false },
  ],
  hosts: [{ portId: VM, macAddress: 'fa:16:3e:aa:bb:cc', fixedIps: [{ subnetId: S1, ipAddress: '10.0.0.5', cidr: '10.0.0.0/24' }, { subnetId: S2, ipAddress: '10.9.0.5', cidr: '10.9.0.0/26' }], hostname: 'host-10-0-0-5' }],
  leaseSeconds: 86400,
})

t.test('names: qdhcp-<network id>; veth ends fit IFNAMSIZ', async (t) => {
  t.equal(dhcpNamespace(NET), `qdhcp-${NET}`)
  const d = dhcpInterfaces(PORT)
  t.same(d, { host: 'tap5f0e1d2c-22', ns: 'ns-5f0e1d2c-22' })
  t.ok(d.host.length <= 15 && d.ns.length <= 15)
  t.same(cidrParts('10.9.0.0/26'), { network: '10.9.0.0', netmask: '255.255.255.192', prefix: 26 })
  t.same(cidrParts('192.168.201.77/24'), { network: '192.168.201.0', netmask: '255.255.255.0', prefix: 24 })
})

t.test('dnsmasq: static ranges per served subnet, own files, no ping, authoritative', async (t) => {
  const args = dnsmasqArgs(network(), '/var/lib/strato/dhcp/n')
  t.same(args, [
    '--conf-file=/dev/null', '--no-hosts', '--no-resolv', '--port=0', '--strict-order', '--except-interface=lo', '--bind-interfaces', '--interface=ns-5f0e1d2c-22',
    `--dhcp-range=set:subnet-${S1},10.0.0.0,static,255.255.255.0,86400s`,
    `--dhcp-range=set:subnet-${S2},10.9.0.0,static,255.255.255.192,86400s`,
    '--dhcp-hostsfile=/var/lib/strato/dhcp/n/host', '--dhcp-optsfile=/var/lib/strato/dhcp/n/opts', '--dhcp-leasefile=/var/lib/strato/dhcp/n/leases',
    '--no-ping', '--pid-file=/var/lib/strato/dhcp/n/pid', '--dhcp-authoritative', '--log-dhcp', '--log-facility=/var/lib/strato/dhcp/n/log', '--user=root',
  ])
})

t.test('hosts file: MAC,hostname,IP per fixed IP on a served subnet', async (t) => {
  t.equal(renderHosts(network()), 'fa:16:3e:aa:bb:cc,host-10-0-0-5,10.0.0.5\nfa:16:3e:aa:bb:cc,host-10-0-0-5,10.9.0.5\n')
  const n = network()
  n.subnets[1]!.enableDhcp = false
  t.equal(renderHosts(n), 'fa:16:3e:aa:bb:cc,host-10-0-0-5,10.0.0.5\n', 'nothing on a subnet with DHCP off')
  t.same(servedSubnets(n).map((s) => s.id), [S1])
  n.subnets[0]!.enableDhcp = false
  t.same(servedSubnets(n), [], 'no served subnet: the agent makes no namespace')
})

t.test('options: DNS, classless routes with metadata via the DHCP port and the default route, router, MTU', async (t) => {
  t.equal(renderOpts(network()), [
    `tag:subnet-${S1},option:dns-server,8.8.8.8,1.1.1.1`,
    `tag:subnet-${S1},option:classless-static-route,172.16.0.0/12,10.0.0.254,169.254.169.254/32,10.0.0.2,0.0.0.0/0,10.0.0.1`,
    `tag:subnet-${S1},249,172.16.0.0/12,10.0.0.254,169.254.169.254/32,10.0.0.2,0.0.0.0/0,10.0.0.1`,
    `tag:subnet-${S1},option:router,10.0.0.1`,
    `tag:subnet-${S1},option:mtu,1450`,
    // No gateway: no default route and an empty router option (dnsmasq would offer itself otherwise).
    `tag:subnet-${S2},option:classless-static-route,169.254.169.254/32,10.9.0.2`,
    `tag:subnet-${S2},249,169.254.169.254/32,10.9.0.2`,
    `tag:subnet-${S2},option:router`,
    `tag:subnet-${S2},option:mtu,1450`,
    '',
  ].join('\n'))
  const routed = network()
  routed.subnets = [{ ...routed.subnets[0]!, hasRouter: true, hostRoutes: [{ destination: '0.0.0.0/0', nexthop: '10.0.0.254' }] }]
  t.match(renderOpts(routed), `tag:subnet-${S1},option:classless-static-route,0.0.0.0/0,10.0.0.254\n`, 'a router serves metadata: no 169.254 route; a default host route wins over the gateway')
})

const wire = (n: DhcpNetwork) => {
  const { port, ...rest } = n
  return ConductorReply.decode(ConductorReply.encode({ dhcp: { networks: [{ ...rest, portId: port.id, macAddress: port.macAddress, fixedIps: port.fixedIps }] } }).finish()).dhcp
}

t.test('the DHCP configuration survives the wire; what would reach dnsmasq malformed is refused by field', async (t) => {
  t.same(dhcpFromWire(wire(network())), [network()])
  t.same(dhcpFromWire(undefined), [])
  const bad = (mutate: (n: DhcpNetwork) => void, field: RegExp) => {
    const n = network()
    mutate(n)
    t.throws(() => dhcpFromWire(wire(n)), { name: 'Internal', message: field })
  }
  bad((n) => (n.networkId = '../../etc'), /networks\[0\]\.network_id is not a uuid/)
  bad((n) => (n.port.macAddress = 'fa:16:3e:00:00:02,evil'), /networks\[0\]\.mac_address is not a MAC/)
  bad((n) => (n.hosts[0]!.hostname = 'a,b'), /hosts\[0\]\.hostname is not a host name/)
  bad((n) => (n.subnets[0]!.dnsNameservers = ['8.8.8.8\n--dhcp-script=/x']), /dns_nameservers\[0\] is not an IPv4 address/)
  bad((n) => (n.subnets[0]!.cidr = '10.0.0.0/33'), /subnets\[0\]\.cidr is not an IPv4 CIDR/)
  bad((n) => (n.hosts[0]!.fixedIps[0]!.ipAddress = '10.0.0.256'), /ip_address is not an IPv4 address/)
  bad((n) => (n.leaseSeconds = 10), /lease_seconds must be an integer ≥ 120/)
})

t.test('stale leases: the (MAC, IP) pairs a hosts file no longer has', async (t) => {
  const before = 'fa:16:3e:00:00:01,host-10-0-0-5,10.0.0.5\nfa:16:3e:00:00:02,host-10-0-0-6,10.0.0.6\n'
  t.same(staleLeases(before, before), [], 'nothing changed')
  t.same(staleLeases(before, 'fa:16:3e:00:00:02,host-10-0-0-6,10.0.0.6\n'), [{ mac: 'fa:16:3e:00:00:01', ip: '10.0.0.5' }], 'a deleted port')
  t.same(staleLeases(before, 'fa:16:3e:00:00:03,host-10-0-0-5,10.0.0.5\nfa:16:3e:00:00:02,host-10-0-0-6,10.0.0.6\n'), [{ mac: 'fa:16:3e:00:00:01', ip: '10.0.0.5' }], 'its address now another MAC\'s')
  t.same(staleLeases('', before), [], 'a first hosts file releases nothing')
})

// The conductor's replies as the agent reads them (agent/conductor-client.ts): decoded
// field by field from the agent.v1 messages, malformed ones refused naming the field.
import t from 'tap'
import { announcedFromWire, buildSpecFromWire, firewallFromWire, instanceMetadataFromWire, knownInstancesFromWire, routersFromWire } from '../../../agent/conductor-client.js'
import type { BuildSpec } from '../../../proto/build-spec.js'
import { Internal } from '../../../proto/errors.js'
import { BuildSpec as WireBuildSpec, ConductorReply } from '../../../proto/gen/strato/agent/v1/agent.js'
import { instance } from '../../fixtures/instance-metadata.js'

const uuid = '6f1c0c2e-8f0b-4c1e-9a59-0d5f4f6a0b11'
const imageId = '0b5e7c1a-3d2f-4e6a-8b9c-1d2e3f4a5b6c'

/** A full spec, as the controller builds it. */
const spec = (): BuildSpec => ({
  instanceUuid: uuid, name: `instance-${uuid}`, displayName: 'web', vcpus: 2, memoryMb: 512, diskGb: 1, projectId: 'p1',
  imageId, imageChecksum: 'abc', imageReadToken: 'tok', imageDiskFormat: 'qcow2', keyName: 'mykey', publicKey: 'ssh-ed25519 AAAA', userData: 'aGk=',
  metadata: { role: 'web' }, availabilityZone: 'nova', hostname: 'web', configDrive: true, volumes: [],
  nics: [{
    portId: 'port-1', macAddress: 'fa:16:3e:00:00:01', networkId: 'net-1', networkType: 'flat', physicalNetwork: 'provider', segmentationId: 0,
    fixedIps: ['10.0.0.5'],
    ips: [{ address: '10.0.0.5', subnetId: 'sub-1', ipVersion: 4, cidr: '10.0.0.0/24', gatewayIp: '10.0.0.1', dnsNameservers: ['8.8.8.8'], hostRoutes: [{ destination: '10.1.0.0/16', nexthop: '10.0.0.254' }] }],
  }],
})

/** What the agent decodes from the bytes the controller would send. */
const overTheWire = (s: Partial<BuildSpec> | Record<string, unknown>) => ConductorReply.decode(ConductorReply.encode({ buildSpec: s as WireBuildSpec }).finish()).buildSpec!

t.test('a build spec survives the wire field by field', async (t) => {
  t.same(buildSpecFromWire(overTheWire(spec()), uuid), spec())
  const minimal = { ...spec(), displayName: '', imageChecksum: '', imageReadToken: '', imageDiskFormat: '', keyName: '', publicKey: '', userData: '', metadata: {}, availabilityZone: '', hostname: '', configDrive: false, diskGb: 0, nics: [] }
  t.same(buildSpecFromWire(overTheWire(minimal), uuid), minimal, "proto3 defaults ('' / 0 / false / none) read back as such")
})

t.test('a malformed build spec is refused, naming the field', async (t) => {
  const cases: Array<[string, Record<string, unknown>, RegExp]> = [
    ['no uuid', { instanceUuid: '' }, /instance_uuid is missing/],
    ['another server', { instanceUuid: imageId }, /instance_uuid is 0b5e7c1a.*another server/],
    ['no domain name', { name: '' }, /name is missing/],
    ['no vcpus', { vcpus: 0 }, /vcpus must be an integer ≥ 1, got 0/],
    ['no memory', { memoryMb: 0 }, /memory_mb must be an integer ≥ 1/],
    ['negative disk', { diskGb: -1 }, /disk_gb must be an integer ≥ 0, got -1/],
    ['image not a uuid', { imageId: 'cirros' }, /image_id is not a uuid: 'cirros'/],
    ['nic without MAC', { nics: [{ ...spec().nics[0], macAddress: '' }] }, /nics\[0\]\.mac_address is missing/],
    ['nic without network type', { nics: [{ ...spec().nics[0], networkType: '' }] }, /nics\[0\]\.network_type is missing/],
    ['address of no IP version', { nics: [{ ...spec().nics[0], ips: [{ ...spec().nics[0]!.ips[0], ipVersion: 5 }] }] }, /nics\[0\]\.ips\[0\]\.ip_version must be 4 or 6, got 5/],
    ['route without next hop', { nics: [{ ...spec().nics[0], ips: [{ ...spec().nics[0]!.ips[0], hostRoutes: [{ destination: '0.0.0.0/0', nexthop: '' }] }] }] }, /host_routes\[0\]\.nexthop is missing/],
  ]
  for (const [what, change, message] of cases) {
    const err = (() => {
      try {
        buildSpecFromWire(overTheWire({ ...spec(), ...change }), uuid)
      } catch (e) {
        return e
      }
      return undefined
    })()
    t.type(err, Internal, `${what}: an Internal error (a bug or version skew, not to be retried)`)
    t.match((err as Error | undefined)?.message, message, what)
    t.match((err as Error | undefined)?.message, `malformed build spec for server ${uuid}`, `${what}: the message says whose spec`)
  }
})

t.test('announce replies, host instances and firewall ports are decoded and checked too', async (t) => {
  t.same(announcedFromWire({ mapped: true, heartbeatIntervalMs: 500, castStream: 'S', castConsumer: 'c', apiAddress: '127.0.0.1:1' }), { mapped: true, heartbeatIntervalMs: 500, castStream: 'S', castConsumer: 'c', apiAddress: '127.0.0.1:1' })
  t.throws(() => announcedFromWire({ mapped: true, castStream: 'S' }), /malformed announce reply: cast_consumer is missing/)

  t.same(knownInstancesFromWire(undefined), [])
  t.same(knownInstancesFromWire({ instances: [{ instanceUuid: uuid, host: 'node1', vmState: 'active', taskState: '', powerState: 1, pendingCastId: 'stop.x.y', pendingRequestId: 'req-1' }] }), [{ instanceUuid: uuid, host: 'node1', vmState: 'active', taskState: '', pendingCastId: 'stop.x.y', pendingRequestId: 'req-1' }])
  t.throws(() => knownInstancesFromWire({ instances: [{ instanceUuid: 'x', vmState: 'active' }] }), /instances\[0\]\.instance_uuid is not a uuid/)

  const rule = { direction: 'ingress', ethertype: 'IPv4', protocol: 6, portMin: 22, portMax: 22, remotePrefix: '' }
  t.same(firewallFromWire({ ports: [{ portId: 'p', macAddress: 'fa:16:3e:00:00:01', fixedIps: ['10.0.0.5'], rules: [rule] }] }), [{ portId: 'p', macAddress: 'fa:16:3e:00:00:01', fixedIps: ['10.0.0.5'], rules: [rule] }])
  t.throws(() => firewallFromWire({ ports: [{ portId: 'p', macAddress: 'm', rules: [{ ...rule, direction: 'inbound' }] }] }), /ports\[0\]\.rules\[0\]\.direction must be one of ingress, egress, got 'inbound'/)
  t.throws(() => firewallFromWire({ ports: [{ portId: 'p', macAddress: 'm', rules: [{ ...rule, ethertype: '' }] }] }), /ethertype must be one of IPv4, IPv6/)
})

t.test('instance metadata (the metadata service) survives the wire and is checked too', async (t) => {
  const meta = instance()
  const wire = ConductorReply.decode(ConductorReply.encode({ metadata: meta }).finish()).metadata!
  t.same(instanceMetadataFromWire(wire), meta)
  t.throws(() => instanceMetadataFromWire({ ...wire, instanceUuid: 'web' }), { name: 'Internal', message: /malformed instance metadata: instance_uuid is not a uuid/ })
  t.throws(() => instanceMetadataFromWire({ ...wire, nics: [{ ...wire.nics![0]!, portId: '' }] }), { name: 'Internal', message: /nics\[0\]\.port_id is missing/ })
})

t.test('routers: decoded field by field; what would reach ip or iptables malformed is refused naming the field', async (t) => {
  const net = { networkId: '0b5e7c1a-3d2f-4e6a-8b9c-1d2e3f4a5b60', networkType: 'local', physicalNetwork: '', segmentationId: 0, mtu: 1500 }
  const port = (id: string, addresses: string[], cidrs: string[]) => ({ portId: id, macAddress: 'fa:16:3e:00:00:02', network: net, addresses, cidrs })
  const router = {
    id: uuid, adminStateUp: true,
    interfaces: [port('1b4e28ba-2fa1-4d3b-a3f5-ef19b5a7633b', ['10.0.0.1/24'], ['10.0.0.0/24'])],
    gateway: { ...port('2b4e28ba-2fa1-4d3b-a3f5-ef19b5a7633b', ['192.168.201.200/24'], ['192.168.201.0/24']), nexthop: '192.168.201.1', enableSnat: true },
    routes: [{ destination: '172.16.0.0/16', nexthop: '10.0.0.9' }],
    floatingIps: [{ id: imageId, floatingIpAddress: '192.168.201.201', fixedIpAddress: '10.0.0.5' }],
  }
  const wire = (r: Record<string, unknown>) => {
    const { gateway, ...rest } = r as typeof router
    const w = gateway ? { ...rest, gateway: { port: { ...gateway, nexthop: undefined, enableSnat: undefined }, nexthop: gateway.nexthop, enableSnat: gateway.enableSnat } } : rest
    return ConductorReply.decode(ConductorReply.encode({ routers: { routers: [w as never] } }).finish()).routers
  }
  t.same(routersFromWire(wire(router)), [router], 'a router survives the wire')
  const { gateway: _g, ...noGateway } = router
  t.same(routersFromWire(wire({ ...noGateway, floatingIps: [] })), [{ ...noGateway, floatingIps: [] }], 'without a gateway')
  t.same(routersFromWire(undefined), [])
  const bad = (r: Record<string, unknown>, field: string) => t.throws(() => routersFromWire(wire(r)), { name: 'Internal', field }, field)
  bad({ ...router, id: 'x; rm -rf /' }, 'routers[0].id')
  bad({ ...router, interfaces: [port('1b4e28ba-2fa1-4d3b-a3f5-ef19b5a7633b', ['10.0.0.1'], ['10.0.0.0/24'])] }, 'routers[0].interfaces[0].addresses[0]')
  bad({ ...router, interfaces: [port('1b4e28ba-2fa1-4d3b-a3f5-ef19b5a7633b', ['10.0.0.1/24'], ['10.0.0.0/33'])] }, 'routers[0].interfaces[0].cidrs[0]')
  bad({ ...router, routes: [{ destination: '172.16.0.0/16', nexthop: 'eth0' }] }, 'routers[0].routes[0].nexthop')
  bad({ ...router, floatingIps: [{ id: imageId, floatingIpAddress: '192.168.201.201', fixedIpAddress: '' }] }, 'routers[0].floating_ips[0].fixed_ip_address')
  bad({ ...router, gateway: { ...router.gateway, macAddress: 'zz' } }, 'routers[0].gateway.port.mac_address')
})

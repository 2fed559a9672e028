// `strato router …` against a real controller: openstackclient 6.0's router
// commands with their columns and `-f json` fields, the external gateway,
// routes (--route appends, --no-route clears, unset removes), interfaces by
// subnet and by port, Neutron's refusals as one-line errors, and floating IPs
// that need a router.
import t from 'tap'
import { startController, type TestController } from '../../helpers/controller.js'
import type { TestContext } from '../../helpers/tap.js'
import { adminAndDemo, failsWith, fields, header, removeHomes, rows, succeeds, type Result } from './cli.js'

let s: TestController
let env: Record<string, string>
let demo: Record<string, string>

t.before(async () => {
  s = await startController()
  ;({ env, demo } = await adminAndDemo(s.openrc))
  for (const line of [
    'network create --share --external --provider-physical-network provider --provider-network-type flat provider',
    'subnet create --network provider --allocation-pool start=192.168.201.200,end=192.168.201.210 --gateway 192.168.201.1 --subnet-range 192.168.201.0/24 provider-v4',
  ]) await succeeds(t, line, env)
})
t.teardown(async () => {
  await s.close()
  removeHomes()
})

const ok = (t: TestContext, line: string, e = demo): Promise<string> => succeeds(t, line, e)
const fails = (t: TestContext, line: string, code: number, e = demo): Promise<Result> => failsWith(t, line, code, e)
const json = async (t: TestContext, line: string, e = demo) => JSON.parse(await ok(t, `${line} -f json`, e)) as Record<string, unknown>

t.test('create, show, list: openstackclient\'s fields and columns', async (t) => {
  const created = fields(await ok(t, 'router create --description first r1'))
  t.same(Object.keys(created), ['admin_state_up', 'availability_zone_hints', 'availability_zones', 'created_at', 'description', 'external_gateway_info', 'flavor_id', 'id', 'name', 'project_id', 'revision_number', 'routes', 'status', 'tags', 'updated_at'])
  t.match(created, { admin_state_up: 'UP', description: 'first', external_gateway_info: 'None', name: 'r1', routes: '', status: 'ACTIVE' })
  const shown = await json(t, 'router show r1')
  t.match(shown, { id: created.id, name: 'r1', admin_state_up: 'UP', external_gateway_info: null, routes: [], interfaces_info: [], status: 'ACTIVE' })
  t.notOk('l3_agent_host' in shown, 'the L3 agent host is for admins, and r1 is on none')

  const list = await ok(t, 'router list')
  t.match(header(list), /^\| ID +\| Name +\| Status +\| State +\| Project +\|$/)
  t.same(rows(list).map((r) => r.slice(1, 4)), [['r1', 'ACTIVE', 'UP']])
  const long = await ok(t, 'router list --long')
  t.match(header(long), /\| Project +\| Routes +\| External gateway info +\| Availability zones +\| Tags +\|$/)
  await ok(t, 'router create --disable r2')
  t.same(rows(await ok(t, 'router list --disable')).map((r) => r[1]), ['r2'], '--disable lists disabled ones')
  await ok(t, 'router set --enable --name r2b r2')
  t.match(fields(await ok(t, 'router show r2b')), { admin_state_up: 'UP' })
  await ok(t, 'router delete r2b')
  t.equal((await fails(t, 'router show r2b', 1)).stderr, "No router with a name or ID of 'r2b' exists.\n")
})

t.test('the external gateway: set, with SNAT and fixed IPs (admin), unset', async (t) => {
  await ok(t, 'network create inside')
  const notExternal = await fails(t, 'router set --external-gateway inside r1', 1)
  t.match(notExternal.stderr, /Network [0-9a-f-]{36} is not a valid external network/)
  t.match((await fails(t, 'router set --disable-snat r1', 2)).stderr, /You must specify '--external-gateway' in order to specify SNAT or fixed-ip values/)
  t.match((await fails(t, 'router set --external-gateway provider --disable-snat r1', 1)).stderr, /only admins may disable SNAT/)
  await ok(t, 'router set --external-gateway provider r1')
  const gw = (await json(t, 'router show r1')).external_gateway_info as { network_id: string; enable_snat: boolean; external_fixed_ips: Array<{ ip_address: string }> }
  t.match(gw, { enable_snat: true, external_fixed_ips: [{ ip_address: /^192\.168\.201\.2\d\d$/ }] })
  t.match(fields(await ok(t, 'router show r1')).external_gateway_info, /^\{"network_id": "[0-9a-f-]{36}", "external_fixed_ips": \[\{"subnet_id": "[0-9a-f-]{36}", "ip_address": "192\.168\.201\.2\d\d"\}\], "enable_snat": true\}$/, "json.dumps'd in a table, as openstackclient prints it")

  await ok(t, 'router set --external-gateway provider --disable-snat --fixed-ip subnet=provider-v4,ip-address=192.168.201.77 r1', env)
  t.match((await json(t, 'router show r1', env)).external_gateway_info, { enable_snat: false, external_fixed_ips: [{ ip_address: '192.168.201.77' }] })
  await ok(t, 'router unset --external-gateway r1')
  t.equal((await json(t, 'router show r1')).external_gateway_info, null)
  await ok(t, 'router create --external-gateway provider r-gw')
  t.match((await json(t, 'router show r-gw')).external_gateway_info, { enable_snat: true })
  await ok(t, 'router delete r-gw')
})

t.test('interfaces by subnet and by port, routes, delete refused while interfaces exist', async (t) => {
  await ok(t, 'network create n1')
  await ok(t, 'subnet create --network n1 --subnet-range 10.10.0.0/24 s1')
  await ok(t, 'network create n2')
  await ok(t, 'subnet create --network n2 --subnet-range 10.10.0.0/25 s2')
  await ok(t, 'subnet create --network n2 --subnet-range 10.20.0.0/24 s3')
  await ok(t, 'router add subnet r1 s1')
  const info = (await json(t, 'router show r1')).interfaces_info as Array<{ port_id: string; ip_address: string }>
  t.match(info, [{ ip_address: '10.10.0.1' }], 'the interface takes the subnet\'s gateway IP')
  t.match(fields(await ok(t, 'router show r1')).interfaces_info, /^\[\{"port_id": "[0-9a-f-]{36}", "ip_address": "10\.10\.0\.1", "subnet_id": "[0-9a-f-]{36}"\}\]$/)
  t.match(fields(await ok(t, `port show ${info[0]!.port_id}`)), { device_owner: 'network:router_interface' })
  t.match((await fails(t, 'router add subnet r1 s2', 1)).stderr, /Cidr 10\.10\.0\.0\/25 of subnet [0-9a-f-]{36} overlaps with cidr 10\.10\.0\.0\/24/)
  await ok(t, 'router create r3')
  t.match((await fails(t, 'router add subnet r3 s1', 1)).stderr, /is already on router [0-9a-f-]{36} \('r1'\)/)
  t.match((await fails(t, `port delete ${info[0]!.port_id}`, 1)).stderr, /cannot be deleted directly via the port API: has device owner network:router_interface/)

  await ok(t, 'port create --network n2 --fixed-ip subnet=s3,ip-address=10.20.0.5 p3')
  await ok(t, 'router add port r1 p3')
  t.match(fields(await ok(t, 'port show p3')), { device_owner: 'network:router_interface' })

  await ok(t, 'router set --route destination=172.16.0.0/16,gateway=10.10.0.9 r1')
  await ok(t, 'router set --route destination=172.17.0.0/16,gateway=10.20.0.9 r1')
  t.same((await json(t, 'router show r1')).routes, [{ destination: '172.17.0.0/16', nexthop: '10.20.0.9' }, { destination: '172.16.0.0/16', nexthop: '10.10.0.9' }], '--route appends')
  t.equal(fields(await ok(t, 'router show r1')).routes, "destination='172.17.0.0/16', gateway='10.20.0.9'", 'one line per route in a table (the cell shows its first line)')
  t.match((await fails(t, 'router set --route destination=172.18.0.0/16,gateway=10.99.0.1 r1', 1)).stderr, /the nexthop is not connected with router/)
  t.match((await fails(t, 'router remove port r1 p3', 1)).stderr, /required by one or more routes \(172\.17\.0\.0\/16 via 10\.20\.0\.9\)/)
  await ok(t, 'router unset --route destination=172.17.0.0/16,gateway=10.20.0.9 r1')
  t.same((await json(t, 'router show r1')).routes, [{ destination: '172.16.0.0/16', nexthop: '10.10.0.9' }])
  t.match((await fails(t, 'router unset --route destination=172.17.0.0/16,gateway=10.20.0.9 r1', 1)).stderr, /Router does not contain route/)
  await ok(t, 'router set --no-route r1')
  t.same((await json(t, 'router show r1')).routes, [], '--no-route clears')

  const inUse = await fails(t, 'router delete r1', 1)
  t.match(inUse.stderr, /Failed to delete router with name or ID 'r1': Router [0-9a-f-]{36} is in use: it still has ports .*10\.10\.0\.1.*10\.20\.0\.5/, 'naming the interfaces')

  // A floating IP needs the router: gateway plus the interface on the port's subnet.
  await ok(t, 'port create --network n1 vm1')
  t.match((await fails(t, 'floating ip create provider --port vm1', 1)).stderr, /External network [0-9a-f-]{36} is not reachable from subnet/)
  await ok(t, 'router set --external-gateway provider r1')
  const fip = fields(await ok(t, 'floating ip create provider --port vm1'))
  t.match(fields(await ok(t, `floating ip show ${fip.id}`)), { router_id: /^[0-9a-f-]{36}$/, status: 'ACTIVE' })
  t.match((await fails(t, 'router remove subnet r1 s1', 1)).stderr, /cannot be deleted, as it is required by one or more floating IPs/)
  t.match((await fails(t, 'router unset --external-gateway r1', 1)).stderr, /required by one or more floating IPs/)
  await ok(t, `floating ip delete ${fip.id}`)
  await ok(t, 'port delete vm1')

  await ok(t, 'router remove subnet r1 s1')
  await ok(t, 'router remove port r1 p3')
  t.match((await fails(t, 'port show p3', 1)).stderr, /No port/, 'the port goes with the interface')
  t.equal((await json(t, 'router show r1')).interfaces_info instanceof Array, true)
  await ok(t, 'router delete r1 r3')
  t.equal(await ok(t, 'router list'), '')
})

t.test('admins see which L3 agent holds a router (router show: l3_agent_host)', async (t) => {
  await ok(t, 'router create r-admin', env)
  t.notOk('l3_agent_host' in (await json(t, 'router show r-admin', env)), 'on no agent before it has a gateway or an interface')
  // An agent with the L3 role announces itself (no heartbeats follow: it stays up for the heartbeat window).
  await s.controller.hosts.announce({ host: 'net1', uuid: '1b4e28ba-2fa1-4d3b-a3f5-ef19b5a7633b', l3: true, capabilities: { cpuModel: 'x', arch: 'x86_64', vcpus: 1, memoryMb: 1024, diskGb: 1, accelerator: '', hypervisorType: 'fake', hypervisorVersion: '1', hostIp: '' } })
  await ok(t, 'router set --external-gateway provider r-admin', env)
  t.match(await json(t, 'router show r-admin', env), { l3_agent_host: 'net1' })
  await ok(t, 'router unset --external-gateway r-admin', env)
  await ok(t, 'router delete r-admin', env)
  t.match(await ok(t, 'help router'), /router add subnet/)
})

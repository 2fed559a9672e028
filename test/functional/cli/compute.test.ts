// The `strato` CLI's compute commands (servers, consoles, hosts, hypervisors,
// compute services, availability zones) in process against a small cloud: a
// real controller and nats-server, fake-driver agents node1 and node2, the
// image cirros, flavor 1 (m1.nano) and the shared provider network.
import { writeFileSync } from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { FailedPrecondition } from '../../../proto/errors.js'
import { eventually, startAgent } from '../../helpers/agents.js'
import { startCloud, type TestCloud } from '../../helpers/cloud.js'
import type { TestContext } from '../../helpers/tap.js'
import { adminAndDemo, failsWith, fields, header, freshHome, removeHomes, rows, strato, succeeds } from './cli.js'

let cloud: TestCloud
let env: Record<string, string>
let demo: Record<string, string>

t.before(async () => {
  cloud = await startCloud()
  ;({ env, demo } = await adminAndDemo(cloud.s.openrc))
})
t.teardown(async () => {
  await cloud?.close()
  removeHomes()
})

const ok = (t: TestContext, line: string | string[], e = env) => succeeds(t, line, e)
const fails = (t: TestContext, line: string | string[], code: number, e = env) => failsWith(t, line, code, e)
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/
const PROVIDER_IP = /^provider=192\.168\.201\.2(0\d|10)$/
const show = async (server: string, column: string, e = env) => (await strato(['server', 'show', server, '-f', 'value', '-c', column], e)).stdout.trim()
const until = (server: string, status: string, e = env) =>
  eventually(async () => (await show(server, 'status', e)) === status, 10_000, `server ${server} to be ${status}`)

t.test('server create --wait: an ACTIVE server on the provider network, shown as openstackclient shows it', async (t) => {
  const work = freshHome()
  const userData = path.join(work, 'user-data.sh')
  writeFileSync(userData, '#!/bin/sh\necho hello\n')
  const out = await ok(t, [
    'server', 'create', '--flavor', 'm1.nano', '--image', 'cirros', '--nic', `net-id=${cloud.network.id}`, '--security-group', 'default',
    '--property', 'role=web', '--user-data', userData, '--wait', 'vm1',
  ])
  const f = fields(out)
  t.same(Object.keys(f), [
    'OS-DCF:diskConfig', 'OS-EXT-AZ:availability_zone', 'OS-EXT-SRV-ATTR:host', 'OS-EXT-SRV-ATTR:hypervisor_hostname', 'OS-EXT-SRV-ATTR:instance_name',
    'OS-EXT-STS:power_state', 'OS-EXT-STS:task_state', 'OS-EXT-STS:vm_state', 'OS-SRV-USG:launched_at', 'OS-SRV-USG:terminated_at', 'accessIPv4', 'accessIPv6',
    'addresses', 'config_drive', 'created', 'description', 'flavor', 'hostId', 'id', 'image', 'key_name', 'name', 'progress', 'project_id', 'properties',
    'security_groups', 'status', 'updated', 'user_id', 'volumes_attached',
  ], "openstackclient's server show fields, sorted; no adminPass, no fault")
  t.match(f, {
    'OS-EXT-AZ:availability_zone': 'nova',
    'OS-EXT-SRV-ATTR:host': /^node[12]$/,
    'OS-EXT-SRV-ATTR:instance_name': `instance-${f.id}`,
    'OS-EXT-STS:power_state': 'Running',
    'OS-EXT-STS:task_state': 'None',
    'OS-EXT-STS:vm_state': 'active',
    'OS-SRV-USG:launched_at': /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}$/,
    addresses: PROVIDER_IP,
    config_drive: 'True',
    created: /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/,
    flavor: 'm1.nano (1)',
    hostId: /^[0-9a-f]{56}$/,
    id: UUID,
    image: `cirros (${cloud.image.id})`,
    key_name: 'None',
    name: 'vm1',
    properties: "role='web'",
    security_groups: "name='default'",
    status: 'ACTIVE',
  })
  t.equal(f['OS-EXT-SRV-ATTR:hypervisor_hostname'], f['OS-EXT-SRV-ATTR:host'])

  const json = JSON.parse(await ok(t, 'server show vm1 -f json -c addresses -c OS-EXT-STS:task_state'))
  t.same(json, { addresses: { provider: [f.addresses!.slice('provider='.length)] }, 'OS-EXT-STS:task_state': null }, 'addresses by network in json, as the API has them')

  const building = await ok(t, ['server', 'create', '--flavor', '1', '--image', cloud.image.id, '--network', 'provider', 'vm2', '-f', 'value', '-c', 'status', '-c', 'OS-EXT-STS:task_state'])
  t.match(building, /^BUILD\n\w+\n$/, 'without --wait, the server as created: BUILD with a task')
  await until('vm2', 'ACTIVE')
})

t.test('server list: the ID, Name, Status, Networks, Image, Flavor table, with filters', async (t) => {
  const list = await ok(t, 'server list')
  t.equal(header(list), '| ID                                   | Name | Status | Networks                 | Image  | Flavor  |')
  const byName = Object.fromEntries(rows(list).map((r) => [r[1], r]))
  t.same(Object.keys(byName).sort(), ['vm1', 'vm2'])
  t.match(byName.vm1, [UUID, 'vm1', 'ACTIVE', PROVIDER_IP, 'cirros', 'm1.nano'])
  t.equal(rows(list)[0]![1], 'vm2', 'newest first')

  t.equal(await ok(t, ['server', 'list', '--name', '^vm1$', '-f', 'value', '-c', 'Name']), 'vm1\n', '--name is a regular expression')
  t.equal(await ok(t, 'server list --status SHUTOFF'), '', 'no SHUTOFF server: nothing printed')
  t.equal(await ok(t, 'server list --status REBOOT'), '', 'REBOOT is a status filter (it was refused): none rebooting')
  t.equal(await ok(t, 'server list --status HARD_REBOOT -f value -c Name'), '', 'HARD_REBOOT too')
  t.equal(await ok(t, 'server list --status ACTIVE -f value -c Name'), 'vm2\nvm1\n')
  t.equal(await ok(t, 'server list --flavor m1.nano --image cirros --limit 1 -f value -c Name'), 'vm2\n')
  t.equal(await ok(t, 'server list --marker vm2 -f value -c Name'), 'vm1\n', '--marker: the servers after it')
  t.equal(await ok(t, 'server list -n --name vm1 -f value -c Image -c Flavor'), `${cloud.image.id} 1\n`, '--no-name-lookup shows IDs')
  const host = await show('vm1', 'OS-EXT-SRV-ATTR:host')
  t.match(await ok(t, `server list --host ${host} -f value -c Name`), /^vm1$/m)
  const long = await ok(t, 'server list --long --name vm1')
  t.equal(header(long)?.replace(/ +\|/g, ' |'), '| ID | Name | Status | Task State | Power State | Networks | Image Name | Image ID | Flavor Name | Flavor ID | Availability Zone | Host | Properties |')
  t.match(rows(long)[0], [UUID, 'vm1', 'ACTIVE', 'None', 'Running', PROVIDER_IP, 'cirros', cloud.image.id, 'm1.nano', '1', 'nova', host, "role='web'"])
  const json = JSON.parse(await ok(t, 'server list --name vm1 -f json'))
  t.match(json, [{ Name: 'vm1', Networks: { provider: [/^192\.168\.201\./] } }])
})

t.test('stop, start, reboot and delete change the status; console log show prints the guest console', async (t) => {
  t.equal(await ok(t, 'server stop vm2'), '')
  await until('vm2', 'SHUTOFF')
  t.equal(await show('vm2', 'OS-EXT-STS:power_state'), 'Shutdown')
  t.equal(await ok(t, 'server list --status SHUTOFF -f value -c Name'), 'vm2\n')
  t.match((await fails(t, 'server reboot vm2', 1)).stderr, /^cannot reboot server .* while it is SHUTOFF/, 'a soft reboot needs an ACTIVE server')
  t.equal(await ok(t, 'server start vm2'), '')
  await until('vm2', 'ACTIVE')
  t.equal(await show('vm2', 'OS-EXT-STS:power_state'), 'Running')
  t.match((await fails(t, 'server start vm2', 1)).stderr, /^cannot start server .* while it is ACTIVE/)

  const id = await show('vm1', 'id')
  const banner = `fake guest instance-${id} ${id} booted\n`
  t.equal(await ok(t, 'console log show vm1'), banner, 'the raw console text')
  t.equal(await ok(t, 'server reboot --hard --wait vm1'), '')
  t.equal(await show('vm1', 'status'), 'ACTIVE')
  t.equal(await ok(t, 'server reboot --soft --wait vm1'), '')
  t.equal(await ok(t, 'console log show vm1'), banner.repeat(3), 'booted again by each reboot')
  t.equal(await ok(t, 'console log show --lines 1 vm1'), banner)

  t.equal(await ok(t, 'server delete --wait vm1 vm2'), '')
  t.equal((await fails(t, 'server show vm1', 1)).stderr, "No server with a name or ID of 'vm1' exists.\n")
  t.equal((await fails(t, `server show ${id}`, 1)).stderr, `No server with a name or ID of '${id}' exists.\n`)
  t.equal(await ok(t, 'server list'), '')
  t.match(await ok(t, 'server list --deleted -f value -c Name -c Status'), /^vm1 DELETED$/m, 'admins see deleted servers')
})

t.test('NICs: --nic none, several servers with --min/--max, --port', async (t) => {
  t.equal(await ok(t, 'server create --flavor 1 --image cirros --nic none --wait -f value -c addresses bare'), '\n', 'no NIC, no address')
  t.equal(await ok(t, 'server show bare -f value -c config_drive'), 'True\n', 'a config drive by default')
  t.equal(await ok(t, 'server create --flavor 1 --image cirros --nic none --config-drive False --wait -f value -c config_drive no-drive'), '\n', '--config-drive False: none')
  await ok(t, 'server delete --wait no-drive')
  await ok(t, 'port create --network provider vm-port')
  const port = fields(await ok(t, 'port show vm-port'))
  const onPort = fields(await ok(t, 'server create --flavor 1 --image cirros --port vm-port --wait on-port'))
  t.equal(onPort.addresses, `provider=${/ip_address='([^']+)'/.exec(port.fixed_ips!)![1]}`, 'the server uses the port and its address')
  t.equal(await ok(t, 'server create --flavor 1 --image cirros --network provider --min 2 --max 2 --wait -f value -c name multi'), 'multi-1\n')
  t.equal(await ok(t, 'server list --name multi -f value -c Name -c Status --sort-column Name'), 'multi-1 ACTIVE\nmulti-2 ACTIVE\n')
  await ok(t, 'server delete --wait bare on-port multi-1 multi-2')
  t.equal(await ok(t, 'port show vm-port -f value -c device_id'), '\n', 'the port is free again')
  await ok(t, 'port delete vm-port')
})

t.test('server group create/list/show/delete, and server create --hint group= places by the policy', async (t) => {
  const g = fields(await ok(t, 'server group create --policy anti-affinity --rule max_server_per_host=1 spread'))
  t.same(Object.keys(g), ['id', 'members', 'name', 'policy', 'project_id', 'rules', 'user_id'], "openstackclient's fields (compute 2.64)")
  t.match(g, { id: UUID, name: 'spread', policy: 'anti-affinity', members: '' })
  t.match((await fails(t, 'server group create --policy sticky x', 2)).stderr, /--policy 'sticky' is not one of affinity, anti-affinity, soft-affinity, soft-anti-affinity/)
  t.match((await fails(t, 'server create --flavor 1 --image cirros --nic none --hint color=red x', 2)).stderr, /--hint 'color' is not a hint Strato knows; use --hint group=<server group>/)

  await ok(t, 'server create --flavor 1 --image cirros --nic none --hint group=spread --min 2 --max 2 --wait apart')
  const hosts = [await show('apart-1', 'OS-EXT-SRV-ATTR:host'), await show('apart-2', 'OS-EXT-SRV-ATTR:host')]
  t.not(hosts[0], hosts[1], `anti-affinity: one member per host (${hosts.join(', ')})`)
  const members = (await ok(t, 'server group show spread -f value -c members')).trim().split(', ').sort()
  t.same(members, [await show('apart-1', 'id'), await show('apart-2', 'id')].sort(), 'the group lists its members')
  t.same(rows(await ok(t, 'server group list')), [[g.id!, 'spread', 'anti-affinity']])

  await ok(t, 'server delete --wait apart-1 apart-2')
  await ok(t, 'server group delete spread')
  t.equal(await ok(t, 'server group list -f value'), '', 'no group left')
  t.match((await fails(t, 'server group show spread', 1)).stderr, /server group 'spread' not found/)
})

t.test('a project member sees its own servers, without host details', async (t) => {
  const f = fields(await ok(t, 'server create --flavor m1.nano --image cirros --wait mine', demo))
  t.match(f, { status: 'ACTIVE', addresses: PROVIDER_IP, 'OS-EXT-SRV-ATTR:host': 'None', 'OS-EXT-SRV-ATTR:instance_name': '', hostId: '' })
  t.equal(await ok(t, 'server list -f value -c Name', demo), 'mine\n')
  t.equal(await ok(t, 'server list -f value -c Name'), '', "the admin's own project has none")
  t.equal(await ok(t, 'server list --all-projects -f value -c Name'), 'mine\n')
  t.equal(await ok(t, 'server list --project demo -f value -c Name'), 'mine\n')
  t.match((await fails(t, 'server list --all-projects', 1, demo)).stderr, /all_projects is for cloud admins/)
  t.match((await fails(t, 'host list', 1, demo)).stderr, /^\S/)
  await ok(t, 'server delete --wait mine', demo)
})

t.test('a build that fails: --wait exits 1 with the fault, and show has it', async (t) => {
  for (const a of cloud.agents) a.driver.injectFailure({ operation: 'spawn', step: 'start', error: new FailedPrecondition('QEMU refused to start: injected') })
  t.teardown(() => {
    for (const a of cloud.agents) a.driver.clearFailures()
  })
  const r = await fails(t, 'server create --flavor m1.nano --image cirros --wait broken', 1)
  t.match(r.stderr, /^Error creating server broken \([0-9a-f-]{36}\): QEMU refused to start: injected\n$/)
  const f = fields(await ok(t, 'server show broken'))
  t.match(f, { status: 'ERROR', 'OS-EXT-STS:vm_state': 'error', fault: /^code='FAILED_PRECONDITION', created='[^']+', message='QEMU refused to start: injected'$/ })
  await ok(t, 'server delete --wait broken')
})

t.test('hosts, hypervisors, compute services and availability zones', async (t) => {
  const hosts = await ok(t, 'host list')
  t.equal(header(hosts), '| Host Name | Service | Zone |')
  t.same(rows(hosts), [['node1', 'compute', 'nova'], ['node2', 'compute', 'nova']])
  t.equal(await ok(t, 'host list --zone elsewhere'), '')

  const hvs = await ok(t, 'hypervisor list')
  t.equal(header(hvs), '| ID                                   | Hypervisor Hostname | Hypervisor Type | Host IP   | State |')
  t.match(rows(hvs), [[UUID, 'node1', 'fake', '127.0.0.1', 'up'], [UUID, 'node2', 'fake', '127.0.0.1', 'up']])
  await ok(t, 'server create --flavor m1.nano --image cirros --host node1 --wait pinned')
  const hv = fields(await ok(t, 'hypervisor show node1'))
  t.match(hv, { hypervisor_hostname: 'node1', hypervisor_type: 'fake', host_ip: '127.0.0.1', state: 'up', status: 'enabled', vcpus: '8', memory_mb: '16384', local_gb: '100', id: UUID })
  t.equal(hv.running_vms, '1', 'the pinned server')
  t.equal(hv.vcpus_used, '1')
  t.equal(Number(hv.memory_mb_used), 512 + 64, "the host's reserved memory and the server's")
  t.equal(hv.free_ram_mb, String(16384 - 512 - 64))
  t.equal(hv.local_gb_used, '1')
  t.equal(fields(await ok(t, `hypervisor show ${hv.id}`)).hypervisor_hostname, 'node1', 'by ID too')
  t.match(rows(await ok(t, 'hypervisor list --long --matching node1')), [[hv.id, 'node1', 'fake', '127.0.0.1', 'up', '1', '8', '576', '16384']])
  await ok(t, 'server delete --wait pinned')
  t.equal((await fails(t, 'hypervisor show node9', 1)).stderr, "No hypervisor with a name or ID of 'node9' exists.\n")

  const services = await ok(t, 'compute service list')
  t.equal(header(services)?.replace(/ +\|/g, ' |'), '| ID | Binary | Host | Zone | Status | State | Updated At |')
  t.match(rows(services), [
    [UUID, 'nova-compute', 'node1', 'nova', 'enabled', 'up', /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}$/],
    [UUID, 'nova-compute', 'node2', 'nova', 'enabled', 'up', /\.\d{6}$/],
  ])
  t.equal(await ok(t, 'compute service list --service nova-conductor'), '')

  const zones = await ok(t, 'availability zone list')
  t.equal(zones, '+-----------+-------------+\n| Zone Name | Zone Status |\n+-----------+-------------+\n| nova      | available   |\n+-----------+-------------+\n')
  t.match(rows(await ok(t, 'availability zone list --long')), [
    ['nova', 'available', '', 'node1', 'nova-compute', /^enabled :-\) \d{4}-/],
    ['nova', 'available', '', 'node2', 'nova-compute', /^enabled :-\) \d{4}-/],
  ])
})

t.test('compute service set --disable: no host is left to schedule to, until --enable', async (t) => {
  for (const h of ['node1', 'node2']) t.equal(await ok(t, ['compute', 'service', 'set', '--disable', '--disable-reason', 'maintenance window', h, 'nova-compute']), '')
  t.match(rows(await ok(t, 'compute service list --long')), [
    [UUID, 'nova-compute', 'node1', 'nova', 'disabled', 'up', /./, 'maintenance window'],
    [UUID, 'nova-compute', 'node2', 'nova', 'disabled', 'up', /./, 'maintenance window'],
  ])
  t.match(await ok(t, 'hypervisor show node1 -f value -c status'), /^disabled$/m)
  t.match(await ok(t, 'availability zone list -f value'), /^nova not available$/m)
  const none = await fails(t, 'server create --flavor m1.nano --image cirros nowhere', 1)
  t.match(none.stderr, /no valid host/i)
  t.equal(await ok(t, 'server list --name nowhere'), '', 'nothing was created')

  for (const h of ['node1', 'node2']) t.equal(await ok(t, `compute service set --enable ${h} nova-compute`), '')
  t.match(rows(await ok(t, 'compute service list --long')), [
    [UUID, 'nova-compute', 'node1', 'nova', 'enabled', 'up', /./, 'None'],
    [UUID, 'nova-compute', 'node2', 'nova', 'enabled', 'up', /./, 'None'],
  ])
  t.match(fields(await ok(t, 'server create --flavor m1.nano --image cirros --wait somewhere')), { status: 'ACTIVE' })
  await ok(t, 'server delete --wait somewhere')

  t.match((await fails(t, 'compute service set --disable-reason why node1 nova-compute', 2)).stderr, /--disable-reason without --disable/)
  t.match((await fails(t, 'compute service set --disable node1 nova-scheduler', 2)).stderr, /nova-compute/)
  t.equal((await fails(t, 'compute service set --disable node9 nova-compute', 1)).stderr, "No compute host with a name or ID of 'node9' exists.\n")
})

t.test('host discover --verbose maps a new host as nova-manage cell_v2 discover_hosts does', async (t) => {
  const node3 = await startAgent(cloud.nats.url, 'node3', { powerSyncIntervalMs: 200, shutdownTimeoutMs: 2_000 })
  t.teardown(() => node3.stop())
  const id = fields(await ok(t, 'hypervisor show node3')).id
  t.match((await fails(t, 'server create --flavor m1.nano --image cirros --availability-zone nova:node3 early', 1)).stderr, /node3/, 'an unmapped host is not scheduled to')
  t.equal(await ok(t, 'host discover --verbose'), [
    "Getting computes from cell 'cell1'",
    `Checking host mapping for compute host 'node3': ${id}`,
    `Creating host mapping for compute host 'node3': ${id}`,
    'Found 1 unmapped computes in cell: cell1',
    '',
  ].join('\n'))
  t.equal(await ok(t, 'host discover --verbose'), "Getting computes from cell 'cell1'\nFound 0 unmapped computes in cell: cell1\n", 'nothing left to map')
  t.equal(await ok(t, 'host discover'), '', 'quiet without --verbose, as nova-manage')
  t.match(fields(await ok(t, 'server create --flavor m1.nano --image cirros --availability-zone nova:node3 --wait late')), { status: 'ACTIVE', 'OS-EXT-SRV-ATTR:host': 'node3' })
  await ok(t, 'server delete --wait late')
})

t.test('errors: one line on stderr, non-zero exit', async (t) => {
  t.equal((await fails(t, 'server create --flavor m1.huge --image cirros x', 1)).stderr, "No flavor with a name or ID of 'm1.huge' exists.\n")
  t.equal((await fails(t, 'server create --flavor m1.nano --image fedora x', 1)).stderr, "No image with a name or ID of 'fedora' exists.\n")
  t.equal((await fails(t, 'server create --flavor m1.nano --image cirros --network nowhere x', 1)).stderr, "No network with a name or ID of 'nowhere' exists.\n")
  t.match((await fails(t, 'server create --flavor m1.nano --image cirros --key-name nokey x', 1)).stderr, /keypair 'nokey' not found/)
  t.match((await fails(t, 'server create --image cirros x', 2)).stderr, /--flavor <flavor>/)
  t.match((await fails(t, 'server create --flavor m1.nano x', 2)).stderr, /an image \(--image\) or bootable volume \(--volume, --snapshot, --block-device with boot_index=0\) is required/)
  t.match((await fails(t, 'server create --flavor m1.nano --image cirros --nic net-id=a,port-id=b x', 2)).stderr, /net-id=<network> or port-id=<port>/)
  t.match((await fails(t, 'server create --flavor m1.nano --image cirros --nic none --network provider x', 2)).stderr, /--nic none cannot be used with/)
  t.match((await fails(t, 'server create --flavor m1.nano --image cirros --nic net-id=provider,bogus=1 x', 2)).stderr, /--nic 'net-id=provider,bogus=1': expected/)
  t.match((await fails(t, 'server create --flavor m1.nano --image cirros --min 3 --max 2 x', 2)).stderr, /min instances should be <= max instances/)
  t.match((await fails(t, 'server create --flavor m1.nano --image cirros --config-drive vol-1 x', 2)).stderr, /--config-drive 'vol-1': use True or False/)
  t.match((await fails(t, 'server create --flavor m1.nano --image cirros --user-data /nonexistent/ud x', 1)).stderr, /^Can't open '\/nonexistent\/ud': ENOENT\n$/)
  t.equal(await ok(t, 'server list --name ^x$'), '', 'no server was made by any of these')
  t.equal((await fails(t, 'server show nosuch', 1)).stderr, "No server with a name or ID of 'nosuch' exists.\n")
  t.equal((await fails(t, 'server delete nosuch', 1)).stderr, "Failed to delete server with name or ID 'nosuch': No server with a name or ID of 'nosuch' exists.\n")
  t.equal((await fails(t, 'server start nosuch', 1)).stderr, "No server with a name or ID of 'nosuch' exists.\n")
  t.equal((await fails(t, 'console log show nosuch', 1)).stderr, "No server with a name or ID of 'nosuch' exists.\n")
  t.match((await fails(t, 'console log show --lines many nosuch', 2)).stderr, /--lines must be an integer/)
  t.match((await fails(t, 'server list --status SLEEPING', 1)).stderr, /status must be one of/)
})

t.test('help and completion know the compute commands', async (t) => {
  const global = await ok(t, '--help')
  for (const c of ['server create', 'server list', 'server reboot', 'console log show', 'host discover', 'hypervisor show', 'compute service set', 'availability zone list']) t.match(global, `  ${c} `)
  const create = await ok(t, 'server create --help')
  t.match(create, /^usage: strato server create .*\[--flavor <flavor>\] \[--image <image>\] \[--volume <volume>\] .*\[--boot-from-volume <volume-size>\] .*\[--block-device <key=value,…>\|<file.json>\] \[--nic <net-id=.*\].*\[--wait\].*<server-name>/)
  t.equal(await ok(t, 'help server create'), create)
  t.match(await ok(t, 'server reboot --help'), /--hard .*\n.*--soft/s)
  t.match(await ok(t, 'help compute service'), /compute service list .*\n.*compute service set /)
  const script = await ok(t, 'complete')
  t.match(script, /\['server'\]='add create delete group image list reboot remove show start stop volume'/)
  t.match(script, /\['server add'\]='floating volume'/)
  t.match(script, /\['server remove'\]='floating volume'/)
  t.match(script, /\['server group'\]='create delete list show'/)
  t.match(script, /\['console log'\]='show'/)
  t.match(script, /\['compute service'\]='list set'/)
  t.match(script, /\['host'\]='discover join-token list'/)
  t.match(script, /\['host join-token'\]='create delete list'/)
  t.match(script, /\['server create'\]='[^']*--nic [^']*--wait/)
})

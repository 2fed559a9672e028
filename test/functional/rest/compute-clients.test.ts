// The real OpenStack clients against Strato's compute REST API (Debian's python3-openstackclient 6.0.0,
// python3-novaclient 18.1.0 and python3-openstacksdk 0.101.0), on a controller with agents on the fake
// driver. Until Keystone's REST serves a catalog, the clients use keystoneauth's `admin_token` plugin: a
// fixed endpoint (<origin>/compute/v2.1) and the same token gRPC takes (`token_endpoint` of older
// clients). The seed's walkthrough, as far as it is compute's: flavor create --id 0, keypair create from
// ssh-keygen's key, server create (novaclient's call, as openstack server create makes it: the CLI itself
// first resolves --image and --network through Glance and Neutron, which this test does not have), server
// list/show, console log show, server stop/start/delete; and openstacksdk creating and deleting a server.
import { execFile, execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'
import { startCloud, type TestCloud } from '../../helpers/cloud.js'
import { eventually } from '../../helpers/agents.js'
import { tenant, type Tenant } from '../network/fixtures.js'
import { novaClient, PYTHON } from './compute-helpers.js'
import { openstackClient } from '../../helpers/osc.js'

const run = promisify(execFile)
let cloud: TestCloud
let demo: Tenant
let endpoint: string
let nova: ReturnType<typeof novaClient>
const scratch = mkdtempSync(path.join(tmpdir(), 'strato-osc-'))
const osc = openstackClient()

t.before(async () => {
  cloud = await startCloud({ hosts: ['node1', 'node2'] })
  demo = await tenant(cloud.s, 'demo')
  endpoint = `${cloud.s.controller.rest!.origin}/compute/v2.1`
  nova = novaClient(cloud.s.controller.rest!.origin, cloud.s.adminToken)
})
t.teardown(async () => {
  await osc.close()
  await cloud.close()
  rmSync(scratch, { recursive: true, force: true })
})

/** A clean environment: nothing from the caller's OS_* variables. */
const env = () => ({ PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: scratch, LANG: 'C.UTF-8' })

/**
 * `openstack …` with a fixed endpoint and a token, in the file's shared client (test/helpers/osc.ts) or as
 * its own /usr/bin/openstack process; rejects with the client's stderr when it exits non-zero; JSON output
 * parsed when asked with -f json.
 */
async function openstackIn(process_: boolean, token: string, args: string[]): Promise<any> { // eslint-disable-line @typescript-eslint/no-explicit-any -- the CLI's JSON
  const r = await osc.run(['--os-auth-type', 'admin_token', '--os-endpoint', endpoint, '--os-token', token, ...args], { env: env(), timeoutMs: 60_000, process: process_ })
  if (r.code !== 0) throw new Error(`openstack ${args.join(' ')} exited with ${r.code}: ${r.stderr}`)
  return args.includes('json') ? JSON.parse(r.stdout) : r.stdout
}
const openstack = (token: string, ...args: string[]) => openstackIn(false, token, args)
const openstackProcess = (token: string, ...args: string[]) => openstackIn(true, token, args)

/** A Python snippet run with Debian's interpreter (novaclient, openstacksdk), given ENDPOINT and TOKEN. */
async function python(code: string, token: string, extra: Record<string, string> = {}): Promise<string> {
  const { stdout } = await run(PYTHON, ['-c', code], { env: { ...env(), ENDPOINT: endpoint, TOKEN: token, ...extra }, timeout: 120_000 })
  return stdout
}

t.test('openstack flavor create --id 0, list, show, delete (admin)', async (t) => {
  // The cloud came with m1.nano as flavor 1: make room for the seed's own.
  t.equal((await nova('DELETE', '/v2.1/flavors/1')).status, 202)
  const admin = cloud.s.adminToken
  const created = await openstack(admin, '--os-compute-api-version', '2.1', 'flavor', 'create', '--id', '0', '--vcpus', '1', '--ram', '64', '--disk', '1', 'm1.nano', '-f', 'json')
  t.match(created, { id: '0', name: 'm1.nano', vcpus: 1, ram: 64, disk: 1, 'os-flavor-access:is_public': true, 'OS-FLV-EXT-DATA:ephemeral': 0 })
  const list = await openstack(admin, 'flavor', 'list', '-f', 'json')
  t.same(list, [{ ID: '0', Name: 'm1.nano', RAM: 64, Disk: 1, Ephemeral: 0, VCPUs: 1, 'Is Public': true }])
  const shown = await openstack(admin, 'flavor', 'show', 'm1.nano', '-f', 'json')
  t.match(shown, { id: '0', name: 'm1.nano', properties: {} })
  await openstack(admin, 'flavor', 'set', '--property', 'hw:cpu_policy=shared', 'm1.nano')
  t.same((await nova('GET', '/v2.1/flavors/0/os-extra_specs')).body, { extra_specs: { 'hw:cpu_policy': 'shared' } })
  t.equal((await nova('POST', '/v2.1/flavors', { body: { flavor: { name: 'scratch', vcpus: 1, ram: 128, disk: 1 } } })).status, 200)
  await openstack(admin, 'flavor', 'delete', 'scratch')
  t.same((await nova('GET', '/v2.1/flavors')).body.flavors.map((f: { name: string }) => f.name), ['m1.nano'])
  await t.rejects(openstackProcess(demo.token, 'flavor', 'create', '--vcpus', '1', '--ram', '64', '--disk', '1', 'mine'), /403|not allowed|Forbidden/i, 'members do not create flavors')
})

t.test('openstack keypair create --public-key (ssh-keygen), list, show, delete (member)', async (t) => {
  const key = path.join(scratch, 'id_rsa')
  execFileSync('ssh-keygen', ['-q', '-N', '', '-t', 'rsa', '-b', '2048', '-f', key])
  const fp = execFileSync('ssh-keygen', ['-l', '-E', 'md5', '-f', `${key}.pub`], { encoding: 'utf8' }).split(' ')[1]!.replace(/^MD5:/, '')
  const created = await openstackProcess(demo.token, 'keypair', 'create', '--public-key', `${key}.pub`, 'mykey', '-f', 'json')
  t.match(created, { name: 'mykey', fingerprint: fp, type: 'ssh', user_id: demo.userId })
  t.same(await openstack(demo.token, 'keypair', 'list', '-f', 'json'), [{ Name: 'mykey', Fingerprint: fp, Type: 'ssh' }])
  t.match(await openstack(demo.token, 'keypair', 'show', 'mykey', '-f', 'json'), { name: 'mykey', fingerprint: fp, user_id: demo.userId })
  t.equal((await nova('POST', '/v2.1/os-keypairs', { token: demo.token, body: { keypair: { name: 'made' } } })).status, 200)
  await openstack(demo.token, 'keypair', 'delete', 'made')
  t.same((await nova('GET', '/v2.1/os-keypairs', { token: demo.token })).body.keypairs.map((k: { keypair: { name: string } }) => k.keypair.name), ['mykey'])
})

t.test("server create (novaclient, as openstack server create calls it), then the seed's server commands with openstack", async (t) => {
  const created = JSON.parse(await python(`
import json, os
from keystoneauth1 import session, token_endpoint
from novaclient import client
nova = client.Client('2.1', session=session.Session(auth=token_endpoint.Token(os.environ['ENDPOINT'], os.environ['TOKEN'])))
# openstack server create --flavor m1.nano --image cirros --nic net-id=… --security-group default --key-name mykey provider-instance
s = nova.servers.create('provider-instance', os.environ['IMAGE'], '0', nics=[{'net-id': os.environ['NET']}], security_groups=['default'], key_name='mykey', min_count=1, max_count=1)
print(json.dumps(s.to_dict()))
`, demo.token, { IMAGE: cloud.image.id, NET: cloud.network.id }))
  t.match(created, { id: /^[0-9a-f-]{36}$/, security_groups: [{ name: 'default' }] })
  const id = created.id as string

  // What --wait does (GET the server until ACTIVE), then the CLI's show by name.
  const status = async () => (await nova('GET', `/v2.1/servers/${id}`, { token: demo.token })).body?.server?.status as string | undefined
  await eventually(async () => (await status()) === 'ACTIVE', 30_000, 'ACTIVE')
  const shown = await openstack(demo.token, 'server', 'show', 'provider-instance', '-f', 'json')
  t.match(shown, {
    id, name: 'provider-instance', status: 'ACTIVE', key_name: 'mykey', flavor: 'm1.nano (0)', image: new RegExp(cloud.image.id),
    addresses: { provider: [/^192\.168\.201\.2\d\d$/] }, security_groups: [{ name: 'default' }], 'OS-EXT-STS:vm_state': 'active', 'OS-EXT-STS:power_state': 1,
    project_id: demo.projectId, user_id: demo.userId,
  })
  const list = await openstack(demo.token, 'server', 'list', '-f', 'json')
  t.match(list, [{ ID: id, Name: 'provider-instance', Status: 'ACTIVE', Networks: { provider: [/^192\.168\.201\./] }, Flavor: 'm1.nano' }])
  const log = await openstack(demo.token, 'console', 'log', 'show', 'provider-instance')
  t.match(log, /booted/)

  await openstack(demo.token, 'server', 'stop', 'provider-instance')
  await eventually(async () => (await status()) === 'SHUTOFF', 30_000, 'SHUTOFF')
  await openstack(demo.token, 'server', 'start', 'provider-instance')
  await eventually(async () => (await status()) === 'ACTIVE', 30_000, 'ACTIVE again')

  await openstackProcess(demo.token, 'server', 'delete', '--wait', 'provider-instance')
  t.equal((await nova('GET', `/v2.1/servers/${id}`, { token: demo.token })).status, 404)
  t.same((await nova('GET', '/v2.1/servers', { token: demo.token })).body.servers, [])
})

t.test('openstack compute service list/set, hypervisor list, availability zone list, limits show, server group create/delete', async (t) => {
  const admin = cloud.s.adminToken
  const services = await openstack(admin, 'compute', 'service', 'list', '-f', 'json')
  t.match(services, [{ Binary: 'nova-compute', Host: 'node1', Zone: 'nova', Status: 'enabled', State: 'up' }, { Binary: 'nova-compute', Host: 'node2', Status: 'enabled', State: 'up' }])
  await openstack(admin, 'compute', 'service', 'set', '--disable', '--disable-reason', 'maintenance', 'node2', 'nova-compute')
  t.match((await nova('GET', '/v2.1/os-services?host=node2')).body.services, [{ host: 'node2', status: 'disabled', disabled_reason: 'maintenance' }])
  await openstack(admin, 'compute', 'service', 'set', '--enable', 'node2', 'nova-compute')
  t.match(await openstack(admin, 'hypervisor', 'list', '-f', 'json'), [{ 'Hypervisor Hostname': 'node1', State: 'up' }, { 'Hypervisor Hostname': 'node2', State: 'up' }])
  t.same(await openstack(demo.token, 'availability', 'zone', 'list', '--compute', '-f', 'json'), [{ 'Zone Name': 'nova', 'Zone Status': 'available' }])
  const limits = await openstack(demo.token, 'limits', 'show', '--absolute', '-f', 'json')
  t.match(limits, [{ Name: 'maxTotalInstances', Value: 10 }])
  t.ok(limits.some((l: { Name: string; Value: number }) => l.Name === 'maxTotalCores' && l.Value === 20))
  const group = await openstack(demo.token, 'server', 'group', 'create', '--policy', 'anti-affinity', 'spread', '-f', 'json')
  t.match(group, { name: 'spread', policy: 'anti-affinity', members: [] })
  await openstack(demo.token, 'server', 'group', 'delete', 'spread')
  t.same((await nova('GET', '/v2.1/os-server-groups', { token: demo.token })).body.server_groups, [])
})

t.test('openstacksdk (microversion 2.73 negotiated) creates, reads and deletes a server', async (t) => {
  const out = await python(`
import json, os, openstack
conn = openstack.connection.Connection(auth_type='admin_token', auth={'endpoint': os.environ['ENDPOINT'], 'token': os.environ['TOKEN']})
c = conn.compute
s = c.create_server(name='sdk-server', image_id=os.environ['IMAGE'], flavor_id='0', networks=[{'uuid': os.environ['NET']}], key_name='mykey')
s = c.wait_for_server(s, status='ACTIVE', interval=0.2, wait=60)
console = c.get_server_console_output(s)['output']
flavor = s.flavor.to_dict() if hasattr(s.flavor, 'to_dict') else dict(s.flavor)
limits = c.get_limits().absolute
c.delete_server(s)
c.wait_for_delete(s, interval=0.2, wait=60)
print(json.dumps({'status': s.status, 'name': s.name, 'flavor': flavor, 'console': console, 'locked': s.is_locked,
                  'maxInstances': limits.instances, 'left': [x.name for x in c.servers()]}))
`, demo.token, { IMAGE: cloud.image.id, NET: cloud.network.id })
  const r = JSON.parse(out)
  t.match(r, { status: 'ACTIVE', name: 'sdk-server', flavor: { original_name: 'm1.nano', vcpus: 1, ram: 64 }, console: /booted/, locked: false, maxInstances: 10, left: [] })
})

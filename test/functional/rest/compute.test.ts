// Compute v2.1 (Nova) over REST against a real controller, nats-server and agents on the fake driver:
// version discovery and microversion negotiation, flavors, keypairs, servers and their actions, limits,
// zones and server groups — each answer checked against Tempest's own schema for its microversion
// (additionalProperties false), and bad input answered with Nova's fault body, changing nothing.
import { execFileSync } from 'node:child_process'
import path from 'node:path'
import t from 'tap'
import { startCloud, type TestCloud } from '../../helpers/cloud.js'
import { eventually } from '../../helpers/agents.js'
import { tenant, type Tenant } from '../network/fixtures.js'
import { novaClient, TempestSchemas, type NovaAnswer, type NovaCall } from './compute-helpers.js'

let cloud: TestCloud
let demo: Tenant
let nova: ReturnType<typeof novaClient>
const schemas = new TempestSchemas()
const SSH = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl demo@host'

t.before(async () => {
  cloud = await startCloud({ hosts: ['node1', 'node2'] })
  demo = await tenant(cloud.s, 'demo')
  nova = novaClient(cloud.s.controller.rest!.origin, cloud.s.adminToken)
})
t.teardown(() => cloud.close())

/** A call whose answer must match Tempest's schema `module.schema` at `version`. */
const checked = async (module: string, schema: string, method: string, p: string, o: NovaCall & { version: string }): Promise<NovaAnswer> =>
  schemas.add(module, schema, o.version, await nova(method, p, o), `${method} ${p} @${o.version}`)

t.test('version discovery and microversion negotiation', async (t) => {
  const origin = cloud.s.controller.rest!.origin
  let r = await fetch(`${origin}/compute/v2.1`)
  t.equal(r.status, 200)
  const doc = await r.json() as { version: Record<string, unknown> }
  t.match(doc.version, { id: 'v2.1', status: 'CURRENT', version: '2.96', min_version: '2.1', links: [{ rel: 'self', href: `${origin}/compute/v2.1/` }] })
  r = await fetch(`${origin}/compute/`)
  const list = await r.json() as { versions: Array<{ id: string; links: Array<{ rel: string; href: string }> }> }
  t.match(list, { versions: [{ id: 'v2.0', status: 'SUPPORTED', version: '', min_version: '' }, { id: 'v2.1', version: '2.96' }] }, 'legacy v2.0 first, as Nova lists it')
  for (const v of list.versions) {
    const self = v.links.filter((l) => l.rel === 'self')
    const one = await (await fetch(self[0]!.href)).json() as { version: { id: string; links: Array<{ rel: string }> } }
    t.same(one.version.links.filter((l) => l.rel === 'self'), self, `${v.id}'s self link leads to its own document`)
  }

  // No header: 2.1. Legacy header, modern header, latest.
  let a = await nova('GET', '/v2.1/flavors')
  t.equal(a.headers['openstack-api-version'], 'compute 2.1')
  t.equal(a.headers['x-openstack-nova-api-version'], '2.1')
  t.match(a.headers.vary, /OpenStack-API-Version/)
  t.match(a.headers['x-compute-request-id'], /^req-/)
  a = await nova('GET', '/v2.1/flavors', { headers: { 'x-openstack-nova-api-version': '2.10' } })
  t.equal(a.headers['openstack-api-version'], 'compute 2.10')
  a = await nova('GET', '/v2.1/flavors', { headers: { 'openstack-api-version': 'image 2.5, compute 2.47' } })
  t.equal(a.headers['x-openstack-nova-api-version'], '2.47')
  a = await nova('GET', '/v2.1/flavors', { headers: { 'openstack-api-version': 'compute latest' } })
  t.equal(a.headers['openstack-api-version'], 'compute 2.96')
  a = await nova('GET', '/v2.1/flavors', { version: '2.97' })
  t.equal(a.status, 406)
  t.same(a.body, { computeFault: { code: 406, message: 'Version 2.97 is not supported by the API. Minimum is 2.1 and maximum is 2.96.' } })
  a = await nova('DELETE', '/v2.1/flavors/1', { version: '3.0' })
  t.equal(a.status, 406)
  t.equal((await nova('GET', '/v2.1/flavors/1')).status, 200, 'a refused version changes nothing')
  a = await nova('GET', '/v2.1/flavors', { version: '2.x' })
  t.equal(a.status, 400)
  t.match(a.body, { badRequest: { message: /invalid format/ } })
  a = await nova('GET', '/v2.1/flavors', { token: 'nonsense' })
  t.equal(a.status, 401)
  t.match(a.body, { unauthorized: { code: 401 } })
})

t.test('flavors: create --id 0, show and list per microversion, extra specs, access, delete', async (t) => {
  let a = await checked('flavors', 'create_update_get_flavor_details', 'POST', '/v2.1/flavors', { version: '2.1', body: { flavor: { name: 'm1.zero', id: 0, vcpus: 1, ram: 64, disk: 1 } } })
  t.equal(a.status, 200)
  t.match(a.body.flavor, { id: '0', name: 'm1.zero', vcpus: 1, ram: 64, disk: 1, swap: '', 'OS-FLV-EXT-DATA:ephemeral': 0, 'os-flavor-access:is_public': true })
  t.notOk('description' in a.body.flavor, 'no description at 2.1')

  a = await checked('flavors', 'create_update_get_flavor_details', 'GET', '/v2.1/flavors/0', { version: '2.55' })
  t.equal(a.body.flavor.description, null)
  t.notOk('extra_specs' in a.body.flavor, 'no extra_specs before 2.61')
  a = await checked('flavors_extra_specs', 'set_get_flavor_extra_specs', 'POST', '/v2.1/flavors/0/os-extra_specs', { version: '2.1', body: { extra_specs: { 'hw:cpu_policy': 'shared', 'quota:disk_read_iops_sec': 100 } } })
  t.same(a.body, { extra_specs: { 'hw:cpu_policy': 'shared', 'quota:disk_read_iops_sec': '100' } })
  a = await checked('flavors', 'create_update_get_flavor_details', 'GET', '/v2.1/flavors/0', { version: '2.61' })
  t.same(a.body.flavor.extra_specs, { 'hw:cpu_policy': 'shared', 'quota:disk_read_iops_sec': '100' })
  a = await checked('flavors_extra_specs', 'set_get_flavor_extra_specs_key', 'PUT', '/v2.1/flavors/0/os-extra_specs/hw:cpu_policy', { version: '2.1', body: { 'hw:cpu_policy': 'dedicated' } })
  t.same(a.body, { 'hw:cpu_policy': 'dedicated' })
  a = await checked('flavors_extra_specs', 'set_get_flavor_extra_specs_key', 'GET', '/v2.1/flavors/0/os-extra_specs/hw:cpu_policy', { version: '2.1' })
  t.same(a.body, { 'hw:cpu_policy': 'dedicated' })
  a = await nova('PUT', '/v2.1/flavors/0/os-extra_specs/hw:cpu_policy', { body: { other: 'x' } })
  t.equal(a.status, 400, 'body and URI must name the same key')
  a = await checked('flavors_extra_specs', 'unset_flavor_extra_specs', 'DELETE', '/v2.1/flavors/0/os-extra_specs/hw:cpu_policy', { version: '2.1' })
  a = await nova('GET', '/v2.1/flavors/0/os-extra_specs/hw:cpu_policy')
  t.equal(a.status, 404)
  a = await checked('flavors_extra_specs', 'set_get_flavor_extra_specs', 'GET', '/v2.1/flavors/0/os-extra_specs', { version: '2.1' })
  t.same(a.body, { extra_specs: { 'quota:disk_read_iops_sec': '100' } })

  // 2.75: no swap is 0, not ""; unknown query parameters are a 400 (ignored before).
  t.equal((await nova('GET', '/v2.1/flavors/0', { version: '2.74' })).body.flavor.swap, '')
  t.equal((await nova('GET', '/v2.1/flavors/0', { version: '2.75' })).body.flavor.swap, 0)
  t.equal((await nova('GET', '/v2.1/flavors/detail?bogus=1', { version: '2.74' })).status, 200)
  a = await nova('GET', '/v2.1/flavors/detail?bogus=1', { version: '2.75' })
  t.equal(a.status, 400)
  t.match(a.body, { badRequest: { message: /'bogus' was unexpected/ } })
  // 2.86: extra specs of the namespaces Nova knows are validated; before it, anything goes.
  a = await nova('POST', '/v2.1/flavors/0/os-extra_specs', { version: '2.85', body: { extra_specs: { 'hw:cpu_policy': 'sometimes' } } })
  t.equal(a.status, 200, 'not validated before 2.86')
  const bad: Array<[Record<string, string>, RegExp]> = [
    [{ 'hw:cpu_policy': 'always' }, /'always' is not one of: dedicated, shared, mixed/], [{ 'hw:numa_nodes': '0' }, /less than the min value of '1'/],
    [{ 'hw:no_such_spec': '1' }, /'hw:no_such_spec' does not appear to be a valid extra spec/], [{ 'trait:HW_CPU_X86_AVX2': 'maybe' }, /not one of: required, forbidden/],
    [{ 'resources1:VCPU': 'two' }, /'two' is not a valid integer value/], [{ 'hw:boot_menu': 'perhaps' }, /boolean-like/], [{ 'hw:mem_page_size': 'huge' }, /is not of the format/],
  ]
  for (const [specs, why] of bad) {
    a = await nova('POST', '/v2.1/flavors/0/os-extra_specs', { version: '2.86', body: { extra_specs: { 'quota:cpu_shares': '5', ...specs } } })
    t.equal(a.status, 400, JSON.stringify(specs))
    t.match(a.body, { badRequest: { message: why } })
  }
  a = await nova('PUT', '/v2.1/flavors/0/os-extra_specs/hw:cpu_policy', { version: '2.86', body: { 'hw:cpu_policy': 'always' } })
  t.equal(a.status, 400, 'PUT of one key is validated too')
  const good = { 'hw:cpu_policy': 'dedicated', 'hw:numa_cpus.0': '0-1', 'trait:CUSTOM_FAST': 'required', 'resources:CUSTOM_GPU': '1', 'acme:anything': 'x', plain: 'y' }
  a = await nova('POST', '/v2.1/flavors/0/os-extra_specs', { version: '2.86', body: { extra_specs: good } })
  t.equal(a.status, 200, JSON.stringify(a.body))
  a = await nova('GET', '/v2.1/flavors/0/os-extra_specs', { version: '2.86' })
  t.same(a.body.extra_specs, { 'quota:disk_read_iops_sec': '100', ...good }, 'the refused specs changed nothing')
  for (const k of Object.keys(good)) t.equal((await nova('DELETE', `/v2.1/flavors/0/os-extra_specs/${k}`)).status, 200)

  // Lists: brief and detailed, with pagination links.
  a = await checked('flavors', 'list_flavors', 'GET', '/v2.1/flavors', { version: '2.1' })
  t.same(a.body.flavors.map((f: { id: string }) => f.id), ['0', '1'], 'sorted by flavor id, as Nova')
  a = await checked('flavors', 'list_flavors', 'GET', '/v2.1/flavors?limit=1', { version: '2.55' })
  t.equal(a.body.flavors.length, 1)
  const compute = `${cloud.s.controller.rest!.origin}/compute`
  t.same(a.body.flavors_links, [{ rel: 'next', href: `${compute}/v2.1/flavors?limit=1&marker=0` }])
  a = await checked('flavors', 'list_flavors_details', 'GET', '/v2.1/flavors/detail?minRam=0&limit=1', { version: '2.1' })
  t.same(a.body.flavors_links, [{ rel: 'next', href: `${compute}/v2.1/flavors/detail?minRam=0&limit=1&marker=0` }], 'the path asked, its query kept, the marker after the page')
  a = await checked('flavors', 'list_flavors_details', 'GET', '/v2.1/flavors/detail?marker=0', { version: '2.61' })
  t.same(a.body.flavors.map((f: { id: string }) => f.id), ['1'])
  a = await checked('flavors', 'list_flavors_details', 'GET', '/v2.1/flavors/detail?minRam=65', { version: '2.1' })
  t.same(a.body.flavors, [])

  // 2.55: description on create and update; not before.
  a = await nova('POST', '/v2.1/flavors', { version: '2.1', body: { flavor: { name: 'd', vcpus: 1, ram: 64, disk: 1, description: 'x' } } })
  t.equal(a.status, 400)
  a = await checked('flavors', 'create_update_get_flavor_details', 'POST', '/v2.1/flavors', { version: '2.55', body: { flavor: { name: 'm1.private', vcpus: 1, ram: 128, disk: 1, description: 'for demo', 'os-flavor-access:is_public': false } } })
  const priv = a.body.flavor.id as string
  t.match(priv, /^[0-9a-f-]{36}$/, 'no id: a generated one')
  a = await nova('POST', '/v2.1/flavors', { body: { flavor: { name: 'm1.strpub', vcpus: 1, ram: 64, disk: 1, 'os-flavor-access:is_public': 'False' } } })
  t.equal(a.body.flavor['os-flavor-access:is_public'], false, 'is_public as a string, as Tempest sends it')
  t.equal((await nova('DELETE', `/v2.1/flavors/${a.body.flavor.id}`)).status, 202)
  a = await checked('flavors', 'create_update_get_flavor_details', 'PUT', `/v2.1/flavors/${priv}`, { version: '2.55', body: { flavor: { description: 'for demo only' } } })
  t.equal(a.body.flavor.description, 'for demo only')

  // Access to a private flavor: invisible to demo until granted.
  a = await nova('GET', `/v2.1/flavors/${priv}`, { token: demo.token })
  t.equal(a.status, 404)
  a = await schemas.add('flavors_access', 'add_remove_list_flavor_access', '2.1', await nova('POST', `/v2.1/flavors/${priv}/action`, { body: { addTenantAccess: { tenant: demo.projectId } } }))
  t.same(a.body, { flavor_access: [{ flavor_id: priv, tenant_id: demo.projectId }] })
  a = await checked('flavors_access', 'add_remove_list_flavor_access', 'GET', `/v2.1/flavors/${priv}/os-flavor-access`, { version: '2.1' })
  t.equal(a.body.flavor_access.length, 1)
  a = await nova('GET', `/v2.1/flavors/${priv}`, { token: demo.token })
  t.equal(a.status, 200)
  a = await nova('GET', '/v2.1/flavors/1/os-flavor-access')
  t.equal(a.status, 404, 'public flavors have no access list')
  a = await nova('POST', '/v2.1/flavors/1/action', { body: { addTenantAccess: { tenant: demo.projectId } } })
  t.equal(a.status, 409)

  // Refusals: Nova's fault bodies, nothing changed.
  a = await nova('POST', '/v2.1/flavors', { body: { flavor: { name: 'm1.zero', vcpus: 1, ram: 64, disk: 1 } } })
  t.equal(a.status, 409)
  t.match(a.body, { conflictingRequest: { code: 409, message: /m1.zero/ } })
  a = await nova('POST', '/v2.1/flavors', { body: { flavor: { name: 'bad', vcpus: 0, ram: 64, disk: 1 } } })
  t.match(a.body, { badRequest: { code: 400, message: /vcpus/ } })
  a = await nova('POST', '/v2.1/flavors', { body: { flavor: { name: 'bad', vcpus: 1, ram: 'lots', disk: 1 } } })
  t.match(a.body, { badRequest: { message: /ram/ } })
  a = await nova('POST', '/v2.1/flavors', { token: demo.token, body: { flavor: { name: 'mine', vcpus: 1, ram: 64, disk: 1 } } })
  t.equal(a.status, 403)
  t.match(a.body, { forbidden: { code: 403 } })
  a = await nova('POST', '/v2.1/flavors', { body: '{"flavor": ', headers: { 'content-type': 'application/json' } })
  t.equal(a.status, 400)
  a = await nova('POST', '/v2.1/flavors', { body: 'name=x', headers: { 'content-type': 'application/x-www-form-urlencoded' } })
  t.equal(a.status, 415)
  t.match(a.body, { badMediaType: { code: 415 } })
  a = await nova('POST', '/v2.1/flavors', { body: { flavor: { name: 'big', vcpus: 1, ram: 64, disk: 1, description: 'x'.repeat(200_000) } }, version: '2.55' })
  t.equal(a.status, 413)
  t.match(a.body, { overLimit: { code: 413 } })
  a = await checked('flavors', 'list_flavors', 'GET', '/v2.1/flavors?is_public=none', { version: '2.1' })
  t.same(a.body.flavors.map((f: { name: string }) => f.name).sort(), ['m1.nano', 'm1.private', 'm1.zero'], 'nothing was made by the refused requests')

  a = await checked('flavors', 'delete_flavor', 'DELETE', `/v2.1/flavors/${priv}`, { version: '2.1' })
  t.equal(a.status, 202)
  a = await nova('GET', `/v2.1/flavors/${priv}`)
  t.equal(a.status, 404)
  t.match(a.body, { itemNotFound: { code: 404 } })
})

t.test('keypairs: import and generate, show, list, delete — per microversion (2.2 type, 2.10 user_id, 2.35 paging)', async (t) => {
  const tok = { token: demo.token }
  let a = await checked('keypairs', 'create_keypair', 'POST', '/v2.1/os-keypairs', { ...tok, version: '2.1', body: { keypair: { name: 'mykey', public_key: SSH } } })
  t.equal(a.status, 200)
  t.match(a.body.keypair, { name: 'mykey', public_key: SSH, user_id: demo.userId, fingerprint: /^([0-9a-f]{2}:){15}[0-9a-f]{2}$/ })
  t.notOk('type' in a.body.keypair)
  a = await checked('keypairs', 'create_keypair', 'POST', '/v2.1/os-keypairs', { ...tok, version: '2.2', body: { keypair: { name: 'made', type: 'ssh' } } })
  t.equal(a.status, 201)
  t.match(a.body.keypair, { name: 'made', type: 'ssh', private_key: /BEGIN OPENSSH PRIVATE KEY/ })
  a = await checked('keypairs', 'get_keypair', 'GET', '/v2.1/os-keypairs/mykey', { ...tok, version: '2.1' })
  t.match(a.body.keypair, { name: 'mykey', deleted: false, user_id: demo.userId, updated_at: null })
  t.type(a.body.keypair.id, 'number')
  a = await checked('keypairs', 'get_keypair', 'GET', '/v2.1/os-keypairs/made', { ...tok, version: '2.10' })
  t.equal(a.body.keypair.type, 'ssh')
  a = await checked('keypairs', 'list_keypairs', 'GET', '/v2.1/os-keypairs', { ...tok, version: '2.2' })
  t.same(a.body.keypairs.map((k: { keypair: { name: string } }) => k.keypair.name), ['made', 'mykey'])
  // Nova adds keypairs_links to a full page from 2.35 (Tempest 33's schema predates paging and is not asked here).
  a = await nova('GET', '/v2.1/os-keypairs?limit=1', { ...tok, version: '2.35' })
  t.equal(a.body.keypairs.length, 1)
  t.same(a.body.keypairs_links, [{ rel: 'next', href: `${cloud.s.controller.rest!.origin}/compute/v2.1/os-keypairs?limit=1&marker=made` }])

  // 2.10: an admin acts for another user; a member may not.
  a = await checked('keypairs', 'list_keypairs', 'GET', `/v2.1/os-keypairs?user_id=${demo.userId}`, { version: '2.10' })
  t.equal(a.body.keypairs.length, 2, 'the admin sees demo\'s keypairs')
  a = await nova('GET', `/v2.1/os-keypairs?user_id=${demo.userId}`, { version: '2.1' })
  t.equal(a.body.keypairs.length, 0, 'before 2.10 user_id is not a filter')
  a = await nova('POST', '/v2.1/os-keypairs', { version: '2.10', body: { keypair: { name: 'for-demo', public_key: SSH, user_id: demo.userId } } })
  t.equal(a.status, 201)
  t.equal(a.body.keypair.user_id, demo.userId)
  a = await nova('GET', '/v2.1/os-keypairs?user_id=someone-else', { ...tok, version: '2.10' })
  t.equal(a.status, 403, 'a member reads only their own keypairs')

  a = await nova('POST', '/v2.1/os-keypairs', { ...tok, body: { keypair: { name: 'mykey', public_key: SSH } } })
  t.equal(a.status, 409)
  a = await nova('POST', '/v2.1/os-keypairs', { ...tok, body: { keypair: { name: 'bad', public_key: 'ssh-rsa nonsense' } } })
  t.equal(a.status, 400)
  a = await nova('POST', '/v2.1/os-keypairs', { ...tok, body: { keypair: { name: 'empty', public_key: '' } } })
  t.equal(a.status, 400, 'an empty public key is refused, not taken as "generate"')
  a = await nova('POST', '/v2.1/os-keypairs', { ...tok, version: '2.2', body: { keypair: { name: 'x5', type: 'x509' } } })
  t.equal(a.status, 400)
  // 2.92: imported only (public_key required), and names may hold '@' and '.'.
  a = await checked('keypairs', 'create_keypair', 'POST', '/v2.1/os-keypairs', { ...tok, version: '2.91', body: { keypair: { name: 'gen-291' } } })
  t.match(a, { status: 201, body: { keypair: { name: 'gen-291', private_key: /BEGIN OPENSSH PRIVATE KEY/ } } }, 'generated at 2.91')
  a = await nova('POST', '/v2.1/os-keypairs', { ...tok, version: '2.92', body: { keypair: { name: 'gen-292' } } })
  t.match(a, { status: 400, body: { badRequest: { message: /'public_key' is a required property/ } } }, 'generation refused at 2.92')
  a = await nova('POST', '/v2.1/os-keypairs', { ...tok, version: '2.91', body: { keypair: { name: 'me@host.example', public_key: SSH } } })
  t.match(a, { status: 400, body: { badRequest: { message: /'@' and '\.' from microversion 2.92/ } } })
  a = await checked('keypairs', 'create_keypair', 'POST', '/v2.1/os-keypairs', { ...tok, version: '2.92', body: { keypair: { name: 'me@host.example', public_key: SSH } } })
  t.equal(a.status, 201)
  t.notOk('private_key' in a.body.keypair)
  t.equal((await nova('GET', '/v2.1/os-keypairs/me@host.example', { ...tok, version: '2.92' })).body.keypair.name, 'me@host.example')
  t.same((await nova('GET', '/v2.1/os-keypairs', tok)).body.keypairs.map((k: { keypair: { name: string } }) => k.keypair.name), ['for-demo', 'gen-291', 'made', 'me@host.example', 'mykey'], 'the refused ones were not made')
  for (const k of ['gen-291', 'me@host.example']) t.equal((await nova('DELETE', `/v2.1/os-keypairs/${k}`, { ...tok, version: '2.92' })).status, 204)

  a = await checked('keypairs', 'delete_keypair', 'DELETE', '/v2.1/os-keypairs/made', { ...tok, version: '2.1' })
  t.equal(a.status, 202)
  a = await checked('keypairs', 'delete_keypair', 'DELETE', `/v2.1/os-keypairs/for-demo?user_id=${demo.userId}`, { version: '2.10' })
  t.equal(a.status, 204)
  a = await nova('GET', '/v2.1/os-keypairs/made', tok)
  t.equal(a.status, 404)
})

t.test('servers: create as novaclient sends it, ACTIVE, every microversion\'s view, lists, actions, delete', async (t) => {
  const tok = { token: demo.token }
  // novaclient 2.1's body for: server create --image --flavor --nic net-id= --security-group --key-name
  let a = await checked('servers', 'create_server', 'POST', '/v2.1/servers', {
    ...tok, version: '2.1',
    body: { server: { name: 'provider-instance', imageRef: cloud.image.id, flavorRef: '1', min_count: 1, max_count: 1, networks: [{ uuid: cloud.network.id }], security_groups: [{ name: 'default' }], key_name: 'mykey' } },
  })
  t.equal(a.status, 202)
  const id = a.body.server.id as string
  t.match(a.body.server, { links: [{ rel: 'self', href: new RegExp(`/compute/v2.1/servers/${id}$`) }, { rel: 'bookmark' }], security_groups: [{ name: 'default' }], 'OS-DCF:diskConfig': 'MANUAL' })
  t.match(a.headers.location, new RegExp(`/servers/${id}$`))

  const server = await eventually(async () => {
    const s = await nova('GET', `/v2.1/servers/${id}`, tok)
    return s.body.server.status === 'ACTIVE' ? s.body.server : undefined
  }, 10_000, 'the server to be ACTIVE')
  t.match(server, {
    id, name: 'provider-instance', tenant_id: demo.projectId, user_id: demo.userId, key_name: 'mykey', 'OS-EXT-STS:vm_state': 'active', 'OS-EXT-STS:task_state': null,
    'OS-EXT-STS:power_state': 1, 'OS-EXT-AZ:availability_zone': 'nova', image: { id: cloud.image.id }, flavor: { id: '1' }, security_groups: [{ name: 'default' }],
    addresses: { provider: [{ version: 4, addr: /^192\.168\.201\.2\d\d$/, 'OS-EXT-IPS:type': 'fixed', 'OS-EXT-IPS-MAC:mac_addr': /^fa:16:3e/ }] },
    hostId: /^[0-9a-f]{56}$/,
  })
  t.notOk('OS-EXT-SRV-ATTR:host' in server, 'host attributes are for admins')

  // Every version's view, for the member and the admin, against Tempest's schemas.
  for (const version of ['2.1', '2.3', '2.9', '2.16', '2.19', '2.26', '2.47', '2.63', '2.71', '2.73', '2.75', '2.89', '2.90', '2.95']) {
    await checked('servers', 'get_server', 'GET', `/v2.1/servers/${id}`, { ...tok, version })
    await checked('servers', 'get_server', 'GET', `/v2.1/servers/${id}`, { version })
    await checked('servers', 'list_servers_detail', 'GET', '/v2.1/servers/detail', { ...tok, version })
    await checked('servers', 'list_servers_detail', 'GET', '/v2.1/servers/detail?all_tenants=1', { version })
  }
  a = await nova('GET', `/v2.1/servers/${id}`, { version: '2.47' })
  t.same(a.body.server.flavor, { vcpus: 1, ram: 64, disk: 1, ephemeral: 0, swap: 0, original_name: 'm1.nano' })
  t.match(a.body.server, { 'OS-EXT-SRV-ATTR:host': /^node[12]$/, 'OS-EXT-SRV-ATTR:hostname': 'provider-instance', 'OS-EXT-SRV-ATTR:launch_index': 0, locked: false, tags: [], description: null })
  a = await nova('GET', `/v2.1/servers/${id}`, { version: '2.73' })
  t.match(a.body.server, { server_groups: [], locked_reason: null, trusted_image_certificates: null })
  a = await nova('GET', '/v2.1/servers/detail', { ...tok, version: '2.73' })
  t.notOk('server_groups' in a.body.servers[0], 'server_groups only in show')
  // 2.90: the owner sees the hostname too (admins since 2.3), and nothing else of OS-EXT-SRV-ATTR.
  t.notOk('OS-EXT-SRV-ATTR:hostname' in (await nova('GET', `/v2.1/servers/${id}`, { ...tok, version: '2.89' })).body.server, 'admins only before 2.90')
  a = await nova('GET', `/v2.1/servers/${id}`, { ...tok, version: '2.90' })
  t.same(Object.keys(a.body.server).filter((k) => k.startsWith('OS-EXT-SRV-ATTR:')), ['OS-EXT-SRV-ATTR:hostname'])
  t.equal(a.body.server['OS-EXT-SRV-ATTR:hostname'], 'provider-instance')
  // 2.96: pinned_availability_zone in show and the detailed list (null: the create asked for no zone), for members and admins.
  for (const [o, detail] of [[tok, '/v2.1/servers/detail'], [{}, '/v2.1/servers/detail?all_tenants=1']] as const) {
    const below = Object.keys((await nova('GET', `/v2.1/servers/${id}`, { ...o, version: '2.95' })).body.server)
    t.notOk(below.includes('pinned_availability_zone'))
    a = await nova('GET', `/v2.1/servers/${id}`, { ...o, version: '2.96' })
    t.same(Object.keys(a.body.server).sort(), [...below, 'pinned_availability_zone'].sort(), 'one key more at 2.96')
    t.equal(a.body.server.pinned_availability_zone, null)
    a = await nova('GET', detail, { ...o, version: '2.96' })
    t.match(a.body.servers, [{ id, pinned_availability_zone: null }], 'in the detailed list')
    t.notOk('pinned_availability_zone' in (await nova('GET', detail, { ...o, version: '2.95' })).body.servers[0])
  }

  // A second server to list and page.
  a = await nova('POST', '/v2.1/servers', { ...tok, body: { server: { name: 'other', imageRef: cloud.image.id, flavorRef: '1', networks: [{ uuid: cloud.network.id }] } } })
  t.equal(a.status, 202)
  const other = a.body.server.id as string
  a = await checked('servers', 'list_servers', 'GET', '/v2.1/servers', { ...tok, version: '2.1' })
  t.same(a.body.servers.map((s: { name: string }) => s.name).sort(), ['other', 'provider-instance'])
  a = await checked('servers', 'list_servers', 'GET', '/v2.1/servers?name=^provider', { ...tok, version: '2.1' })
  t.same(a.body.servers.map((s: { id: string }) => s.id), [id], 'name is a regular expression, as Nova\'s')
  a = await checked('servers', 'list_servers', 'GET', '/v2.1/servers?limit=1', { ...tok, version: '2.1' })
  t.equal(a.body.servers.length, 1)
  const first = a.body.servers[0].id as string
  t.same(a.body.servers_links, [{ rel: 'next', href: `${cloud.s.controller.rest!.origin}/compute/v2.1/servers?limit=1&marker=${first}` }])
  const next = new URL(a.body.servers_links[0].href)
  a = await nova('GET', `${next.pathname.replace('/compute', '')}${next.search}`, tok)
  t.equal(a.body.servers.length, 1)
  t.not(a.body.servers[0].id, first, 'the next page holds the other server')
  a = await checked('servers', 'list_servers', 'GET', '/v2.1/servers?limit=0', { ...tok, version: '2.1' })
  t.same(a.body.servers, [], 'limit=0 lists nothing')
  a = await nova('GET', '/v2.1/servers?status=SHUTOFF', tok)
  t.same(a.body.servers, [])
  a = await nova('GET', '/v2.1/servers?status=BOGUS', { ...tok, version: '2.37' })
  t.same(a.body.servers, [], 'before 2.38 an unknown status lists nothing')
  a = await nova('GET', '/v2.1/servers?status=BOGUS', { ...tok, version: '2.38' })
  t.equal(a.status, 400)
  a = await nova('GET', '/v2.1/servers?all_tenants=1', tok)
  t.equal(a.status, 403, 'all_tenants is for admins')
  a = await nova('GET', `/v2.1/servers?all_tenants=1&project_id=${demo.projectId}`)
  t.equal(a.body.servers.length, 2)
  // 2.75: an unknown query parameter is a 400 (ignored before).
  t.equal((await nova('GET', '/v2.1/servers/detail?bogus=1', { ...tok, version: '2.74' })).body.servers.length, 2)
  a = await nova('GET', '/v2.1/servers/detail?bogus=1', { ...tok, version: '2.75' })
  t.equal(a.status, 400)
  t.match(a.body, { badRequest: { message: /'bogus' was unexpected/ } })
  // 2.83: members filter by key_name, vm_state, power_state, user_id …; before it Nova drops those filters.
  const names = async (q: string, version: string, o: NovaCall = tok) => (await nova('GET', `/v2.1/servers?${q}`, { ...o, version })).body.servers.map((s: { name: string }) => s.name).sort()
  t.same(await names('key_name=mykey', '2.82'), ['other', 'provider-instance'], 'dropped for members before 2.83')
  t.same(await names('key_name=^my', '2.83'), ['provider-instance'], 'key_name is a regular expression')
  t.same(await names(`key_name=mykey&all_tenants=1&project_id=${demo.projectId}`, '2.1', {}), ['provider-instance'])
  t.ok((await names(`vm_state=active&power_state=1&user_id=${demo.userId}&availability_zone=nova`, '2.83')).includes('provider-instance'))
  t.same(await names('vm_state=error', '2.83'), [])
  t.same(await names('user_id=someone-else', '2.83'), [])
  t.same(await names('vm_state=error', '2.82'), ['other', 'provider-instance'], 'dropped for members before 2.83')
  a = await nova('GET', '/v2.1/servers?created_at=2026', { ...tok, version: '2.83' })
  t.equal(a.status, 400, 'a filter Strato cannot apply is refused by name, not ignored')
  t.match(a.body, { badRequest: { message: /created_at/ } })
  t.equal((await nova('GET', '/v2.1/servers?created_at=2026', { ...tok, version: '2.82' })).status, 200, 'before 2.83 Nova drops it for members')

  // Addresses, interfaces, metadata.
  a = await checked('servers', 'list_addresses', 'GET', `/v2.1/servers/${id}/ips`, { ...tok, version: '2.1' })
  t.same(Object.keys(a.body.addresses), ['provider'])
  a = await checked('servers', 'list_addresses_by_network', 'GET', `/v2.1/servers/${id}/ips/provider`, { ...tok, version: '2.1' })
  t.equal(a.body.provider.length, 1)
  a = await checked('interfaces', 'list_interfaces', 'GET', `/v2.1/servers/${id}/os-interface`, { ...tok, version: '2.1' })
  t.match(a.body.interfaceAttachments, [{ net_id: cloud.network.id, fixed_ips: [{ subnet_id: cloud.subnet.id }] }])
  const port = a.body.interfaceAttachments[0].port_id as string
  a = await checked('interfaces', 'get_create_interfaces', 'GET', `/v2.1/servers/${id}/os-interface/${port}`, { ...tok, version: '2.70' })
  t.equal(a.body.interfaceAttachment.tag, null)

  a = await checked('servers', 'list_server_metadata', 'GET', `/v2.1/servers/${other}/metadata`, { ...tok, version: '2.1' })
  t.same(a.body, { metadata: {} })
  a = await checked('servers', 'set_server_metadata', 'PUT', `/v2.1/servers/${other}/metadata`, { ...tok, version: '2.1', body: { metadata: { a: '1', b: '2' } } })
  t.same(a.body, { metadata: { a: '1', b: '2' } })
  a = await checked('servers', 'update_server_metadata', 'POST', `/v2.1/servers/${other}/metadata`, { ...tok, version: '2.1', body: { metadata: { b: '3', c: '4' } } })
  t.same(a.body, { metadata: { a: '1', b: '3', c: '4' } })
  a = await checked('servers', 'set_show_server_metadata_item', 'PUT', `/v2.1/servers/${other}/metadata/a`, { ...tok, version: '2.1', body: { meta: { a: '9' } } })
  t.same(a.body, { meta: { a: '9' } })
  a = await checked('servers', 'set_show_server_metadata_item', 'GET', `/v2.1/servers/${other}/metadata/a`, { ...tok, version: '2.1' })
  t.same(a.body, { meta: { a: '9' } })
  a = await checked('servers', 'delete_server_metadata_item', 'DELETE', `/v2.1/servers/${other}/metadata/c`, { ...tok, version: '2.1' })
  t.equal(a.status, 204)
  t.equal((await nova('DELETE', `/v2.1/servers/${other}/metadata/c`, tok)).status, 404)
  t.equal((await nova('PUT', `/v2.1/servers/${other}/metadata/a`, { ...tok, body: { meta: { b: '1' } } })).status, 400, 'body and URI must name the same key')
  t.equal((await nova('POST', `/v2.1/servers/${other}/metadata`, { ...tok, body: { metadata: { n: 1 } } })).status, 400)
  const many = Object.fromEntries(Array.from({ length: 127 }, (_, i) => [`k${i}`, 'v']))
  t.equal((await nova('POST', `/v2.1/servers/${other}/metadata`, { ...tok, body: { metadata: many } })).status, 403, 'over the metadata quota')
  a = await nova('GET', `/v2.1/servers/${other}`, tok)
  t.same(a.body.server.metadata, { a: '9', b: '3' }, 'the refused changes changed nothing')

  // Actions: console, stop, start, reboot; the state table's refusals are 409.
  a = await checked('servers', 'get_console_output', 'POST', `/v2.1/servers/${id}/action`, { ...tok, version: '2.1', body: { 'os-getConsoleOutput': { length: 50 } } })
  t.match(a.body.output, /booted/)
  a = await nova('POST', `/v2.1/servers/${id}/action`, { ...tok, body: { 'os-getConsoleOutput': { length: '-1' } } })
  t.equal(a.status, 200)
  const whole = a.body.output as string
  t.match(whole, /booted\n$/, 'the log ends in a newline')
  a = await nova('POST', `/v2.1/servers/${id}/action`, { ...tok, body: { 'os-getConsoleOutput': { length: 1 } } })
  t.equal(a.body.output, '', 'length counts the empty piece after the last newline, as Nova cuts it')
  a = await nova('POST', `/v2.1/servers/${id}/action`, { ...tok, body: { 'os-getConsoleOutput': { length: 2 } } })
  t.equal(a.body.output, `${whole.split('\n').at(-2)}\n`)
  a = await nova('POST', `/v2.1/servers/${id}/action`, { ...tok, body: { 'os-getConsoleOutput': { length: 0 } } })
  t.equal(a.body.output, '')
  a = await nova('POST', `/v2.1/servers/${id}/action`, { ...tok, body: { 'os-start': null } })
  t.equal(a.status, 409)
  t.match(a.body, { conflictingRequest: { message: /cannot start/ } })
  a = await checked('servers', 'server_actions_common_schema', 'POST', `/v2.1/servers/${id}/action`, { ...tok, version: '2.1', body: { 'os-stop': null } })
  t.equal(a.status, 202)
  await eventually(async () => (await nova('GET', `/v2.1/servers/${id}`, tok)).body.server.status === 'SHUTOFF', 10_000, 'SHUTOFF')
  a = await nova('POST', `/v2.1/servers/${id}/action`, { ...tok, body: { 'os-start': null } })
  t.equal(a.status, 202)
  await eventually(async () => (await nova('GET', `/v2.1/servers/${id}`, tok)).body.server.status === 'ACTIVE', 10_000, 'ACTIVE again')
  a = await nova('POST', `/v2.1/servers/${id}/action`, { ...tok, body: { reboot: { type: 'HARD' } } })
  t.equal(a.status, 202)
  await eventually(async () => (await nova('GET', `/v2.1/servers/${id}`, tok)).body.server['OS-EXT-STS:task_state'] === null, 10_000, 'the reboot to finish')
  a = await nova('POST', `/v2.1/servers/${id}/action`, { ...tok, body: { reboot: { type: 'GENTLE' } } })
  t.equal(a.status, 400)
  a = await nova('POST', `/v2.1/servers/${id}/action`, { ...tok, body: { pause: null } })
  t.match(a.body, { badRequest: { message: 'There is no such action: pause' } })

  // os-resetState: an admin's override of vm_state; members are refused, a bad state is a 400; nothing is cast.
  a = await nova('POST', `/v2.1/servers/${id}/action`, { ...tok, body: { 'os-resetState': { state: 'error' } } })
  t.equal(a.status, 403, 'members may not reset a state')
  a = await nova('POST', `/v2.1/servers/${id}/action`, { body: { 'os-resetState': { state: 'building' } } })
  t.match(a, { status: 400, body: { badRequest: { message: /one of active, error/ } } })
  a = await nova('POST', `/v2.1/servers/${id}/action`, { body: { 'os-resetState': null } })
  t.equal(a.status, 400)
  t.equal((await nova('GET', `/v2.1/servers/${id}`, tok)).body.server.status, 'ACTIVE', 'the refusals changed nothing')
  a = await checked('servers', 'server_actions_common_schema', 'POST', `/v2.1/servers/${id}/action`, { version: '2.1', body: { 'os-resetState': { state: 'error' } } })
  t.equal(a.status, 202)
  t.match((await nova('GET', `/v2.1/servers/${id}`, tok)).body.server, { status: 'ERROR', 'OS-EXT-STS:vm_state': 'error', 'OS-EXT-STS:task_state': null })
  a = await nova('POST', `/v2.1/servers/${id}/action`, { body: { 'os-resetState': { state: 'active' } } })
  t.equal(a.status, 202)
  t.equal((await nova('GET', `/v2.1/servers/${id}`, tok)).body.server.status, 'ACTIVE', 'and back to active')

  // Update: the name (and from 2.19 the description), answered per version without the extended attributes.
  a = await checked('servers', 'update_server', 'PUT', `/v2.1/servers/${other}`, { ...tok, version: '2.1', body: { server: { name: 'renamed' } } })
  t.equal(a.body.server.name, 'renamed')
  for (const version of ['2.9', '2.19', '2.26', '2.47', '2.63', '2.71', '2.73']) {
    await checked('servers', 'update_server', 'PUT', `/v2.1/servers/${other}`, { ...tok, version, body: { server: { name: `renamed-${version}` } } })
  }
  // 2.75: PUT answers the whole GET representation (before it, without the extended attributes).
  a = await nova('PUT', `/v2.1/servers/${other}`, { ...tok, version: '2.74', body: { server: { name: 'renamed-2.73' } } })
  t.notOk('OS-EXT-STS:vm_state' in a.body.server || 'key_name' in a.body.server, 'no extended attributes before 2.75')
  a = await checked('servers', 'update_server', 'PUT', `/v2.1/servers/${other}`, { ...tok, version: '2.75', body: { server: { name: 'renamed-2.73' } } })
  t.same(Object.keys(a.body.server).sort(), Object.keys((await nova('GET', `/v2.1/servers/${other}`, { ...tok, version: '2.75' })).body.server).sort(), 'the keys of GET')
  a = await nova('PUT', `/v2.1/servers/${other}`, { ...tok, version: '2.19', body: { server: { description: 'the other one' } } })
  t.equal(a.body.server.description, 'the other one')
  a = await nova('PUT', `/v2.1/servers/${other}`, { ...tok, version: '2.1', body: { server: { description: 'x' } } })
  t.equal(a.status, 400, 'description needs 2.19')
  a = await nova('PUT', `/v2.1/servers/${other}`, { ...tok, body: { server: { name: '' } } })
  t.equal(a.status, 400)
  a = await nova('GET', `/v2.1/servers/${other}`, { ...tok, version: '2.19' })
  t.match(a.body.server, { name: 'renamed-2.73', description: 'the other one' }, 'the refused updates changed nothing')

  // Lookups by name are the client's business: GET by a name is a 404, as in Nova.
  a = await nova('GET', '/v2.1/servers/provider-instance', tok)
  t.equal(a.status, 404)

  for (const s of [id, other]) {
    a = await checked('servers', 'delete_server', 'DELETE', `/v2.1/servers/${s}`, { ...tok, version: '2.1' })
    t.equal(a.status, 204)
  }
  await eventually(async () => (await nova('GET', `/v2.1/servers/${id}`, tok)).status === 404, 10_000, 'the server to be gone')
})

t.test('multiple create: min_count/max_count, return_reservation_id, names as Nova makes them', async (t) => {
  const tok = { token: demo.token }
  const server = { imageRef: cloud.image.id, flavorRef: '1', networks: [{ uuid: cloud.network.id }] }
  let a = await checked('servers', 'create_server', 'POST', '/v2.1/servers', { ...tok, version: '2.1', body: { server: { ...server, name: 'many', min_count: 2, max_count: '2' } } })
  t.equal(a.status, 202)
  a = await nova('POST', '/v2.1/servers', { ...tok, body: { server: { ...server, name: 'more', min_count: 1, max_count: 2, return_reservation_id: true } } })
  t.equal(a.status, 202)
  t.match(a.body, { reservation_id: /^r-/ })
  t.notOk('server' in a.body)
  a = await nova('GET', '/v2.1/servers/detail?name=^m(any|ore)-', tok)
  t.same(a.body.servers.map((s: { name: string }) => s.name).sort(), ['many-1', 'many-2', 'more-1', 'more-2'])
  const ids = a.body.servers.map((s: { id: string }) => s.id) as string[]
  a = await nova('GET', '/v2.1/servers/detail?all_tenants=1&name=^more-', { version: '2.3' })
  t.same(a.body.servers.map((s: { 'OS-EXT-SRV-ATTR:launch_index': number }) => s['OS-EXT-SRV-ATTR:launch_index']).sort(), [0, 1])
  for (const id of ids) t.equal((await nova('DELETE', `/v2.1/servers/${id}`, tok)).status, 204)
  await eventually(async () => (await nova('GET', '/v2.1/servers', tok)).body.servers.length === 0, 10_000, 'every server to be gone')
})

t.test('server create refusals: Nova\'s 400s and 403s, nothing made', async (t) => {
  const tok = { token: demo.token }
  const base = { name: 'x', imageRef: cloud.image.id, flavorRef: '1', networks: [{ uuid: cloud.network.id }] }
  const refused = async (server: object, status: number, field: RegExp, o: NovaCall = {}) => {
    const a = await nova('POST', '/v2.1/servers', { ...tok, ...o, body: { server } })
    t.equal(a.status, status, JSON.stringify(server))
    t.match(JSON.stringify(a.body), field)
  }
  await refused({ ...base, flavorRef: undefined }, 400, /flavorRef/)
  await refused({ ...base, flavorRef: 'nope' }, 400, /flavor 'nope' not found/)
  await refused({ ...base, imageRef: '00000000-0000-4000-8000-000000000000' }, 400, /image/)
  await refused({ ...base, key_name: 'nokey' }, 400, /keypair 'nokey'/)
  await refused({ ...base, networks: 'auto' }, 400, /2.37/)
  await refused({ ...base, networks: undefined }, 400, /networks/, { version: '2.37' })
  await refused({ ...base, block_device_mapping: [{ volume_id: cloud.network.id }] }, 400, /legacy block device mapping \(use block_device_mapping_v2\)/)
  await refused({ ...base, block_device_mapping_v2: [{ source_type: 'blank', destination_type: 'volume', volume_size: 1, tag: 'data' }] }, 400, /block_device_mapping_v2\[0\]\.tag: Strato does not support it/)
  await refused({ ...base, security_groups: [{ name: 'nosuch' }] }, 400, /nosuch/)
  await refused({ ...base, colour: 'blue' }, 400, /'colour' was unexpected/)
  await refused({ ...base, min_count: 0 }, 400, /min_count/)
  await refused({ ...base, max_count: '0' }, 400, /max_count/)
  await refused({ ...base, adminPass: 7 }, 400, /adminPass/)
  await refused({ ...base, 'OS-DCF:diskConfig': 'AUTO' }, 400, /MANUAL/)
  await refused({ ...base, description: 'd' }, 400, /description/)
  await refused({ ...base, metadata: Object.fromEntries(Array.from({ length: 129 }, (_, i) => [`k${i}`, 'v'])) }, 403, /metadata/)
  // 2.74: host and hypervisor_hostname, for admins only; not with ZONE:HOST; the host must exist.
  await refused({ ...base, host: 'node1' }, 400, /host: Strato does not support/, { version: '2.73' })
  await refused({ ...base, host: 'node1' }, 403, /for cloud admins/, { version: '2.74' })
  await refused({ ...base, hypervisor_hostname: 'node1' }, 403, /for cloud admins/, { version: '2.74' })
  await refused({ ...base, host: 'node1', availability_zone: 'nova:node1' }, 400, /mutually exclusive/, { version: '2.74', token: cloud.s.adminToken })
  await refused({ ...base, host: 'node1', hypervisor_hostname: 'node2' }, 400, /hypervisor_hostname node2 is not a hypervisor of host node1/, { version: '2.74', token: cloud.s.adminToken })
  await refused({ ...base, host: 'nosuchhost' }, 400, /host 'nosuchhost' does not exist/, { version: '2.74', token: cloud.s.adminToken })
  // 2.90: hostname, a DNS label of 2 to 63 characters; an FQDN from 2.94; one server only.
  await refused({ ...base, hostname: 'web-1' }, 400, /'hostname' was unexpected.*needs microversion 2\.90/, { version: '2.89' })
  await refused({ ...base, hostname: 'w' }, 400, /hostname\. Value: w\. It must be 2 to 63/, { version: '2.90' })
  await refused({ ...base, hostname: '-web' }, 400, /hostname\. Value: -web\./, { version: '2.90' })
  await refused({ ...base, hostname: 'web.example.org' }, 400, /an FQDN needs microversion 2\.94/, { version: '2.93' })
  await refused({ ...base, hostname: 'web example' }, 400, /hostname\. Value: web example\. It must be 1 to 255/, { version: '2.94' })
  await refused({ ...base, hostname: 7 }, 400, /hostname\. Value: 7\. It is not a string/, { version: '2.94' })
  await refused({ ...base, hostname: 'web-1', max_count: 2 }, 400, /Unable to allocate a single hostname to multiple instances/, { version: '2.90' })
  const a = await nova('GET', '/v2.1/servers', tok)
  t.same(a.body.servers, [], 'no server was made')
  t.same((await nova('GET', '/v2.1/servers')).body.servers, [], 'nor by the admin')
  for (const [k, host] of [['host', 'node2'], ['hypervisor_hostname', 'node1']]) {
    const made = await nova('POST', '/v2.1/servers', { version: '2.74', body: { server: { ...base, name: `on-${host}`, [k!]: host } } })
    t.equal(made.status, 202, JSON.stringify(made.body))
    const s = await cloud.waitFor(made.body.server.id, (x) => x.status === 'ACTIVE', cloud.s.adminToken, 20_000)
    t.equal(s.host, host, `${k} ${host}: the server is on ${host}`)
    t.equal((await nova('DELETE', `/v2.1/servers/${made.body.server.id}`)).status, 204)
  }
})

t.test('2.90–2.96: the kept hostname (create, PUT, filter; an FQDN from 2.94), pinned_availability_zone; 2.91, 2.93 and 2.95 change nothing Strato has', async (t) => {
  const tok = { token: demo.token }
  const base = { imageRef: cloud.image.id, flavorRef: '1', networks: [{ uuid: cloud.network.id }] }
  const make = async (server: object, version: string) => {
    const a = await nova('POST', '/v2.1/servers', { ...tok, version, body: { server: { ...base, ...server } } })
    t.equal(a.status, 202, JSON.stringify(a.body))
    return a.body.server.id as string
  }
  const web = await make({ name: 'Web Server', hostname: 'web-1', availability_zone: 'nova' }, '2.90')
  const db = await make({ name: 'db', hostname: 'db.example.org' }, '2.94')
  // None asked for: Nova's sanitize_hostname of the name (Latin-1; ' ', '_', '.' made '-'; other non-word characters dropped), else Server-<uuid>.
  const derived = await make({ name: 'Café.Menu_2 (new)!' }, '2.1')
  const blank = await make({ name: '!!!' }, '2.1')
  const show = async (sid: string, version = '2.96', o: NovaCall = tok) => (await nova('GET', `/v2.1/servers/${sid}`, { ...o, version })).body.server
  t.match(await show(web), { name: 'Web Server', 'OS-EXT-SRV-ATTR:hostname': 'web-1', pinned_availability_zone: 'nova' })
  t.match(await show(db), { 'OS-EXT-SRV-ATTR:hostname': 'db.example.org', pinned_availability_zone: null })
  t.equal((await show(derived))['OS-EXT-SRV-ATTR:hostname'], 'café-menu-2-new')
  t.equal((await show(blank))['OS-EXT-SRV-ATTR:hostname'], `Server-${blank}`)
  t.equal((await show(web, '2.3', {}))['OS-EXT-SRV-ATTR:hostname'], 'web-1', 'what admins see from 2.3')
  // The guest gets it: the config drive's meta_data.json.
  const up = await cloud.waitFor(web, (s) => s.status === 'ACTIVE', cloud.s.adminToken, 20_000)
  const agent = cloud.agents.find((x) => x.agent.config.host === up.host)!
  const meta = JSON.parse(execFileSync('isoinfo', ['-J', '-i', path.join(agent.agent.config.instancesDir, web, 'disk.config'), '-x', '/openstack/latest/meta_data.json'], { encoding: 'utf8' }))
  t.match(meta, { name: 'Web Server', hostname: 'web-1' })

  // PUT: hostname from 2.90 (an FQDN from 2.94); a rename keeps it.
  let a = await nova('PUT', `/v2.1/servers/${web}`, { ...tok, version: '2.89', body: { server: { hostname: 'web-2' } } })
  t.match(a, { status: 400, body: { badRequest: { message: /'hostname' was unexpected/ } } })
  a = await nova('PUT', `/v2.1/servers/${web}`, { ...tok, version: '2.93', body: { server: { hostname: 'web-2.example.org' } } })
  t.match(a, { status: 400, body: { badRequest: { message: /an FQDN needs microversion 2\.94/ } } })
  t.equal((await show(web))['OS-EXT-SRV-ATTR:hostname'], 'web-1', 'the refused updates changed nothing')
  a = await nova('PUT', `/v2.1/servers/${web}`, { ...tok, version: '2.90', body: { server: { hostname: 'web-2' } } })
  t.match(a, { status: 200, body: { server: { name: 'Web Server', 'OS-EXT-SRV-ATTR:hostname': 'web-2' } } })
  t.notOk('pinned_availability_zone' in a.body.server)
  a = await nova('PUT', `/v2.1/servers/${web}`, { ...tok, version: '2.96', body: { server: { name: 'Renamed', hostname: 'web-2.example.org' } } })
  t.match(a.body.server, { name: 'Renamed', 'OS-EXT-SRV-ATTR:hostname': 'web-2.example.org', pinned_availability_zone: 'nova' })
  t.same(Object.keys(a.body.server).sort(), Object.keys(await show(web)).sort(), "2.96's PUT answers the keys of GET")
  a = await nova('PUT', `/v2.1/servers/${db}`, { ...tok, version: '2.90', body: { server: { name: 'database' } } })
  t.match(a.body.server, { name: 'database', 'OS-EXT-SRV-ATTR:hostname': 'db.example.org' }, 'a rename keeps the hostname')

  // The hostname filter (a regular expression): members from 2.90 (dropped before), admins at every version.
  const ids = async (q: string, version: string, o: NovaCall = tok) => (await nova('GET', `/v2.1/servers?${q}`, { ...o, version })).body.servers.map((s: { id: string }) => s.id).sort()
  t.same(await ids('hostname=^web-2', '2.89'), [web, db, derived, blank].sort(), 'dropped for members before 2.90')
  t.same(await ids('hostname=^web-2', '2.90'), [web])
  t.same(await ids('hostname=example', '2.90'), [web, db].sort())
  t.same(await ids('all_tenants=1&hostname=^Server-', '2.1', {}), [blank])

  // 2.91 (unshelve to a host), 2.93 (rebuild of a volume-backed server), 2.95 (evacuate leaves it stopped): Strato has none of these actions.
  for (const [action, arg, versions] of [['unshelve', { availability_zone: null }, ['2.90', '2.91']], ['rebuild', { imageRef: cloud.image.id }, ['2.92', '2.93']], ['evacuate', {}, ['2.94', '2.95']]] as const) {
    for (const version of versions) {
      a = await nova('POST', `/v2.1/servers/${web}/action`, { version, body: { [action]: arg } })
      t.match(a, { status: 400, body: { badRequest: { message: `There is no such action: ${action}` } } }, `${action} at ${version}`)
    }
  }

  for (const s of [web, db, derived, blank]) t.equal((await nova('DELETE', `/v2.1/servers/${s}`, tok)).status, 204)
  await eventually(async () => (await nova('GET', '/v2.1/servers', tok)).body.servers.length === 0, 10_000, 'every server to be gone')
})

t.test('limits, availability zones and server groups per microversion', async (t) => {
  const tok = { token: demo.token }
  for (const version of ['2.1', '2.36', '2.39', '2.57']) {
    const a = await checked('limits', 'get_limit', 'GET', '/v2.1/limits', { ...tok, version })
    t.match(a.body.limits.absolute, { maxTotalInstances: 10, maxTotalCores: 20, maxTotalRAMSize: 51200, maxTotalKeypairs: 100, totalInstancesUsed: 0 })
  }
  let a = await nova('GET', `/v2.1/limits?tenant_id=${demo.projectId}`)
  t.equal(a.status, 200, 'an admin reads another project\'s limits')

  for (const version of ['2.1', '2.36', '2.57']) {
    a = await checked('quotas', 'get_quota_set', 'GET', `/v2.1/os-quota-sets/${demo.projectId}`, { ...tok, version })
    t.match(a.body.quota_set, { id: demo.projectId, instances: 10, cores: 20, ram: 51200, key_pairs: 100 })
    await checked('quotas', 'get_quota_set_details', 'GET', `/v2.1/os-quota-sets/${demo.projectId}/detail`, { ...tok, version })
    await checked('quotas', 'get_quota_set', 'GET', `/v2.1/os-quota-sets/${demo.projectId}/defaults`, { ...tok, version })
  }
  a = await checked('quotas', 'update_quota_set', 'PUT', `/v2.1/os-quota-sets/${demo.projectId}`, { version: '2.1', body: { quota_set: { instances: 12, cores: '30', force: true } } })
  t.match(a.body.quota_set, { instances: 12, cores: 30 })
  a = await checked('limits', 'get_limit', 'GET', '/v2.1/limits', { ...tok, version: '2.57' })
  t.match(a.body.limits.absolute, { maxTotalInstances: 12, maxTotalCores: 30 })
  a = await nova('PUT', `/v2.1/os-quota-sets/${demo.projectId}`, { ...tok, body: { quota_set: { instances: 100 } } })
  t.equal(a.status, 403, 'members do not raise their own quotas')
  a = await checked('quotas', 'get_quota_set', 'GET', `/v2.1/os-quota-sets/${demo.projectId}?user_id=${demo.userId}`, { ...tok, version: '2.1' })
  t.match(a.body.quota_set, { id: demo.projectId, instances: 12, cores: 30 }, "a user's quotas are the project's")
  a = await nova('PUT', `/v2.1/os-quota-sets/${demo.projectId}?user_id=${demo.userId}`, { body: { quota_set: { instances: 3 } } })
  t.match(a, { status: 400, body: { badRequest: { message: /per project, not per user/ } } })
  a = await nova('PUT', `/v2.1/os-quota-sets/${demo.projectId}`, { body: { quota_set: { injected_files: 3 } } })
  t.equal(a.status, 400)
  a = await nova('PUT', `/v2.1/os-quota-sets/${demo.projectId}`, { version: '2.57', body: { quota_set: { floating_ips: 3 } } })
  t.match(a.body, { badRequest: { message: /'floating_ips' was unexpected/ } })
  a = await nova('PUT', `/v2.1/os-quota-sets/${demo.projectId}`, { body: { quota_set: { instances: 10, cores: 20 } } })
  t.equal(a.status, 200)

  a = await checked('availability_zone', 'list_availability_zone_list', 'GET', '/v2.1/os-availability-zone', { ...tok, version: '2.1' })
  t.same(a.body, { availabilityZoneInfo: [{ zoneName: 'nova', zoneState: { available: true }, hosts: null }] })
  a = await checked('availability_zone', 'list_availability_zone_list_detail', 'GET', '/v2.1/os-availability-zone/detail', { version: '2.1' })
  t.same(Object.keys(a.body.availabilityZoneInfo[0].hosts).sort(), ['node1', 'node2'])
  a = await nova('GET', '/v2.1/os-availability-zone/detail', tok)
  t.equal(a.status, 403)

  a = await checked('server_groups', 'create_show_server_group', 'POST', '/v2.1/os-server-groups', { ...tok, version: '2.1', body: { server_group: { name: 'g1', policies: ['anti-affinity'] } } })
  const g1 = a.body.server_group.id as string
  t.same(a.body.server_group.policies, ['anti-affinity'])
  a = await nova('POST', '/v2.1/os-server-groups', { ...tok, version: '2.1', body: { server_group: { name: 'g2', policies: ['soft-affinity'] } } })
  t.equal(a.status, 400, 'soft policies need 2.15')
  a = await checked('server_groups', 'create_show_server_group', 'POST', '/v2.1/os-server-groups', { ...tok, version: '2.64', body: { server_group: { name: 'g2', policy: 'anti-affinity', rules: { max_server_per_host: 2 } } } })
  const g2 = a.body.server_group.id as string
  t.match(a.body.server_group, { policy: 'anti-affinity', rules: { max_server_per_host: 2 }, project_id: demo.projectId })
  for (const version of ['2.1', '2.13', '2.64']) {
    await checked('server_groups', 'create_show_server_group', 'GET', `/v2.1/os-server-groups/${g1}`, { ...tok, version })
    await checked('server_groups', 'list_server_groups', 'GET', '/v2.1/os-server-groups', { ...tok, version })
  }
  a = await nova('GET', '/v2.1/os-server-groups?limit=1&offset=1', tok)
  t.same(a.body.server_groups.map((g: { id: string }) => g.id), [g2])
  for (const g of [g1, g2]) {
    a = await checked('server_groups', 'delete_server_group', 'DELETE', `/v2.1/os-server-groups/${g}`, { ...tok, version: '2.1' })
    t.equal(a.status, 204)
  }
  a = await nova('GET', `/v2.1/os-server-groups/${g1}`, tok)
  t.equal(a.status, 404)
})

t.test('os-services: the compute hosts, enabled and disabled per microversion (legacy actions before 2.53, ids from it)', async (t) => {
  let a = await checked('services', 'list_services', 'GET', '/v2.1/os-services', { version: '2.1' })
  t.same(a.body.services.map((s: { host: string; binary: string; state: string; status: string }) => `${s.host} ${s.binary} ${s.state} ${s.status}`), ['node1 nova-compute up enabled', 'node2 nova-compute up enabled'])
  await checked('services', 'list_services', 'GET', '/v2.1/os-services?host=node2', { version: '2.11' })
  a = await checked('services', 'list_services', 'GET', '/v2.1/os-services?binary=nova-compute', { version: '2.53' })
  const node2 = a.body.services.find((s: { host: string }) => s.host === 'node2').id as string
  a = await checked('services', 'disable_log_reason', 'PUT', '/v2.1/os-services/disable-log-reason', { version: '2.1', body: { host: 'node2', binary: 'nova-compute', disabled_reason: 'maintenance' } })
  t.same(a.body, { service: { host: 'node2', binary: 'nova-compute', status: 'disabled', disabled_reason: 'maintenance' } })
  a = await checked('services', 'enable_disable_service', 'PUT', '/v2.1/os-services/enable', { version: '2.1', body: { host: 'node2', binary: 'nova-compute' } })
  t.equal(a.body.service.status, 'enabled')
  a = await checked('services', 'update_service', 'PUT', `/v2.1/os-services/${node2}`, { version: '2.53', body: { status: 'disabled', disabled_reason: 'again' } })
  t.match(a.body.service, { id: node2, status: 'disabled', disabled_reason: 'again', forced_down: false })
  a = await nova('PUT', `/v2.1/os-services/${node2}`, { version: '2.53', body: { forced_down: true } })
  t.equal(a.status, 400)
  a = await nova('PUT', '/v2.1/os-services/enable', { version: '2.1', body: { host: 'node2', binary: 'nova-scheduler' } })
  t.equal(a.status, 404)
  a = await nova('GET', '/v2.1/os-services', { token: demo.token })
  t.equal(a.status, 403)
  a = await checked('services', 'update_service', 'PUT', `/v2.1/os-services/${node2}`, { version: '2.53', body: { status: 'enabled' } })
  t.match(a.body.service, { status: 'enabled', disabled_reason: null })
})

t.test('os-hypervisors: the hosts with their placement usage, per microversion', async (t) => {
  for (const version of ['2.1', '2.28', '2.33', '2.53']) {
    await checked('hypervisors', 'list_search_hypervisors', 'GET', '/v2.1/os-hypervisors', { version })
    const a = await checked('hypervisors', 'list_hypervisors_detail', 'GET', '/v2.1/os-hypervisors/detail', { version })
    t.equal(a.body.hypervisors.length, 2)
    await checked('hypervisors', 'get_hypervisor', 'GET', `/v2.1/os-hypervisors/${a.body.hypervisors[0].id}`, { version })
  }
  // A server's allocation shows as used.
  let a = await nova('POST', '/v2.1/servers', { token: demo.token, body: { server: { name: 'h', imageRef: cloud.image.id, flavorRef: '1', networks: [{ uuid: cloud.network.id }] } } })
  const id = a.body.server.id as string
  a = await checked('hypervisors', 'get_hypervisor_statistics', 'GET', '/v2.1/os-hypervisors/statistics', { version: '2.1' })
  t.match(a.body.hypervisor_statistics, { count: 2, vcpus_used: 1, memory_mb_used: 64, local_gb_used: 1, running_vms: 1 })
  a = await nova('GET', '/v2.1/os-hypervisors/detail?limit=1', { version: '2.33' })
  t.equal(a.body.hypervisors.length, 1)
  t.same(a.body.hypervisors_links, [{ rel: 'next', href: `${cloud.s.controller.rest!.origin}/compute/v2.1/os-hypervisors/detail?limit=1&marker=${a.body.hypervisors[0].id}` }])
  a = await nova('GET', '/v2.1/os-hypervisors/detail', { version: '2.28' })
  t.match(a.body.hypervisors[0], { cpu_info: { arch: String }, hypervisor_version: Number, service: { host: /^node/ } })
  // 2.88: no usage fields, uptime added; statistics gone.
  a = await nova('GET', '/v2.1/os-hypervisors/detail', { version: '2.87' })
  t.match(a.body.hypervisors[0], { vcpus: Number, memory_mb_used: Number, running_vms: Number })
  a = await nova('GET', '/v2.1/os-hypervisors/detail', { version: '2.88' })
  t.same(Object.keys(a.body.hypervisors[0]).sort(), ['host_ip', 'hypervisor_hostname', 'hypervisor_type', 'hypervisor_version', 'id', 'service', 'state', 'status', 'uptime'])
  t.same(Object.keys((await nova('GET', `/v2.1/os-hypervisors/${a.body.hypervisors[0].id}`, { version: '2.88' })).body.hypervisor).sort(), Object.keys(a.body.hypervisors[0]).sort())
  t.equal((await nova('GET', '/v2.1/os-hypervisors/statistics', { version: '2.87' })).status, 200)
  t.equal((await nova('GET', '/v2.1/os-hypervisors/statistics', { version: '2.88' })).status, 404)
  a = await nova('GET', '/v2.1/os-hypervisors', { token: demo.token })
  t.equal(a.status, 403)
  t.equal((await nova('DELETE', `/v2.1/servers/${id}`, { token: demo.token })).status, 204)
})

t.test("every answer above matches Tempest's schema for its microversion", async (t) => {
  const { checked: n, failures } = schemas.check()
  t.ok(n > 80, `${n} answers checked`)
  t.same(failures, [])
})

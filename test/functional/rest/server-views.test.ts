// Kept server views (issue 18's bench:api): a controller keeps each server's view, its JSON and its
// gRPC message while the database's view_revision of the server stays the same, and the triggers of
// migration 0018 move that revision with every write to what the view shows. Every such write —
// the server's own fields and state, its metadata, its network's name, its security groups (renamed,
// or taken off its port), a floating IP associated and released — shows in the next listing and show,
// through REST and gRPC: on SQLite in one controller, and on PostgreSQL in a second controller whose
// views were kept before the first controller wrote. Whole listings are kept too (their REST answers
// and gRPC message): the very next GET after a write shows it, whoever wrote (another connection to
// the SQLite file, raw SQL on the controller's own connection), each caller gets its own project's
// and role's listing, and a revoked token is refused however kept the listing it asks for.
import { join } from 'node:path'
import Database from 'better-sqlite3'
import t, { type Test } from 'tap'
import { startCloud, type TestCloud } from '../../helpers/cloud.js'
import { startController, type TestController } from '../../helpers/controller.js'
import { sharedPostgres } from '../../helpers/postgres.js'
import { eventually } from '../../helpers/agents.js'
import { call, client } from '../../helpers/grpc.js'
import { testingOnPostgres } from '../../helpers/postgres.js'
import { member, tenant } from '../network/fixtures.js'
import { sqliteHandle } from '../../../controller/store/db.js'
import { ServersClient, type ListServersResponse } from '../../../proto/gen/strato/compute/v1/servers.js'
import type { ListNetworksResponse } from '../../../proto/gen/strato/network/v1/network.js'

type Json = any // eslint-disable-line @typescript-eslint/no-explicit-any -- JSON under test

async function rest(origin: string, token: string, method: string, p: string, body?: unknown): Promise<{ status: number; body: Json }> {
  const r = await fetch(`${origin}${p}`, {
    method, headers: { 'x-auth-token': token, accept: 'application/json', ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  })
  const text = await r.text()
  return { status: r.status, body: text ? JSON.parse(text) : undefined }
}

/**
 * Boots a server on a private network behind a router to the cloud's external network, in group
 * `web`, through `writer`; then changes what its view shows, one write at a time, and after each
 * checks the server as every reader lists it (servers/detail, show, gRPC ListServers).
 */
async function scenario(t: Test, cloud: TestCloud, readers: Array<{ name: string; rest: string; grpc: string; token: string }>) {
  const token = cloud.s.adminToken
  const w = (method: string, p: string, body?: unknown) => rest(cloud.s.controller.rest!.origin, token, method, p, body)
  const ok = async (method: string, p: string, body?: unknown) => {
    const r = await w(method, p, body)
    if (r.status >= 300) throw new Error(`${method} ${p} answered ${r.status}: ${JSON.stringify(r.body)}`)
    return r.body
  }
  const net = (await ok('POST', '/network/v2.0/networks', { network: { name: 'views-net' } })).network
  const sub = (await ok('POST', '/network/v2.0/subnets', { subnet: { network_id: net.id, ip_version: 4, cidr: '10.61.0.0/24' } })).subnet
  const router = (await ok('POST', '/network/v2.0/routers', { router: { name: 'views-router', external_gateway_info: { network_id: cloud.network.id } } })).router
  await ok('PUT', `/network/v2.0/routers/${router.id}/add_router_interface`, { subnet_id: sub.id })
  const web = (await ok('POST', '/network/v2.0/security-groups', { security_group: { name: 'web' } })).security_group
  const created = (await ok('POST', '/compute/v2.1/servers', { server: { name: 'kept', imageRef: cloud.image.id, flavorRef: cloud.flavor.id, networks: [{ uuid: net.id }], security_groups: [{ name: web.id }] } })).server
  const id: string = created.id

  const clients = readers.map((r) => ({ ...r, servers: client(ServersClient, r.grpc) }))
  t.teardown(() => clients.forEach((c) => c.servers.close()))
  /** The server as each reader shows it, once `pred` holds for all three of its answers. */
  const seen = async (what: string, pred: (rest: Json, grpc: Json) => boolean) => {
    for (const c of clients) {
      const last: { detail?: Json; show?: Json; grpc?: Json } = {}
      await eventually(async () => {
        const listed = await rest(c.rest, c.token, 'GET', '/compute/v2.1/servers/detail')
        if (listed.status !== 200) throw new Error(`${c.name}: servers/detail answered ${listed.status}: ${JSON.stringify(listed.body)}`)
        last.detail = listed.body.servers.find((s: Json) => s.id === id)
        last.show = (await rest(c.rest, c.token, 'GET', `/compute/v2.1/servers/${id}`)).body.server
        last.grpc = (await call<ListServersResponse>(c.servers, 'listServers', {}, c.token)).servers!.find((s) => s.id === id)
        return (last.detail && last.show && last.grpc && pred(last.detail, last.grpc) && pred(last.show, last.grpc)) || undefined
      }, 60_000, `${what} (as ${c.name} shows it)`).catch((err: Error) => {
        throw new Error(`${err.message}; last seen: ${JSON.stringify(last)}`)
      })
      t.pass(`${c.name}: ${what}`)
    }
  }

  await seen('the server is ACTIVE with its address and group', (r, g) => r.status === 'ACTIVE' && g.status === 'ACTIVE' && r.addresses['views-net']?.length === 1 && r.security_groups?.[0]?.name === 'web')
  const fixed = (await w('GET', `/compute/v2.1/servers/${id}`)).body.server.addresses['views-net'][0].addr as string

  await ok('PUT', `/compute/v2.1/servers/${id}`, { server: { name: 'renamed' } })
  await seen('a rename', (r, g) => r.name === 'renamed' && g.name === 'renamed')

  await ok('POST', `/compute/v2.1/servers/${id}/metadata`, { metadata: { tier: 'front' } })
  await seen('metadata', (r, g) => r.metadata.tier === 'front' && g.metadata.tier === 'front')

  await ok('PUT', `/network/v2.0/networks/${net.id}`, { network: { name: 'views-net-2' } })
  await seen("its network's new name", (r, g) => r.addresses['views-net-2']?.[0]?.addr === fixed && !('views-net' in r.addresses) && g.addresses.every((a: Json) => a.networkName === 'views-net-2'))

  await ok('PUT', `/network/v2.0/security-groups/${web.id}`, { security_group: { name: 'www' } })
  await seen("its group's new name", (r, g) => r.security_groups?.[0]?.name === 'www' && g.securityGroups[0] === 'www')

  const port = (await ok('GET', `/network/v2.0/ports?device_id=${id}`)).ports[0]
  await ok('PUT', `/network/v2.0/ports/${port.id}`, { port: { security_groups: [] } })
  await seen('its port without groups', (r, g) => !('security_groups' in r) && g.securityGroups.length === 0)

  const fip = (await ok('POST', '/network/v2.0/floatingips', { floatingip: { floating_network_id: cloud.network.id, port_id: port.id } })).floatingip
  const floating = (r: Json) => r.addresses['views-net-2']?.find((a: Json) => a['OS-EXT-IPS:type'] === 'floating')?.addr
  await seen('a floating IP', (r, g) => floating(r) === fip.floating_ip_address && g.addresses.some((a: Json) => a.addr === fip.floating_ip_address))
  await ok('DELETE', `/network/v2.0/floatingips/${fip.id}`)
  await seen('the floating IP released', (r, g) => floating(r) === undefined && g.addresses.length === 1)

  await ok('POST', `/compute/v2.1/servers/${id}/action`, { 'os-stop': null })
  await seen('stopped', (r, g) => r.status === 'SHUTOFF' && g.status === 'SHUTOFF')
}

t.test('SQLite, one controller: every write to what a server shows is in its next listing', async (t) => {
  const cloud = await startCloud()
  t.teardown(() => cloud.close())
  await scenario(t, cloud, [{ name: 'the controller', rest: cloud.s.controller.rest!.origin, grpc: cloud.s.address, token: cloud.s.adminToken }])
})

t.test('PostgreSQL, two controllers: views kept by one follow the writes made through the other', async (t) => {
  let cloud: TestCloud | undefined
  let b: TestController | undefined
  t.teardown(async () => {
    await b?.close()
    await cloud?.close()
  })
  // A database of the run's shared cluster (or of this process's own, run alone outside tap).
  const url = await (await sharedPostgres()).createDatabase()
  cloud = await startCloud({ controller: { databaseUrl: url } })
  b = await startController({ databaseUrl: url, bootstrap: { openrcPath: `${cloud.s.dataDir}/admin-openrc` } })
  // Both controllers read (and keep) before every write and after it; only the first writes.
  await scenario(t, cloud, [
    { name: 'the writing controller', rest: cloud.s.controller.rest!.origin, grpc: cloud.s.address, token: cloud.s.adminToken },
    // Its own token: each controller signs its own (same admin, same project).
    { name: 'the other controller', rest: b.controller.rest!.origin, grpc: b.address, token: b.adminToken },
  ])
})

t.test('kept listings: the next GET after any write shows it, per caller, and a revoked token is refused', async (t) => {
  const cloud = await startCloud()
  t.teardown(() => cloud.close())
  const { s } = cloud
  const origin = s.controller.rest!.origin
  const token = s.adminToken
  const servers = client(ServersClient, s.address)
  t.teardown(() => servers.close())
  const ok = async (method: string, p: string, body?: unknown, tok = token) => {
    const r = await rest(origin, tok, method, p, body)
    if (r.status >= 300) throw new Error(`${method} ${p} answered ${r.status}: ${JSON.stringify(r.body)}`)
    return r.body
  }
  const ids: string[] = []
  for (const name of ['one', 'two']) ids.push((await ok('POST', '/compute/v2.1/servers', { server: { name, imageRef: cloud.image.id, flavorRef: cloud.flavor.id, networks: [{ uuid: cloud.network.id }] } })).server.id)
  await eventually(async () => (await ok('GET', '/compute/v2.1/servers/detail')).servers.filter((x: Json) => ids.includes(x.id) && x.status === 'ACTIVE').length === 2 || undefined, 60_000, 'both servers ACTIVE')

  /** Every way to list, each asked once (no waiting): the name each shows for server `id`. */
  const names = async (id: string, tok = token) => {
    const detail = (await ok('GET', '/compute/v2.1/servers/detail', undefined, tok)).servers.find((x: Json) => x.id === id)
    const brief = (await ok('GET', '/compute/v2.1/servers', undefined, tok)).servers.find((x: Json) => x.id === id)
    const grpc = (await call<ListServersResponse>(servers, 'listServers', {}, tok)).servers!.find((x) => x.id === id)
    return [detail?.name, brief?.name, grpc?.name]
  }
  t.same(await names(ids[0]!), ['one', 'one', 'one'], 'listed')
  const first = await fetch(`${origin}/compute/v2.1/servers/detail`, { headers: { 'x-auth-token': token } }).then((r) => r.text())
  const again = await fetch(`${origin}/compute/v2.1/servers/detail`, { headers: { 'x-auth-token': token } }).then((r) => r.text())
  t.equal(again, first, 'an unchanged listing answers the same')

  await ok('PUT', `/compute/v2.1/servers/${ids[0]}`, { server: { name: 'renamed' } })
  t.same(await names(ids[0]!), ['renamed', 'renamed', 'renamed'], 'a rename is in the very next listing of each kind')
  await ok('POST', `/compute/v2.1/servers/${ids[1]}/metadata`, { metadata: { tier: 'back' } })
  const v247 = await fetch(`${origin}/compute/v2.1/servers/detail`, { headers: { 'x-auth-token': token, 'openstack-api-version': 'compute 2.47' } }).then((r) => r.json() as Promise<Json>)
  t.same(v247.servers.find((x: Json) => x.id === ids[1]).metadata, { tier: 'back' }, 'metadata is in the next listing of another microversion')
  t.ok(v247.servers.every((x: Json) => x.flavor.original_name === cloud.flavor.name), 'and in its shape (2.47 embeds the flavor)')

  if (!testingOnPostgres()) {
    // A write the controller did not make: another connection to its database file (the triggers still bump the revision).
    const other = new Database(join(s.dataDir, 'strato.db'))
    try {
      other.pragma('busy_timeout = 5000')
      other.prepare('UPDATE servers SET name = ? WHERE uuid = ?').run('written elsewhere', ids[0])
    } finally {
      other.close()
    }
    t.same(await names(ids[0]!), ['written elsewhere', 'written elsewhere', 'written elsewhere'], "another connection's write is in the very next listing")
    // A write on the controller's own connection that Kysely never sees (raw SQL beside it).
    sqliteHandle(s.controller.db)!.prepare('UPDATE servers SET name = ? WHERE uuid = ?').run('written beside kysely', ids[0])
    t.same(await names(ids[0]!), ['written beside kysely', 'written beside kysely', 'written beside kysely'], "a raw write on the controller's own connection is in the very next listing")
  }

  await ok('DELETE', `/compute/v2.1/servers/${ids[1]}`)
  const after = (await ok('GET', '/compute/v2.1/servers/detail')).servers.find((x: Json) => x.id === ids[1])
  t.ok(after === undefined || after['OS-EXT-STS:task_state'] === 'deleting', `a delete is in the very next listing (${after ? after['OS-EXT-STS:task_state'] : 'gone'})`)

  // Each caller its own listing: a member of the same project (no host attributes), another project (none of these servers).
  const reader = await member(s, 'views-member', (await s.login(s.openrc.OS_USERNAME!, s.openrc.OS_PASSWORD!, { project: s.openrc.OS_PROJECT_NAME! })).body!.project!.id, s.openrc.OS_PROJECT_NAME!, 'member')
  const mine = (await ok('GET', '/compute/v2.1/servers/detail', undefined, reader.token)).servers.find((x: Json) => x.id === ids[0])
  t.equal(mine?.name, testingOnPostgres() ? 'renamed' : 'written beside kysely', 'a member of the project lists its servers')
  t.notOk(mine && 'OS-EXT-SRV-ATTR:host' in mine, "without the admin's host attributes")
  const admin = (await ok('GET', '/compute/v2.1/servers/detail')).servers.find((x: Json) => x.id === ids[0])
  t.ok('OS-EXT-SRV-ATTR:host' in admin, 'the admin still gets them')
  const stranger = await tenant(s, 'views-stranger')
  t.same((await ok('GET', '/compute/v2.1/servers/detail', undefined, stranger.token)).servers, [], "another project's member lists none of them")
  t.same((await call<ListServersResponse>(servers, 'listServers', {}, stranger.token)).servers ?? [], [], 'nor over gRPC')

  // A token that listed (its listing kept), then revoked: refused.
  const own = await s.login(s.openrc.OS_USERNAME!, s.openrc.OS_PASSWORD!, { project: s.openrc.OS_PROJECT_NAME! })
  t.equal((await rest(origin, own.token, 'GET', '/compute/v2.1/servers/detail')).status, 200, 'a second token lists')
  const revoke = await fetch(`${origin}/identity/v3/auth/tokens`, { method: 'DELETE', headers: { 'x-auth-token': token, 'x-subject-token': own.token } })
  t.equal(revoke.status, 204, 'revoked')
  t.equal((await rest(origin, own.token, 'GET', '/compute/v2.1/servers/detail')).status, 401, 'the revoked token is refused a kept listing')
  t.equal((await rest(origin, own.token, 'GET', '/compute/v2.1/servers')).status, 401, 'and the brief one')
  await t.rejects(call(servers, 'listServers', {}, own.token), { code: 16 }, 'and over gRPC (UNAUTHENTICATED)')
  t.equal((await rest(origin, token, 'GET', '/compute/v2.1/servers/detail')).status, 200, 'the other token still lists')
})

/** A cloud for one test (closed at its end), its REST origin, the admin token, and `ok`: a REST call that must succeed (its body). */
async function restCloud(t: Test) {
  const cloud = await startCloud()
  t.teardown(() => cloud.close())
  const { s, c } = cloud
  const origin = s.controller.rest!.origin
  const token = s.adminToken
  const ok = async (method: string, p: string, body?: unknown, tok = token) => {
    const r = await rest(origin, tok, method, p, body)
    if (r.status >= 300) throw new Error(`${method} ${p} answered ${r.status}: ${JSON.stringify(r.body)}`)
    return r.body
  }
  return { cloud, s, c, origin, token, ok }
}

t.test('kept network listings: the next GET after any write shows it, per caller', async (t) => {
  const { cloud, s, c, origin, token, ok } = await restCloud(t)
  /** The network `id` as REST and gRPC list it, each asked once (no waiting). */
  const listed = async (id: string, tok = token) => [
    (await ok('GET', '/network/v2.0/networks', undefined, tok)).networks.find((n: Json) => n.id === id),
    (await call<ListNetworksResponse>(c.networks, 'listNetworks', {}, tok)).networks!.find((n) => n.id === id),
  ] as const
  const net = (await ok('POST', '/network/v2.0/networks', { network: { name: 'kept-net' } })).network
  let [r, g] = await listed(net.id)
  t.equal(r?.name, 'kept-net', 'a new network is in the next REST listing')
  t.equal(g?.name, 'kept-net', 'and the next gRPC one')
  t.same(r.subnets, [], 'without subnets')
  ;[r, g] = await listed(net.id)
  const same = await fetch(`${origin}/network/v2.0/networks`, { headers: { 'x-auth-token': token } }).then((x) => x.text())
  t.equal(await fetch(`${origin}/network/v2.0/networks`, { headers: { 'x-auth-token': token } }).then((x) => x.text()), same, 'an unchanged listing answers the same')

  await ok('PUT', `/network/v2.0/networks/${net.id}`, { network: { name: 'kept-renamed' } })
  ;[r, g] = await listed(net.id)
  t.equal(r?.name, 'kept-renamed', 'a rename is in the very next REST listing')
  t.equal(g?.name, 'kept-renamed', 'and gRPC one')
  const sub = (await ok('POST', '/network/v2.0/subnets', { subnet: { network_id: net.id, ip_version: 4, cidr: '10.62.0.0/24' } })).subnet
  ;[r, g] = await listed(net.id)
  t.same(r?.subnets, [sub.id], 'a new subnet is in the very next listing')
  t.same(g?.subnets, [sub.id], 'over gRPC too')
  const filtered = (await ok('GET', '/network/v2.0/networks?name=kept-renamed&fields=id&fields=name')).networks
  t.same(filtered, [{ id: net.id, name: 'kept-renamed' }], 'filters and fields are the query\'s, not a kept answer\'s')

  // Another project's member sees its own and shared networks, not the admin's project network.
  const stranger = await tenant(s, 'kept-stranger')
  ;[r, g] = await listed(net.id, stranger.token)
  t.equal(r, undefined, "another project's member does not list it")
  t.equal(g, undefined, 'nor over gRPC')
  t.ok((await ok('GET', '/network/v2.0/networks', undefined, stranger.token)).networks.some((n: Json) => n.id === cloud.network.id), 'but lists the shared network')

  if (!testingOnPostgres()) {
    const other = new Database(join(s.dataDir, 'strato.db'))
    try {
      other.pragma('busy_timeout = 5000')
      other.prepare('UPDATE networks SET name = ? WHERE id = ?').run('written elsewhere', net.id)
    } finally {
      other.close()
    }
    ;[r, g] = await listed(net.id)
    t.equal(r?.name, 'written elsewhere', "another connection's write is in the very next REST listing")
    t.equal(g?.name, 'written elsewhere', 'and gRPC one')
    sqliteHandle(s.controller.db)!.prepare('UPDATE networks SET name = ? WHERE id = ?').run('written beside kysely', net.id)
    ;[r, g] = await listed(net.id)
    t.equal(r?.name, 'written beside kysely', "a raw write on the controller's own connection is in the very next REST listing")
    t.equal(g?.name, 'written beside kysely', 'and gRPC one')
  }
  await ok('DELETE', `/network/v2.0/subnets/${sub.id}`)
  await ok('DELETE', `/network/v2.0/networks/${net.id}`)
  ;[r, g] = await listed(net.id)
  t.equal(r, undefined, 'a deleted network is gone from the very next listing')
  t.equal(g, undefined, 'over gRPC too')
})

t.test('kept listings of subnets, ports, security groups and rules, routers and floating IPs: the next GET after a write shows it, per caller', async (t) => {
  const { cloud, s, c, origin, token, ok } = await restCloud(t)
  const grpc: Record<string, (tok: string) => Promise<Json[]>> = {
    subnets: async (tok) => (await call<Json>(c.subnets, 'listSubnets', {}, tok)).subnets ?? [],
    ports: async (tok) => (await call<Json>(c.ports, 'listPorts', {}, tok)).ports ?? [],
    'security-groups': async (tok) => (await call<Json>(c.securityGroups, 'listSecurityGroups', {}, tok)).securityGroups ?? [],
    'security-group-rules': async (tok) => (await call<Json>(c.securityGroups, 'listSecurityGroupRules', {}, tok)).securityGroupRules ?? [],
  }
  const net = (await ok('POST', '/network/v2.0/networks', { network: { name: 'kept-lists' } })).network
  const stranger = await tenant(s, 'kept-lists-stranger')
  /** Each kind: its collection, how to make one, and a field a write changes (checked in the next listing). */
  const kinds: Array<{ path: string; key: string; make: () => Promise<Json>; field: string; value: unknown }> = [
    { path: 'subnets', key: 'subnet', make: async () => (await ok('POST', '/network/v2.0/subnets', { subnet: { network_id: net.id, ip_version: 4, cidr: '10.63.0.0/24', name: 'kept-sub' } })).subnet, field: 'name', value: 'kept-sub-2' },
    { path: 'ports', key: 'port', make: async () => (await ok('POST', '/network/v2.0/ports', { port: { network_id: net.id, name: 'kept-port' } })).port, field: 'name', value: 'kept-port-2' },
    { path: 'security-groups', key: 'security_group', make: async () => (await ok('POST', '/network/v2.0/security-groups', { security_group: { name: 'kept-sg' } })).security_group, field: 'name', value: 'kept-sg-2' },
    { path: 'routers', key: 'router', make: async () => (await ok('POST', '/network/v2.0/routers', { router: { name: 'kept-router' } })).router, field: 'name', value: 'kept-router-2' },
    { path: 'floatingips', key: 'floatingip', make: async () => (await ok('POST', '/network/v2.0/floatingips', { floatingip: { floating_network_id: cloud.network.id } })).floatingip, field: 'description', value: 'kept-fip-2' },
  ]
  const plural = (path: string) => (path === 'floatingips' ? 'floatingips' : path.replace(/-/g, '_'))
  for (const k of kinds) {
    const made = await k.make()
    const find = async (tok = token) => (await ok('GET', `/network/v2.0/${k.path}`, undefined, tok))[plural(k.path)].find((x: Json) => x.id === made.id)
    t.ok(await find(), `a new ${k.key} is in the very next REST listing`)
    if (grpc[k.path]) t.ok((await grpc[k.path]!(token)).some((x) => x.id === made.id), `and the next gRPC one (${k.key})`)
    const once = await fetch(`${origin}/network/v2.0/${k.path}`, { headers: { 'x-auth-token': token } }).then((x) => x.text())
    t.equal(await fetch(`${origin}/network/v2.0/${k.path}`, { headers: { 'x-auth-token': token } }).then((x) => x.text()), once, `an unchanged ${k.key} listing answers the same`)
    await ok('PUT', `/network/v2.0/${k.path}/${made.id}`, { [k.key]: { [k.field]: k.value } })
    t.equal((await find())?.[k.field], k.value, `an update of the ${k.key} is in the very next listing`)
    t.equal(await find(stranger.token), undefined, `another project's member does not list the ${k.key}`)
    if (grpc[k.path]) t.notOk((await grpc[k.path]!(stranger.token)).some((x) => x.id === made.id), `nor over gRPC (${k.key})`)
    await ok('DELETE', `/network/v2.0/${k.path}/${made.id}`)
    t.equal(await find(), undefined, `a deleted ${k.key} is gone from the very next listing`)
  }
  // Rules: a rule added to a group is in the very next listing of rules (and of groups), a deleted one gone.
  const sg = (await ok('POST', '/network/v2.0/security-groups', { security_group: { name: 'kept-rules' } })).security_group
  const before = await fetch(`${origin}/network/v2.0/security-group-rules`, { headers: { 'x-auth-token': token } }).then((x) => x.text())
  const rule = (await ok('POST', '/network/v2.0/security-group-rules', { security_group_rule: { security_group_id: sg.id, direction: 'ingress', protocol: 'tcp', port_range_min: 22, port_range_max: 22 } })).security_group_rule
  t.not(await fetch(`${origin}/network/v2.0/security-group-rules`, { headers: { 'x-auth-token': token } }).then((x) => x.text()), before, 'a new rule changes the next listing of rules')
  t.ok((await ok('GET', '/network/v2.0/security-group-rules')).security_group_rules.some((r: Json) => r.id === rule.id), 'which holds it')
  t.ok((await grpc['security-group-rules']!(token)).some((r) => r.id === rule.id), 'over gRPC too')
  t.ok((await ok('GET', '/network/v2.0/security-groups')).security_groups.find((g: Json) => g.id === sg.id).security_group_rules.some((r: Json) => r.id === rule.id), 'and its group lists it')
  await ok('DELETE', `/network/v2.0/security-group-rules/${rule.id}`)
  t.notOk((await ok('GET', '/network/v2.0/security-group-rules')).security_group_rules.some((r: Json) => r.id === rule.id), 'a deleted rule is gone from the very next listing')
  // A member's first listing of groups makes the project's default group (Neutron's first use), and lists it.
  t.ok((await ok('GET', '/network/v2.0/security-groups', undefined, stranger.token)).security_groups.some((g: Json) => g.name === 'default' && g.project_id === stranger.projectId), 'a project lists its default group from the first listing')
})

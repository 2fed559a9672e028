// Kept server views (issue 18's bench:api): a controller keeps each server's view, its JSON and its
// gRPC message while the database's view_revision of the server stays the same, and the triggers of
// migration 0018 move that revision with every write to what the view shows. Every such write —
// the server's own fields and state, its metadata, its network's name, its security groups (renamed,
// or taken off its port), a floating IP associated and released — shows in the next listing and show,
// through REST and gRPC: on SQLite in one controller, and on PostgreSQL in a second controller whose
// views were kept before the first controller wrote.
import t, { type Test } from 'tap'
import { startCloud, type TestCloud } from '../../helpers/cloud.js'
import { startController, type TestController } from '../../helpers/controller.js'
import { startPostgres, type PostgresCluster } from '../../helpers/postgres.js'
import { eventually } from '../../helpers/agents.js'
import { call, client } from '../../helpers/grpc.js'
import { ServersClient, type ListServersResponse } from '../../../proto/gen/strato/compute/v1/servers.js'

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
  let pg: PostgresCluster | undefined
  let cloud: TestCloud | undefined
  let b: TestController | undefined
  t.teardown(async () => {
    await b?.close()
    await cloud?.close()
    pg?.stop()
  })
  pg = await startPostgres()
  const url = await pg.createDatabase('strato_views')
  cloud = await startCloud({ controller: { databaseUrl: url } })
  b = await startController({ databaseUrl: url, bootstrap: { openrcPath: `${cloud.s.dataDir}/admin-openrc` } })
  // Both controllers read (and keep) before every write and after it; only the first writes.
  await scenario(t, cloud, [
    { name: 'the writing controller', rest: cloud.s.controller.rest!.origin, grpc: cloud.s.address, token: cloud.s.adminToken },
    // Its own token: each controller signs its own (same admin, same project).
    { name: 'the other controller', rest: b.controller.rest!.origin, grpc: b.address, token: b.adminToken },
  ])
})

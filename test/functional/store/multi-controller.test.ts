// Two controllers (in-process, as postgres.test.ts runs them) on one PostgreSQL database (of the tap
// run's shared cluster: nothing here stops PostgreSQL, test/helpers/controller-pair.ts) and one
// nats-server, with fake-driver agents: what one controller kept in its memory is shared through the
// database and NATS. A token issued by A works on B; revoked on A, it is refused on B within 1 s (the
// NATS notice), and without the notice once B polls; keys rotated on A (once, under the lock, even
// when both rotate) are used by B, which reads them again when a token names a key it does not know;
// a host heartbeating to A is up on B; a server created via A is seen and deleted via B; A stops and
// B keeps serving, the agents' work going on through it.
import t from 'tap'
import { inProcessPair, type ControllerPair } from '../../helpers/controller-pair.js'
import type { TestController } from '../../helpers/controller.js'
import { startNats, type NatsServer } from '../../helpers/nats.js'
import { eventually, startAgent, type TestAgent } from '../../helpers/agents.js'
import { provision, serverGone, serverWaiter, type CloudClients, type Provisioned } from '../../helpers/cloud.js'
import { call, failure, status } from '../../helpers/grpc.js'
import { fakeHost } from '../compute/fake-hosts.js'
import { failsWith, freshHome, openrcEnv, removeHomes, succeeds } from '../cli/cli.js'
import type { ConfigOverrides } from '../../../controller/config.js'
import type { ListProjectsResponse } from '../../../proto/gen/strato/identity/v1/identity.js'
import type { ListHostsResponse } from '../../../proto/gen/strato/compute/v1/hosts.js'
import type { CreateServerResponse } from '../../../proto/gen/strato/compute/v1/servers.js'

let pair: ControllerPair<TestController>
let nats: NatsServer
let a: TestController
let b: TestController
let ca: CloudClients
let cb: CloudClients
let cloud: Provisioned
const agents: TestAgent[] = []
/** Admin tokens of each controller (issued again once rotations retired the keys of the first ones). */
let tokA: string
let tokB: string

const overrides = (): ConfigOverrides => ({
  natsUrl: nats.url,
  hosts: { heartbeatIntervalMs: 200, missedHeartbeats: 5, castAckWaitMs: 3_000 },
  servers: { castRetryMs: 200, agentCallTimeoutMs: 5_000 },
  // B polls only when a test says so: what it learns before then came by NATS or by its own re-read.
  token: { revocationPollMs: 0 },
})

t.before(async () => {
  nats = await startNats()
  // Images are files under a controller's data dir: B sees A's, as a shared file system would give them.
  pair = await inProcessPair('strato_multi', overrides())
  ;({ a, b, ca, cb } = pair)
  tokA = a.adminToken
  tokB = b.adminToken
  // Agents are given both controllers (images come from the first that can be reached).
  for (const host of ['mc1', 'mc2']) agents.push(await startAgent(nats.url, host, { powerSyncIntervalMs: 200, shutdownTimeoutMs: 2_000, controllerAddress: `grpc://${a.address},grpc://${b.address}` }))
  await a.controller.hosts.discover()
  cloud = await provision(ca, tokA)
})
t.teardown(async () => {
  for (const x of agents) await x.stop().catch(() => {})
  await pair?.close()
  await nats?.stop()
  removeHomes()
})

/** Whether `token` is accepted by `on` for an authenticated call (ListProjects); the refusal otherwise. */
const accepted = (on: TestController, token: string) =>
  call<ListProjectsResponse>(on.clients.projects, 'listProjects', {}, token).then(
    () => true as const,
    (e: { code?: number; details?: string }) => (e.code === status.UNAUTHENTICATED ? (e.details ?? 'refused') : Promise.reject(e)),
  )
const login = async (on: TestController) => (await on.login(on.openrc.OS_USERNAME!, on.openrc.OS_PASSWORD!, { project: on.openrc.OS_PROJECT_NAME! })).token

t.test('a token issued by A is valid on B, and the other way round', async (t) => {
  t.equal(await accepted(b, await login(a)), true)
  t.equal(await accepted(a, await login(b)), true)
})

t.test('signing keys: rotated on A, used by B', async (t) => {
  const tokens = b.clients.tokens
  // A says nothing (as if the NATS notice were lost), and B does not poll: only B's re-read on an unknown kid can work.
  const notify = a.controller.auth.onChange
  a.controller.auth.onChange = () => {}
  try {
    for (let i = 0; i < 3; i++) await call(a.clients.tokens, 'rotateSigningKeys', {}, await login(a))
  } finally {
    a.controller.auth.onChange = notify
  }
  const fresh = await login(a)
  const kid = JSON.parse(Buffer.from(fresh.split('.')[0]!, 'base64url').toString()).kid as string
  t.equal(b.controller.auth.tokens.namesUnknownKey(fresh), true, `B has not read key ${kid} yet`)
  // B re-reads on an unknown kid at most once a second (KeyRepository's minRefreshMs): its start-up read may be
  // more recent than that here, so the token is accepted at the first re-read the limit allows.
  t.equal(await eventually(async () => (await accepted(b, fresh)) === true || undefined, 10_000, "B to re-read the keys and accept the token signed with A's new primary"), true, 'B reads the keys once and accepts the token signed with A\'s new primary')
  t.same(b.controller.auth.tokens.namesUnknownKey(fresh), false)
  const forged = `${Buffer.from(JSON.stringify({ alg: 'EdDSA', kid: 'ffffffffffffffff', typ: 'JWT' })).toString('base64url')}.${fresh.split('.')[1]}.${fresh.split('.')[2]}`
  t.match(await accepted(b, forged), /unknown or retired key/, 'a kid nobody made is refused after the re-read')

  // With the notice: B reads the keys as soon as A rotated them.
  const r = await call<{ primaryKeyId: string; activeKeyIds: string[] }>(tokens, 'rotateSigningKeys', {}, await login(b))
  await eventually(() => a.controller.auth.tokens.namesUnknownKey(`${Buffer.from(JSON.stringify({ alg: 'EdDSA', kid: r.primaryKeyId })).toString('base64url')}.e30.x`) === false, 5_000, 'A reads the keys B rotated')
  t.equal(await accepted(a, await login(b)), true, 'A accepts tokens B signs with its new primary')
  const old = await call<{ primaryKeyId: string }>(tokens, 'rotateSigningKeys', {}, await login(b))
  t.not(old.primaryKeyId, r.primaryKeyId)

  // Both run the same rotation at once: it happens once.
  const primary = old.primaryKeyId
  const both = await Promise.all([a.controller.auth.rotateKeys(primary), b.controller.auth.rotateKeys(primary)])
  t.same(both.map((x) => x.rotated).sort(), [false, true], 'one of the two rotations ran, the other saw it done')
  t.equal(both[0].primaryKeyId, both[1].primaryKeyId, 'both end with the same primary')
  t.equal(both[0].activeKeyIds.length, 3, 'max_active_keys kept')
  const rows = await a.controller.db.selectFrom('signing_keys').select('position').orderBy('position').execute()
  t.equal(rows.length, 3)
  t.equal(rows[0]!.position, 0, 'a staged key')
  // The rotations retired the keys of the first admin tokens.
  t.match(await accepted(b, a.adminToken), /unknown or retired key/, 'a token of a retired key is refused')
  tokA = await login(a)
  tokB = await login(b)
})

t.test('revocation: revoked through A, refused by B within 1 s; without the notice, once B polls', async (t) => {
  const token = await login(a)
  t.equal(await accepted(b, token), true)
  await call(a.clients.tokens, 'revokeToken', { token }, tokA)
  const refusal = await eventually(() => accepted(b, token).then((r) => (r === true ? undefined : r)), 1_000, 'B refusing the token A revoked')
  t.match(refusal, /revoked/)

  // The notice is lost: B learns the event from the table once it polls.
  const quiet = await login(a)
  t.equal(await accepted(b, quiet), true)
  const notify = a.controller.auth.onChange
  a.controller.auth.onChange = () => {}
  try {
    await call(a.clients.tokens, 'revokeToken', { token: quiet }, tokA)
  } finally {
    a.controller.auth.onChange = notify
  }
  t.match(await accepted(a, quiet), /revoked/, 'A refuses it at once')
  b.controller.auth.startPolling(200)
  t.match(await eventually(() => accepted(b, quiet).then((r) => (r === true ? undefined : r)), 10_000, 'B refusing the token after polling'), /revoked/)
})

t.test('host liveness: a host heartbeating to A is up on B', async (t) => {
  const h = fakeHost('mc-beat')
  await a.controller.hosts.announce(h)
  await a.controller.hosts.discover()
  // Its heartbeats go to A only (as the shared event consumer may deliver them).
  const beating = setInterval(() => void a.controller.hosts.heartbeat('mc-beat').catch(() => {}), 100)
  t.teardown(() => clearInterval(beating))
  const onB = async () => (await call<ListHostsResponse>(cb.hosts, 'listHosts', {}, tokB)).hosts.find((x) => x.host === 'mc-beat')
  t.equal((await eventually(async () => ((await onB())?.state === 'up' ? onB() : undefined), 5_000, 'mc-beat up in B\'s host list'))!.state, 'up')
  await eventually(() => b.controller.hosts.isUp('mc-beat'), 5_000, 'B\'s scheduler sees mc-beat up')
  const row = await b.controller.db.selectFrom('compute_hosts').select('last_heartbeat_at').where('host', '=', 'mc-beat').executeTakeFirstOrThrow()
  t.ok(row.last_heartbeat_at, 'the heartbeat is in the database')
  clearInterval(beating)
  await eventually(async () => (await onB())?.state === 'down', 10_000, 'mc-beat down on B once A stops hearing it')
  // No agent builds there: keep the servers below off it.
  await a.controller.hosts.update('mc-beat', { enabled: false, disabledReason: 'no agent behind it' })
  // The agents' hosts (their heartbeats reach either controller) are up on both.
  for (const c of [a, b]) await eventually(() => ['mc1', 'mc2'].every((x) => c.controller.hosts.isUp(x)), 5_000, 'agent hosts up')
})

const create = async (c: CloudClients, token: string, name: string) =>
  (await call<CreateServerResponse>(c.servers, 'createServer', { name, flavorRef: 'm1.nano', imageRef: 'cirros', networks: [{ uuid: cloud.network.id }] }, token)).servers![0]!

t.test('a server created via A is seen and deleted via B', async (t) => {
  const s = await create(ca, tokA, 'made-on-a')
  const active = await serverWaiter(cb, tokB)(s.id, (x) => x.status === 'ACTIVE', tokB, 30_000, 'made-on-a ACTIVE, seen on B')
  t.ok(['mc1', 'mc2'].includes(active.host ?? ''), `built by an agent (on ${active.host})`)
  await call(cb.servers, 'deleteServer', { id: s.id }, tokB)
  await eventually(() => serverGone(ca, s.id, tokA), 30_000, 'made-on-a gone, seen on A')
  // The allocation goes right after the row (cast-results.ts): wait for it.
  t.ok(await eventually(async () => (await a.controller.placement.listAllocations({ consumerUuid: s.id })).length === 0, 10_000, 'its allocation released'), 'its allocation is released')
})

t.test('orphan allocations: a start-up release leaves another controller\'s fresh claim alone', async (t) => {
  const consumer = '00000000-0000-4000-8000-00000000c1a1'
  const host = await a.controller.db.selectFrom('compute_hosts').select('uuid').where('host', '=', 'mc1').executeTakeFirstOrThrow()
  const ts = new Date().toISOString()
  // A claim with no server yet: a create in progress on A, between its claim and its record.
  await a.controller.db.insertInto('allocations').values({ consumer_uuid: consumer, provider_uuid: host.uuid, resource_class: 'VCPU', used: 1, project_id: 'p', user_id: 'u', created_at: ts }).execute()
  t.equal(await b.controller.servers.releaseOrphanAllocations(), 0, 'within the grace period it is not an orphan')
  await a.controller.db.updateTable('allocations').set({ created_at: new Date(Date.now() - 3_600_000).toISOString() }).where('consumer_uuid', '=', consumer).execute()
  t.equal(await b.controller.servers.releaseOrphanAllocations(), 1, 'claimed long ago with no server: released')
  t.same(await a.controller.placement.listAllocations({ consumerUuid: consumer }), [])
})

t.test('A stops: B keeps serving, and the agents\' work goes on through it', async (t) => {
  const before = await login(a)
  const s1 = await create(ca, tokA, 'before-stop')
  await serverWaiter(cb, tokB)(s1.id, (x) => x.status === 'ACTIVE', tokB, 30_000, 'before-stop ACTIVE')
  await a.controller.stop()
  t.equal(await accepted(b, before), true, 'a token A issued still works on B')
  const s2 = await create(cb, before, 'after-stop')
  const active = await serverWaiter(cb, tokB)(s2.id, (x) => x.status === 'ACTIVE', tokB, 30_000, 'after-stop ACTIVE through B alone')
  t.equal(active.status, 'ACTIVE')
  for (const id of [s1.id, s2.id]) await call(cb.servers, 'deleteServer', { id }, tokB)
  for (const id of [s1.id, s2.id]) await eventually(() => serverGone(cb, id, tokB), 30_000, `server ${id} gone`)
  for (const id of [s1.id, s2.id]) t.ok(await eventually(async () => (await b.controller.placement.listAllocations({ consumerUuid: id })).length === 0, 10_000, `allocation of ${id} released`), 'nothing left allocated')
  const dead = await failure(call(a.clients.projects, 'listProjects', {}, before))
  t.equal(dead.code, status.UNAVAILABLE, 'A is gone')

  // The CLI given both: A cannot be reached, B answers.
  const both = openrcEnv({ ...a.openrc, OS_AUTH_URL: `grpc://${a.address},grpc://${b.address}` }, freshHome())
  t.match(await succeeds(t, 'project list -f value -c Name', both), /^admin$/m, 'strato moves on to B')
  const none = await failsWith(t, 'project list', 1, openrcEnv({ ...a.openrc, OS_AUTH_URL: `grpc://${a.address},grpc://127.0.0.1:1` }, freshHome()))
  t.match(none.stderr, new RegExp(`cannot reach the Strato API at any of ${a.address.replace(/\./g, '\\.')}, 127\\.0\\.0\\.1:1`), 'every controller listed was tried')
})

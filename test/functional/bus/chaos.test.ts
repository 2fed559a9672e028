// Chaos: two controllers (their own processes) on one PostgreSQL database (of the tap run's shared
// cluster, test/helpers/postgres.ts: only controllers and NATS nodes are killed here) and a 3-node NATS cluster
// (JetStream, 3 replicas), fake-driver agents (their own processes), and a load loop of workers each
// taking servers through create → stop → start → reboot → delete through either controller, with
// creates and deletes of one worker overlapping another's actions. Under that load: controller A is
// killed with SIGKILL, then the cast stream's leader node; then both come back. At the end every
// request reached its final state; no cast was lost (each step ended) or done twice (each cast
// finished once in the agents' logs, each server built once); placement holds exactly the live
// servers' flavors (no allocation leaked) and no provider more than its capacity; the streams have
// 3 current replicas again; and a token revoked through A is refused by B.
//
// `npm test` runs the quick version; `npm run test:chaos` (STRATO_CHAOS=full) more agents and
// workers, and more rounds after each fault.
import t, { type Test } from 'tap'
import { connect, type NatsConnection } from '@nats-io/transport-node'
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream'
import { sharedPostgres } from '../../helpers/postgres.js'
import { processPair, type ControllerPair } from '../../helpers/controller-pair.js'
import { startNatsCluster, type NatsCluster } from '../../helpers/nats.js'
import type { ControllerProcess } from '../../helpers/controller-process.js'
import { spawnAgent, type AgentProcess } from '../../helpers/agent-process.js'
import { eventually } from '../../helpers/agents.js'
import { provision, type CloudClients, type Provisioned } from '../../helpers/cloud.js'
import { call, client, status, type Decoded } from '../../helpers/grpc.js'
import { parseOpenrc } from '../../helpers/controller.js'
import { openrcToken } from '../../../cli/stack/demo.js'
import { CAST_STREAM, EVENT_STREAM } from '../../../proto/subjects.js'
import { ProjectsClient, TokensClient } from '../../../proto/gen/strato/identity/v1/identity.js'
import type { CreateServerResponse, ListServersResponse, Server } from '../../../proto/gen/strato/compute/v1/servers.js'
import type { DiscoverHostsResponse, ListHostsResponse } from '../../../proto/gen/strato/compute/v1/hosts.js'
import type { GetInventoriesResponse, ListAllocationsResponse } from '../../../proto/gen/strato/placement/v1/placement.js'

const FULL = process.env.STRATO_CHAOS === 'full'
const AGENTS = FULL ? 4 : 2
/** Servers in flight at once (the provider network's pool has 11 addresses: workers + keepers stay under it). */
const WORKERS = FULL ? 7 : 3
const KEEPERS = 2
/** Lifecycle steps the workers complete (together) under each fault before the next. */
const STEPS_PER_PHASE = FULL ? 40 : 4
// Generous: 2 cores shared with other suites, processes started with tsx, a cluster electing leaders after a SIGKILL.
const SETTLE_MS = 240_000

let pair: ControllerPair<ControllerProcess>
let cluster: NatsCluster
let a: ControllerProcess
let b: ControllerProcess
const agents: AgentProcess[] = []
let ca: CloudClients
let cb: CloudClients
let cloud: Provisioned
let token: string
let nc: NatsConnection
let jsm: JetStreamManager

t.before(async () => {
  const t0 = Date.now()
  const since = (what: string) => t.comment(`${what} after ${Math.round((Date.now() - t0) / 1000)} s`)
  // PostgreSQL (the run's cluster; started here when this file is the first to ask) comes up while the NATS cluster does.
  const pg = sharedPostgres()
  cluster = await startNatsCluster().catch(async (err) => {
    await pg.catch(() => {})
    throw err
  })
  since('PostgreSQL and the NATS cluster up')
  const overrides = {
    // Hosts count as down after 2 min without a heartbeat: on 2 busy cores the cluster may take tens of seconds to
    // carry events again after a SIGKILL, and this test is about losing no work, not about noticing a dead host.
    hosts: { heartbeatIntervalMs: 500, missedHeartbeats: 240, castAckWaitMs: 5_000 },
    // A create cut off by the SIGKILL between its claim and its record leaves an allocation: released after the grace.
    servers: { castRetryMs: 500, agentCallTimeoutMs: 10_000, orphanAllocationGraceMs: 15_000 },
  }
  pair = await processPair('strato_chaos', cluster.url, overrides, await pg)
  ;({ a, b, ca, cb } = pair)
  since('controllers A and B up')
  token = a.adminToken
  for (let i = 1; i <= AGENTS; i++) {
    agents.push(await spawnAgent({
      host: `chaos${i}`, natsUrl: cluster.url, driver: 'fake',
      env: { STRATO_AGENT_CONTROLLER: `grpc://${a.address},grpc://${b.address}`, STRATO_AGENT_REQUEST_TIMEOUT_MS: '10000', STRATO_AGENT_POWER_SYNC_INTERVAL_MS: '1000', STRATO_AGENT_SHUTDOWN_TIMEOUT_MS: '2000' },
    }))
  }
  // The image and network are made while the agents start.
  ;[cloud] = await Promise.all([provision(ca, token), ...agents.map((x) => x.running(SETTLE_MS))])
  since('agents running')
  await eventually(async () => (await call<ListHostsResponse>(ca.hosts, 'listHosts', {}, token)).hosts.length === AGENTS, SETTLE_MS, 'every agent to announce itself')
  await call<DiscoverHostsResponse>(ca.hosts, 'discoverHosts', {}, token)
  nc = await connect({ ...cluster.connectOptions(), maxReconnectAttempts: -1, reconnectTimeWait: 250 })
  jsm = await jetstreamManager(nc)
  since('hosts mapped')
})
t.teardown(async () => {
  await nc?.close()
  for (const x of agents) await x.remove().catch(() => {})
  await pair?.close()
  await cluster?.stop()
})

// ---- requests through whichever controller answers ----------------------------------------------

/** Controllers the load may use (A leaves the list before its SIGKILL and comes back after its restart). */
const up = new Set<'a' | 'b'>(['a', 'b'])
const clients = () => [...up].map((k) => (k === 'a' ? ca : cb))
let turn = 0
/** What a client sees when the controller it talks to dies under it. */
const CUT_OFF = new Set([status.UNAVAILABLE, status.CANCELLED, status.DEADLINE_EXCEEDED, status.INTERNAL, status.UNKNOWN])

/**
 * Runs `fn` on a controller of the load (in turn), and on the next one when
 * the controller is cut off; `cutOff` says, after a cut-off request, whether
 * the retry's refusal means the first one was taken (it was committed before
 * the SIGKILL).
 */
async function api<T>(fn: (c: CloudClients) => Promise<T>, taken: (code: number) => boolean = () => false): Promise<T | undefined> {
  let cut = false
  const deadline = Date.now() + SETTLE_MS
  for (;;) {
    const cs = clients()
    const c = cs[turn++ % cs.length]!
    try {
      return await fn(c)
    } catch (err) {
      const code = (err as { code?: number }).code ?? -1
      if (cut && taken(code)) return undefined
      if (!CUT_OFF.has(code) || Date.now() > deadline) throw err
      cut = true
      await new Promise((r) => setTimeout(r, 250))
    }
  }
}

const getServer = (id: string) => api((c) => call<Server>(c.servers, 'getServer', { id }, token).catch((e: { code?: number }) => (e.code === status.NOT_FOUND ? undefined : Promise.reject(e))))

/** Polls the server (through either controller) until `pred` holds; `undefined` for a deleted server. */
async function until(id: string, pred: (s: Decoded<Server> | undefined) => boolean, what: string): Promise<Decoded<Server> | undefined> {
  let last: Decoded<Server> | undefined
  await eventually(async () => pred((last = await getServer(id))), SETTLE_MS, `server ${id} ${what} (last: ${last?.status}/${last?.taskState})`)
  return last
}

/** Creates `name`; a create cut off by a SIGKILL is looked up by its name before it is asked again. */
async function create(name: string): Promise<string> {
  for (;;) {
    const made = await api(async (c) => (await call<CreateServerResponse>(c.servers, 'createServer', { name, flavorRef: cloud.flavor.id, imageRef: cloud.image.id, networks: [{ uuid: cloud.network.id }] }, token)).servers[0]!.id).catch((e: { code?: number }) => (CUT_OFF.has(e.code ?? -1) ? undefined : Promise.reject(e)))
    if (made) return made
    const found = (await api((c) => call<ListServersResponse>(c.servers, 'listServers', { name }, token)))!.servers.find((s) => s.name === name)
    if (found) return found.id
  }
}

const idle = (s: Decoded<Server> | undefined, st: string) => s?.status === st && s.taskState === ''
/** An action whose first try was cut off: refused as already under way or done means it was taken. */
const TAKEN = (code: number) => code === status.FAILED_PRECONDITION || code === status.ABORTED || code === status.NOT_FOUND

// ---- the load ------------------------------------------------------------------------------------

let stopping = false
let steps = 0
const created: string[] = []
const deleted: string[] = []
const failures: string[] = []

async function worker(w: number): Promise<void> {
  for (let round = 0; !stopping; round++) {
    const id = await create(`chaos-w${w}-r${round}`)
    created.push(id)
    await until(id, (s) => idle(s, 'ACTIVE'), 'ACTIVE after its build')
    steps++
    for (const [method, req, want] of [['stopServer', { id }, 'SHUTOFF'], ['startServer', { id }, 'ACTIVE'], ['rebootServer', { id, type: 'SOFT' }, 'ACTIVE']] as const) {
      // The load is ending: the server goes (from whatever state it is in) without the rest of its round.
      if (stopping) break
      await api((c) => call(c.servers, method, req, token), TAKEN)
      await until(id, (s) => idle(s, want), `${want} after ${method}`)
      steps++
    }
    await api((c) => call(c.servers, 'deleteServer', { id }, token), TAKEN)
    await until(id, (s) => s === undefined, 'gone after its delete')
    deleted.push(id)
    steps++
  }
}

/** Waits until the workers have completed `n` more steps (the cloud works under the fault of the moment). */
async function progress(n: number, what: string): Promise<void> {
  const mark = steps
  await eventually(() => steps >= mark + n || failures.length > 0, SETTLE_MS, `${n} more steps ${what}`)
}

// ---- what the cluster and the agents say ---------------------------------------------------------

async function replicas(stream: string) {
  const info = await jsm.streams.info(stream)
  return { configured: info.config.num_replicas, leader: info.cluster?.leader ?? '', peers: (info.cluster?.replicas ?? []).map((r) => ({ name: r.name, current: r.current, offline: Boolean(r.offline) })) }
}

/** Waits until both streams have a leader and two current peers, one replica on each node. */
async function streamsWhole(t: Test, what: string) {
  for (const stream of [CAST_STREAM, EVENT_STREAM]) {
    const r = await eventually(async () => {
      const x = await replicas(stream).catch(() => undefined)
      return x && x.leader && x.peers.length === 2 && x.peers.every((p) => p.current && !p.offline) ? x : undefined
    }, SETTLE_MS, `${stream} to have a leader and 2 current peers ${what}`)
    t.equal(r.configured, 3, `${stream}: 3 replicas ${what}`)
    t.same(new Set([r.leader, ...r.peers.map((p) => p.name)]), new Set(cluster.nodes.map((n) => n.name)), `${stream}: one replica on each node ${what}`)
  }
}

/** The agents' "<action> finished" lines: what each cast did on a hypervisor. */
function finished(): { cast: string; instance: string; action: string }[] {
  return agents.flatMap((x) => x.log().split('\n').flatMap((line) => {
    if (!line.startsWith('{')) return []
    const j = JSON.parse(line) as { msg?: string; cast?: string; instance?: string; action?: string }
    return j.msg === `${j.action} finished` && j.cast ? [{ cast: j.cast, instance: j.instance ?? '', action: j.action ?? '' }] : []
  }))
}

const accepted = (c: { projects: InstanceType<typeof ProjectsClient> }, tok: string) =>
  call(c.projects, 'listProjects', {}, tok).then(() => true as const, (e: { code?: number; details?: string }) => (e.code === status.UNAUTHENTICATED ? (e.details ?? 'refused') : Promise.reject(e)))

// ---- the run -------------------------------------------------------------------------------------

t.test('the controllers make their streams with 3 replicas on the 3-node cluster', (t) => streamsWhole(t, 'at start'))

t.test('under load: SIGKILL of a controller, then of the cast stream\'s leader; both come back', async (t) => {
  const keepers = await Promise.all(Array.from({ length: KEEPERS }, (_, i) => create(`chaos-keep-${i}`)))
  created.push(...keepers)
  const load = Promise.all(Array.from({ length: WORKERS }, (_, w) => worker(w).catch((err) => {
    failures.push(`worker ${w}: ${(err as Error).message}`)
  })))
  await progress(WORKERS, 'before any fault')

  up.delete('a')
  await a.kill('SIGKILL')
  t.pass('controller A killed with SIGKILL')
  await progress(STEPS_PER_PHASE, 'through B alone')

  const victim = cluster.node((await replicas(CAST_STREAM)).leader)
  const killed = victim.name
  await victim.kill9()
  t.pass(`NATS node ${victim.name} (the leader of ${CAST_STREAM}) killed with SIGKILL`)
  await progress(STEPS_PER_PHASE, `with ${victim.name} down`)
  t.not((await eventually(async () => (await replicas(CAST_STREAM).catch(() => undefined))?.leader, SETTLE_MS, 'a new cast stream leader')), victim.name, 'another node leads the cast stream')

  await Promise.all([a.restart(), victim.start()])
  up.add('a')
  t.pass('controller A and the NATS node are back')
  await progress(STEPS_PER_PHASE, 'after the restarts')
  stopping = true
  await load
  t.same(failures, [], 'every worker\'s requests ended in their final states')
  await streamsWhole(t, `after ${killed} came back`)
  for (const id of keepers) t.ok(idle(await until(id, (s) => idle(s, 'ACTIVE'), 'ACTIVE (a keeper)'), 'ACTIVE'), `keeper ${id} is ACTIVE`)
  t.ok(deleted.length >= WORKERS, `${created.length} servers created, ${deleted.length} deleted, ${steps} steps done`)

  // No cast lost or done twice: each server built once, each cast finished once, each deleted server's guest deleted.
  const done = finished()
  const builds = new Map<string, number>()
  for (const f of done) if (f.action === 'build') builds.set(f.instance, (builds.get(f.instance) ?? 0) + 1)
  t.same(created.filter((id) => builds.get(id) !== 1).map((id) => [id, builds.get(id) ?? 0]), [], 'every server was built exactly once')
  t.same([...builds.keys()].filter((id) => !created.includes(id)), [], 'no guest was built for a server nobody created')
  const perCast = new Map<string, number>()
  for (const f of done) perCast.set(f.cast, (perCast.get(f.cast) ?? 0) + 1)
  t.same([...perCast].filter(([, n]) => n !== 1), [], `no cast finished twice (${perCast.size} casts)`)
  const deletedGuests = new Set(done.filter((f) => f.action === 'delete').map((f) => f.instance))
  t.same(deleted.filter((id) => !deletedGuests.has(id)), [], 'every deleted server\'s guest was deleted on its host')

  // Placement: exactly the live servers' flavors, no provider over its capacity.
  const live = (await api((c) => call<ListServersResponse>(c.servers, 'listServers', {}, token)))!.servers
  t.same(live.map((s) => s.id).sort(), [...keepers].sort(), 'the keepers are the servers that remain')
  const allocations = await eventually(async () => {
    const all = (await api((c) => call<ListAllocationsResponse>(c.placement, 'listAllocations', {}, token)))!.allocations
    return all.length === live.length && all.every((x) => keepers.includes(x.consumerUuid)) ? all : undefined
  }, SETTLE_MS, 'allocations to be those of the live servers (orphans of the killed controller released)')
  const total = (rc: string) => allocations.reduce((n, x) => n + Number(x.resources[rc] ?? 0), 0)
  t.same({ VCPU: total('VCPU'), MEMORY_MB: total('MEMORY_MB'), DISK_GB: total('DISK_GB') }, { VCPU: live.length * cloud.flavor.vcpus, MEMORY_MB: live.length * cloud.flavor.ram, DISK_GB: live.length * cloud.flavor.disk }, 'usage is the sum of the live servers\' flavors (no allocation leaked)')
  const over: string[] = []
  for (const p of new Set(allocations.map((x) => x.resourceProviderUuid))) {
    const inv = (await api((c) => call<GetInventoriesResponse>(c.placement, 'getInventories', { resourceProviderUuid: p }, token)))!.inventories
    for (const [rc, i] of Object.entries(inv)) {
      if (!i) continue
      const used = allocations.filter((x) => x.resourceProviderUuid === p).reduce((n, x) => n + Number(x.resources[rc] ?? 0), 0)
      if (used > (Number(i.total) - Number(i.reserved)) * i.allocationRatio) over.push(`${p} ${rc}: ${used}`)
    }
  }
  t.same(over, [], 'no provider has more allocated than its capacity')
})

t.test('a token revoked through A (restarted) is refused by B', async (t) => {
  const openrc = parseOpenrc(`${a.dataDir}/admin-openrc`)
  const fresh = await openrcToken(a.address, openrc)
  const idA = { projects: client(ProjectsClient, a.address), tokens: client(TokensClient, a.address) }
  const idB = { projects: client(ProjectsClient, b.address) }
  t.teardown(() => [...Object.values(idA), ...Object.values(idB)].forEach((x) => x.close()))
  t.equal(await accepted(idB, fresh), true, 'B accepts a token A issued')
  await call(idA.tokens, 'revokeToken', { token: fresh }, token)
  t.match(await eventually(() => accepted(idB, fresh).then((r) => (r === true ? undefined : r)), 1_000, 'B to refuse the token A revoked'), /revoked/, 'B refuses it as revoked')
  t.equal(await accepted(idB, token), true, 'other tokens still work')
})

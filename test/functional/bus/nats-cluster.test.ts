// A controller and a fake-driver agent on a real 3-node NATS cluster (authenticated routes, TLS on
// clients and routes, JetStream on every node): the streams are made with 3 replicas; then, with
// creates and deletes in flight, the node the controller is connected to is killed with SIGKILL, and
// later the cast stream's leader. Nothing is lost: every server reaches ACTIVE or is gone as asked,
// no guest is built twice, the allocations are those of the servers that remain, and once the
// killed node is back the streams have 3 current replicas again.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import t, { type Test } from 'tap'
import { connect, type NatsConnection } from '@nats-io/transport-node'
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream'
import { startNatsCluster, type NatsCluster } from '../../helpers/nats.js'
import { startController, type TestController } from '../../helpers/controller.js'
import { startAgent, eventually, type TestAgent } from '../../helpers/agents.js'
import { cloudClients, provision, serverGone, serverWaiter, type CloudClients, type Provisioned, type TestCloud } from '../../helpers/cloud.js'
import { call } from '../../helpers/grpc.js'
import { FakeDriver } from '../../../agent/virt/fake.js'
import type { GuestSpec } from '../../../agent/virt/driver.js'
import { CAST_STREAM, EVENT_STREAM } from '../../../proto/subjects.js'
import type { CreateServerResponse } from '../../../proto/gen/strato/compute/v1/servers.js'

/** The fake hypervisor, counting the guests it was asked to build: a build applied twice shows here. */
class CountingDriver extends FakeDriver {
  readonly spawns = new Map<string, number>()
  override async spawn(spec: GuestSpec) {
    this.spawns.set(spec.uuid, (this.spawns.get(spec.uuid) ?? 0) + 1)
    return super.spawn(spec)
  }
}

// Generous: 2 cores, TCG guests of other suites, and a cluster electing leaders after a SIGKILL.
const SETTLE_MS = 180_000

let caDir: string
let cluster: NatsCluster
let s: TestController
let agent: TestAgent
let c: CloudClients
let p: Provisioned
let waitFor: TestCloud['waitFor']
let nc: NatsConnection
let jsm: JetStreamManager
const driver = new CountingDriver({ hostname: 'node1' })

t.before(async () => {
  caDir = mkdtempSync(path.join(tmpdir(), 'strato-nats-cluster-ca-'))
  cluster = await startNatsCluster({ tlsCaDir: caDir })
  s = await startController({
    natsUrl: cluster.url,
    natsCaFile: cluster.caFile!,
    hosts: { heartbeatIntervalMs: 500, missedHeartbeats: 60, castAckWaitMs: 5_000 },
    servers: { castRetryMs: 500, agentCallTimeoutMs: 10_000 },
  })
  agent = await startAgent(cluster.url, 'node1', { caFile: cluster.caFile!, virtDriver: driver, requestTimeoutMs: 10_000, powerSyncIntervalMs: 500, shutdownTimeoutMs: 2_000 })
  await eventually(async () => (await s.controller.hosts.list()).length > 0, 60_000, 'the agent to announce itself')
  await s.controller.hosts.discover()
  c = cloudClients(s.address, s.credentials)
  p = await provision(c, s.adminToken)
  waitFor = serverWaiter(c, s.adminToken)
  nc = await connect({ ...cluster.connectOptions(), maxReconnectAttempts: -1, reconnectTimeWait: 250 })
  jsm = await jetstreamManager(nc)
})
t.teardown(async () => {
  await nc?.close()
  await agent?.stop()
  for (const x of Object.values(c ?? {})) x.close()
  await s?.close()
  await cluster?.stop()
  rmSync(caDir, { recursive: true, force: true })
})

const create = async (name: string) =>
  (await call<CreateServerResponse>(c.servers, 'createServer', { name, flavorRef: p.flavor.id, imageRef: p.image.id, networks: [{ uuid: p.network.id }] }, s.adminToken)).servers[0]!.id
const active = (id: string) => waitFor(id, (x) => x.status === 'ACTIVE' && x.taskState === '', s.adminToken, SETTLE_MS, `server ${id} to be ACTIVE`)
const gone = (id: string) => eventually(() => serverGone(c, id, s.adminToken), SETTLE_MS, `server ${id} to be deleted`)

/** Each stream's replica count as configured and its peers as the leader sees them. */
async function replicas(stream: string) {
  const info = await jsm.streams.info(stream)
  return { configured: info.config.num_replicas, leader: info.cluster?.leader ?? '', peers: (info.cluster?.replicas ?? []).map((r) => ({ name: r.name, current: r.current, offline: Boolean(r.offline) })) }
}

/** Waits until both streams have a leader and two current peers (a node that came back has caught up). */
async function streamsWhole(t: Test, what: string) {
  for (const stream of [CAST_STREAM, EVENT_STREAM]) {
    const r = await eventually(async () => {
      const x = await replicas(stream).catch(() => undefined)
      return x && x.leader && x.peers.length === 2 && x.peers.every((peer) => peer.current && !peer.offline) ? x : undefined
    }, SETTLE_MS, `${stream} to have a leader and 2 current peers ${what}`)
    t.equal(r.configured, 3, `${stream}: 3 replicas ${what}`)
    t.same(new Set([r.leader, ...r.peers.map((peer) => peer.name)]), new Set(cluster.nodes.map((n) => n.name)), `${stream}: one replica on each node ${what}`)
  }
}

/** What the hypervisor and placement hold must be exactly the servers that remain. */
async function nothingLeaked(t: Test, remaining: string[]) {
  const guests = await eventually(async () => {
    const uuids = (await driver.listGuests()).map((g) => g.uuid).sort()
    return uuids.length === remaining.length ? uuids : undefined
  }, SETTLE_MS, `the hypervisor to hold ${remaining.length} guests`).catch(async () => (await driver.listGuests()).map((g) => g.uuid).sort())
  t.same(guests, [...remaining].sort(), 'the hypervisor holds exactly the servers that remain')
  const built = [...driver.spawns.entries()].filter(([, n]) => n !== 1)
  t.same(built, [], 'no guest was built twice (no build cast applied twice)')
  const host = (await s.controller.hosts.list()).find((h) => h.host === 'node1')!
  const allocated = (await s.controller.placement.getUsages({ providerUuid: host.id })).usages.VCPU ?? 0
  t.equal(allocated, remaining.length * p.flavor.vcpus, "placement's VCPU usage on node1 is that of the servers that remain (no allocation leaked)")
}

t.test('the controller makes its streams with 3 replicas on a 3-node cluster', async (t) => {
  t.equal(s.controller.config.natsStreamReplicas, 3, 'three URLs: 3 replicas by default')
  await streamsWhole(t, 'at start')
})

let kept: string[] = []

t.test('SIGKILL of the node the controller is connected to, with creates and deletes in flight', async (t) => {
  kept = await Promise.all(['before-1', 'before-2', 'before-3'].map(create))
  await Promise.all(kept.map(active))
  const victim = cluster.node(s.controller.nats!.info!.server_name)
  // The work is asked for, and the node dies while it is under way.
  const creating = Promise.all(['during-1', 'during-2', 'during-3'].map(create))
  const deleting = Promise.all(kept.map((id) => call(c.servers, 'deleteServer', { id }, s.adminToken)))
  await victim.kill9()
  t.pass(`killed ${victim.name} (the controller's node) with SIGKILL`)
  const created = await creating
  await deleting
  await Promise.all([...created.map(active), ...kept.map(gone)])
  t.pass('every server created is ACTIVE and every server deleted is gone')
  await eventually(() => s.controller.nats!.info!.server_name !== victim.name, SETTLE_MS, 'the controller to be on another node')
  await nothingLeaked(t, created)
  kept = created
  await victim.start()
  await streamsWhole(t, `after ${victim.name} came back`)
})

t.test("SIGKILL of the cast stream's leader, with creates and deletes in flight", async (t) => {
  const victim = cluster.node((await replicas(CAST_STREAM)).leader)
  const creating = Promise.all(['leader-1', 'leader-2', 'leader-3'].map(create))
  const deleting = Promise.all(kept.map((id) => call(c.servers, 'deleteServer', { id }, s.adminToken)))
  await victim.kill9()
  t.pass(`killed ${victim.name} (the leader of ${CAST_STREAM}) with SIGKILL`)
  const created = await creating
  await deleting
  await Promise.all([...created.map(active), ...kept.map(gone)])
  t.pass('every server created is ACTIVE and every server deleted is gone')
  t.not((await replicas(CAST_STREAM)).leader, victim.name, 'another node leads the cast stream')
  await nothingLeaked(t, created)
  await victim.start()
  await streamsWhole(t, `after ${victim.name} came back`)
})

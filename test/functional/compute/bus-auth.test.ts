// The bus is closed (issue 15): a real nats-server with JWT auth (as the stack runs it), the real
// controller, and agents node1 and node2 on the fake driver, each with its own credentials. The
// attacks of the issue are run with an agent's credentials (node2's, against node1) or none:
// anonymous connections are refused; node2's credentials cannot subscribe to `>`, to node1's rpc or
// the controller's inbox, cannot pull node1's casts, publish node1's events or casts, or delete a
// stream; the conductor refuses node2 asking for node1's build spec or announcing as another
// host; and events node2 may publish but that speak for node1 (a heartbeat, a power report) or
// answer a cast of node1's (the predictable `build.<uuid>`) change nothing.
import { connect, type NatsConnection } from '@nats-io/transport-node'
import { jetstream, jetstreamManager } from '@nats-io/jetstream'
import t from 'tap'
import { startCloud, type TestCloud } from '../../helpers/cloud.js'
import { startAgent, eventually, type TestAgent } from '../../helpers/agents.js'
import { call, type Decoded } from '../../helpers/grpc.js'
import { startController } from '../../helpers/controller.js'
import { CAST_STREAM, agentRpcSubject, castConsumer, castResultSubject, castSubject, conductorSubject, heartbeatSubject, powerSubject } from '../../../proto/subjects.js'
import { errorFromHeaders } from '../../../proto/nats-errors.js'
import { Cast, CastResult, ConductorRequest, Heartbeat, PowerStates } from '../../../proto/gen/strato/agent/v1/agent.js'
import type { CreateServerResponse, Server } from '../../../proto/gen/strato/compute/v1/servers.js'

let cloud: TestCloud
/** node1 answers slowly (every hypervisor call takes 300 ms): its builds stay in BUILD long enough to be attacked. */
let node1: TestAgent
/** A connection with node2's agent credentials: the attacker. */
let evil: NatsConnection
const violations: Error[] = []

t.before(async () => {
  cloud = await startCloud({ hosts: ['node2'], controller: { hosts: { heartbeatIntervalMs: 200, missedHeartbeats: 5 } } })
  node1 = await startAgent(cloud.nats.url, 'node1', { powerSyncIntervalMs: 200, fake: { latencyMs: 300 } })
  await cloud.s.controller.hosts.discover()
  evil = await connect(cloud.nats.connectOptions({ agent: 'node2' }))
  void (async () => {
    for await (const s of evil.status()) if (s.type === 'error') violations.push(s.error)
  })()
})
t.teardown(async () => {
  await evil?.close()
  await node1?.stop()
  await cloud?.close()
})

/** Waits for the server's refusal of `op` on `subject` (nats-server reports it to the client). */
const refused = (op: 'publish' | 'subscription', subject: string) =>
  eventually(() => violations.some((e) => e.name === 'PermissionViolationError' && (e as unknown as { operation: string; subject: string }).operation === op && (e as unknown as { subject: string }).subject === subject), 3_000, `${op} to ${subject} refused`)

async function serverOn(host: string): Promise<Decoded<Server>> {
  const r = await call<CreateServerResponse>(cloud.c.servers, 'createServer', { name: `on-${host}`, flavorRef: 'm1.nano', imageRef: 'cirros', networks: [{ uuid: cloud.network.id }], availabilityZone: `nova:${host}` }, cloud.s.adminToken)
  return cloud.waitFor(r.servers[0]!.id, (s) => s.status === 'ACTIVE', cloud.s.adminToken, 20_000, `server on ${host} ACTIVE`)
}
const status = async (id: string) => (await call<Server>(cloud.c.servers, 'getServer', { id }, cloud.s.adminToken)).status
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

t.test('anonymous connections and credentials of another operator are refused', async (t) => {
  await t.rejects(connect({ servers: cloud.nats.url, reconnect: false }), { name: 'AuthorizationError' })
  await t.rejects(startAgent(cloud.nats.url, 'node3', { natsCredsFile: null }), { name: 'FailedPrecondition', message: /refused the agent of 'node3': it requires credentials \(set STRATO_AGENT_NATS_CREDS\)/ }, 'an agent without credentials says what is missing')
  await t.rejects(startController({ natsUrl: cloud.nats.url, natsCredsFile: null }), { name: 'Unauthenticated', message: /refused the controller: it requires credentials/ }, 'so does the controller')
  const other = await import('../../helpers/nats.js').then((m) => m.startNats())
  try {
    const foreign = other.connectOptions({ agent: 'node1' })
    await t.rejects(connect({ ...foreign, servers: cloud.nats.url, reconnect: false }), { name: 'AuthorizationError' }, "another installation's agent credentials")
  } finally {
    await other.stop()
  }
})

t.test("node2's credentials subscribe to nothing of others: not `>`, not node1's rpc, not the controller's inbox", async (t) => {
  for (const subject of ['>', 'strato.>', agentRpcSubject('node1'), '_INBOX.>', '_INBOX_node1.>', castSubject('node1'), 'strato.events.>', '$JS.ACK.>']) {
    const sub = evil.subscribe(subject)
    const closed = await Promise.race([sub.closed, sleep(3_000).then(() => 'still open')])
    t.type(closed, Error, `subscribing to ${subject} is refused`)
    t.match(String(closed), /Permissions Violation for Subscription/)
  }
})

t.test("node2's credentials cannot pull node1's casts, nor use the JetStream API to manage streams", async (t) => {
  const js = jetstream(evil)
  await t.rejects(js.consumers.get(CAST_STREAM, castConsumer('node1')), /Permissions Violation|permission/i, "node1's consumer info")
  await t.rejects(evil.request(`$JS.API.CONSUMER.MSG.NEXT.${CAST_STREAM}.${castConsumer('node1')}`, JSON.stringify({ batch: 1, expires: 1e9 }), { timeout: 2_000 }), /Permissions Violation/, "a pull of node1's casts")
  const jsm = await jetstreamManager(evil, { checkAPI: false })
  await t.rejects(jsm.streams.delete(CAST_STREAM), /Permissions Violation/, 'deleting the cast stream')
  await t.rejects(jsm.streams.purge(CAST_STREAM), /Permissions Violation/, 'purging the cast stream')
  await t.rejects(jsm.consumers.add(CAST_STREAM, { durable_name: 'evil', filter_subject: castSubject('node1') }), /Permissions Violation/, 'making a consumer of node1\'s casts')
  const admin = await jetstreamManager(cloud.s.controller.nats!)
  t.equal((await admin.streams.info(CAST_STREAM)).config.name, CAST_STREAM, 'the cast stream is still there')
  // Its own consumer it may read (what its agent does).
  t.equal((await js.consumers.get(CAST_STREAM, castConsumer('node2')).then((c) => c.info())).name, castConsumer('node2'))
})

t.test("node2's credentials cannot cast to node1 nor publish node1's events", async (t) => {
  const server = await serverOn('node1')
  evil.publish(castSubject('node1'), Cast.encode(Cast.fromPartial({ id: `delete.${server.id}.x`, sentAt: new Date(), delete: { instanceUuid: server.id } })).finish())
  await refused('publish', castSubject('node1'))
  evil.publish(powerSubject('node1'), PowerStates.encode({ host: 'node1', sentAt: new Date(), guests: [] }).finish())
  await refused('publish', powerSubject('node1'))
  evil.publish(heartbeatSubject('node1'), Heartbeat.encode({ host: 'node1', sentAt: new Date() }).finish())
  await refused('publish', heartbeatSubject('node1'))
  await sleep(1_000)
  t.equal(await status(server.id), 'ACTIVE', 'the server is untouched')
  t.ok((await node1.driver.listGuests()).some((g) => g.uuid === server.id), 'its guest is still on node1')
})

t.test('the conductor answers node2 only about node2', async (t) => {
  const server = await serverOn('node1')
  const ask = async (subject: string, req: ConductorRequest) => {
    const m = await evil.request(subject, ConductorRequest.encode(req).finish(), { timeout: 2_000 })
    return errorFromHeaders(m.headers)
  }
  const err = await ask(conductorSubject('node2'), { buildSpec: { instanceUuid: server.id, host: 'node1' } })
  t.match(err, { name: 'PermissionDenied', message: /host 'node2' asked the conductor for host 'node1'/ }, "node1's build spec")
  t.match(await ask(conductorSubject('node2'), { firewall: { host: 'node1' } }), { name: 'PermissionDenied' }, "node1's firewall")
  t.match(await ask(conductorSubject('node2'), { metadata: { host: 'node1', networkId: cloud.network.id, address: '192.168.201.200' } }), { name: 'PermissionDenied' }, 'metadata as node1')
  t.match(await ask(conductorSubject('node2'), { renewHostCertificate: { host: 'node1', csrPem: 'a CSR naming node1', addresses: [] } }), { name: 'PermissionDenied' }, "node1's NBD certificate")
  const caps = { vcpus: 4096, memoryMb: 99_999_999, diskGb: 1, cpuModel: '', arch: 'x86_64', accelerator: 'kvm', hypervisorType: 'QEMU', hypervisorVersion: '', hostIp: '127.0.0.1' }
  t.match(await ask(conductorSubject('node2'), { announce: { host: 'node1', uuid: node1.agent.uuid, availabilityZone: '', capabilities: caps } }), { name: 'PermissionDenied' }, 'announcing as node1')
  t.match(await ask(conductorSubject('node2'), { announce: { host: 'ghost-host', uuid: '00000000-0000-4000-8000-000000000000', availabilityZone: '', capabilities: caps } }), { name: 'PermissionDenied' }, 'announcing a ghost host')
  // On its own subject and its own name, node1's uuid is not its to take.
  t.match(await ask(conductorSubject('node2'), { announce: { host: 'node2', uuid: node1.agent.uuid, availabilityZone: '', capabilities: caps } }), { name: 'Conflict' }, "announcing with node1's uuid")
  await t.rejects(evil.request(conductorSubject('node1'), ConductorRequest.encode({ buildSpec: { instanceUuid: server.id, host: 'node1' } }).finish(), { timeout: 2_000 }), /Permissions Violation/, "asking on node1's subject")
  t.notOk((await cloud.s.controller.hosts.list()).some((h) => h.host === 'ghost-host'), 'no ghost host')
  t.not((await cloud.s.controller.hosts.get('node1')).capabilities.vcpus, 4096, "node1's inventory is its own")
})

t.test("events node2 may publish but that speak for node1's servers change nothing", async (t) => {
  const js = jetstream(evil)
  const server = await serverOn('node1')
  // A power report on node2's own subject that names node1 (every guest of node1 missing).
  await js.publish(powerSubject('node2'), PowerStates.encode({ host: 'node1', sentAt: new Date(), guests: [] }).finish())
  // And one as node2 naming node1's guest as shut down.
  await js.publish(powerSubject('node2'), PowerStates.encode({ host: 'node2', sentAt: new Date(), guests: [{ instanceUuid: server.id, powerState: 4 }] }).finish())
  await sleep(1_000)
  t.equal(await status(server.id), 'ACTIVE', 'power reports of node2 do not move a server of node1')

  // A build in progress on node1 (slow hypervisor): its cast id `build.<uuid>` is predictable.
  const r = await call<CreateServerResponse>(cloud.c.servers, 'createServer', { name: 'building', flavorRef: 'm1.nano', imageRef: 'cirros', networks: [{ uuid: cloud.network.id }], availabilityZone: 'nova:node1' }, cloud.s.adminToken)
  const id = r.servers[0]!.id
  const fake = (host: string) => CastResult.encode({ castId: `build.${id}`, host, ok: false, errorCode: 'INTERNAL', message: 'pwned by node2', powerState: 0, instanceUuid: id, action: 'build' }).finish()
  await js.publish(castResultSubject('node2'), fake('node2'), { msgID: `forged-a-${id}` })
  await js.publish(castResultSubject('node2'), fake('node1'), { msgID: `forged-b-${id}` })
  const done = await cloud.waitFor(id, (s) => s.status !== 'BUILD', cloud.s.adminToken, 20_000, 'the build to end')
  t.equal(done.status, 'ACTIVE', 'the build succeeded')
  t.notMatch(done.fault?.message ?? '', /pwned/, 'no forged fault')
})

t.test("heartbeats on node2's subject naming node1 do not keep node1 up", async (t) => {
  await node1.stop()
  const forging = setInterval(() => evil.publish(heartbeatSubject('node2'), Heartbeat.encode({ host: 'node1', sentAt: new Date() }).finish()), 100)
  try {
    await eventually(async () => {
      return (await cloud.s.controller.hosts.get('node1')).state === 'down'
    }, 5_000, 'node1 to be down')
    t.pass('node1 went down')
  } finally {
    clearInterval(forging)
  }
})

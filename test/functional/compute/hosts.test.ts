// Hosts with cells v2 semantics over a real nats-server: agents on the fake driver announce themselves,
// wait to be mapped, heartbeat, get disabled with a reason; casts reach them through their JetStream work queue.
import { randomUUID } from 'node:crypto'
import t from 'tap'
import { startController, type TestController } from '../../helpers/controller.js'
import { quickDown } from '../../helpers/cloud.js'
import { startNats, type NatsServer } from '../../helpers/nats.js'
import { startAgent, eventually, type TestAgent } from '../../helpers/agents.js'
import { call, client, failure, fieldOf, status } from '../../helpers/grpc.js'
import { HostsClient, type DiscoverHostsResponse, type Host, type ListHostsResponse } from '../../../proto/gen/strato/compute/v1/hosts.js'
import { FailedPrecondition } from '../../../proto/errors.js'
import type { CastResultEvent } from '../../../controller/bus/bus.js'
import { fakeHost, spec } from './fake-hosts.js'

let nats: NatsServer
let s: TestController
let hostsApi: HostsClient
const agents: TestAgent[] = []

const listHosts = async () => (await call<ListHostsResponse>(hostsApi, 'listHosts', {}, s.adminToken)).hosts
const byName = async (host: string) => (await listHosts()).find((h) => h.host === host)
const adminProject = async () => {
  const p = await call<{ id: string }>(s.clients.projects, 'getProject', { name: 'admin', domainId: 'default' }, s.adminToken)
  return { projectId: p.id, userId: 'admin' }
}

/** Casts to a host and waits for the agent's result (listening before the cast goes out). */
function castAndWait(host: string, action: Parameters<NonNullable<typeof s.controller.bus>['cast']>[1]): Promise<CastResultEvent> {
  const id = randomUUID()
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => (off(), reject(new Error(`no result for cast ${id} within 5 s`))), 5_000)
    const off = s.controller.bus!.onCastResult((r) => {
      if (r.castId === id) (clearTimeout(timer), off(), resolve(r))
    })
    s.controller.bus!.cast(host, action, id).catch(reject)
  })
}

t.before(async () => {
  nats = await startNats()
  // Down after 3 s of silence (a loaded machine delays beats); the test that stops an agent cuts it (quickDown).
  s = await startController({ natsUrl: nats.url, hosts: { heartbeatIntervalMs: 100, missedHeartbeats: 30 } })
  hostsApi = client(HostsClient, s.address)
})
t.teardown(async () => {
  for (const a of agents) await a.stop()
  hostsApi.close()
  await s.close()
  await nats.stop()
})

t.test('announce → waiting → DiscoverHosts → schedulable, over NATS', async (t) => {
  for (const [host, az] of [['node1', ''], ['node2', ''], ['node3.example.org', 'az2']] as const) {
    agents.push(await startAgent(nats.url, host, { availabilityZone: az, fake: { vcpus: 4, memoryMiB: 8192 } }))
  }
  t.equal(agents[0]!.agent.announced?.mapped, false, 'the conductor told the agent it is not mapped')
  const hosts = await listHosts()
  t.same(hosts.map((h) => h.host), ['node1', 'node2', 'node3.example.org'])
  t.match(hosts[0], {
    id: agents[0]!.agent.uuid, availabilityZone: 'nova', status: 'enabled', state: 'up', mapped: false,
    capabilities: { cpuModel: 'fake-cpu', arch: 'x86_64', vcpus: 4, memoryMb: 8192, diskGb: 100, accelerator: 'kvm', hypervisorType: 'fake', hypervisorVersion: '1.0.0', hostIp: '127.0.0.1' },
  })
  t.equal(hosts[2]!.availabilityZone, 'az2')
  // Nova's my_ip: what the agent reports as its address; anything not an address is refused.
  const odd = await s.controller.hosts.announce({ ...fakeHost('odd'), capabilities: { ...fakeHost('odd').capabilities, hostIp: 'not-an-ip' } }).catch((e: Error) => e)
  t.match(odd, { name: 'InvalidArgument', field: 'capabilities.host_ip', message: /'not-an-ip' is not an IP address/ })
  t.notOk((await listHosts()).some((h) => h.host === 'odd'), 'nothing recorded')

  const p = await adminProject()
  const err = await s.controller.scheduler.schedule(spec(p.projectId, p.userId)).catch((e: Error) => e)
  t.type(err, FailedPrecondition)
  t.equal((err as Error).message, "no host is mapped yet: 'node1', 'node2', 'node3.example.org' are waiting; run DiscoverHosts (strato host discover)")

  const d = await call<DiscoverHostsResponse>(hostsApi, 'discoverHosts', {}, s.adminToken)
  const [u1, u2, u3] = agents.map((a) => a.agent.uuid)
  t.same(d.lines, [
    "Getting computes from cell 'cell1'",
    `Checking host mapping for compute host 'node1': ${u1}`,
    `Creating host mapping for compute host 'node1': ${u1}`,
    `Checking host mapping for compute host 'node2': ${u2}`,
    `Creating host mapping for compute host 'node2': ${u2}`,
    `Checking host mapping for compute host 'node3.example.org': ${u3}`,
    `Creating host mapping for compute host 'node3.example.org': ${u3}`,
    'Found 3 unmapped computes in cell: cell1',
  ])
  t.same(d.mapped.map((h) => [h.host, h.mapped]), [['node1', true], ['node2', true], ['node3.example.org', true]])
  const again = await call<DiscoverHostsResponse>(hostsApi, 'discoverHosts', {}, s.adminToken)
  t.same(again.lines, ["Getting computes from cell 'cell1'", 'Found 0 unmapped computes in cell: cell1'], 'a second run maps nothing')

  const placed = await s.controller.scheduler.schedule(spec(p.projectId, p.userId, { az: 'az2' }))
  t.equal(placed.host, 'node3.example.org')
  await s.controller.scheduler.release(placed.providerUuid === '' ? '' : (await s.controller.placement.listAllocations({ providerUuid: placed.providerUuid }))[0]!.consumerUuid)
  await call(s.clients.users, 'createUser', { name: 'nobody', domainId: 'default', password: 'pw' }, s.adminToken)
  const nobody = (await s.login('nobody', 'pw')).token
  t.equal((await failure(call(hostsApi, 'discoverHosts', {}, nobody))).code, status.PERMISSION_DENIED, 'only cloud admins map hosts')
  t.equal((await failure(call(hostsApi, 'listHosts', {}, nobody))).code, status.PERMISSION_DENIED)
})

t.test('a restarted agent keeps its uuid and its mapping', async (t) => {
  const a = agents[0]!
  const uuid = a.agent.uuid
  await a.stop()
  agents[0] = await startAgent(nats.url, 'node1', { uuid, fake: { vcpus: 4, memoryMiB: 8192 } })
  t.equal(agents[0].agent.announced?.mapped, true)
  const other = await startAgent(nats.url, 'node1', { uuid: randomUUID() }).catch((e: Error) => e)
  t.match((other as Error).message, /host 'node1' is already registered with uuid/, 'a second agent cannot take the name')
})

t.test('heartbeats mark hosts up; silence marks them down; the scheduler skips down hosts', async (t) => {
  await eventually(async () => (await listHosts()).every((h) => h.state === 'up'), 3_000, 'all hosts up')
  const node2 = agents[1]!
  quickDown({ s })
  await node2.stop()
  const down = await eventually(async () => ((await byName('node2'))?.state === 'down' ? await byName('node2') : undefined), 3_000, 'node2 down')
  t.ok(down!.lastHeartbeatAt, 'last heartbeat is shown')
  t.equal((await byName('node1'))!.state, 'up', 'others stay up')
  const p = await adminProject()
  const e = await s.controller.scheduler.schedule(spec(p.projectId, p.userId, { image: { img_hv_type: 'fake' }, az: 'nova' })).then(
    (r) => r,
    (err: Error) => err,
  )
  t.match(e, { host: 'node1' }, 'node2 is down: node1 is the only host in nova')
  // The suite's own window again, once node2 is down by it too (its last beat older than 3 s).
  quickDown({ s }, false)
  await eventually(() => !s.controller.hosts.isUp('node2'), 5_000, 'node2 down by the 3 s window')
  await s.controller.scheduler.release((await s.controller.placement.listAllocations({ providerUuid: (e as { providerUuid: string }).providerUuid }))[0]!.consumerUuid)
  agents[1] = await startAgent(nats.url, 'node2', { uuid: node2.agent.uuid })
  await eventually(async () => (await byName('node2'))?.state === 'up', 3_000, 'node2 up again')
  t.pass('node2 is up again after its agent restarted')
})

t.test('hosts can be disabled with a reason, and enabled again', async (t) => {
  const h = await call<Host>(hostsApi, 'updateHost', { host: 'node1', enabled: false, disabledReason: 'kernel upgrade' }, s.adminToken)
  t.match(h, { status: 'disabled', disabledReason: 'kernel upgrade' })
  const p = await adminProject()
  for (let i = 0; i < 3; i++) {
    const r = await s.controller.scheduler.schedule(spec(p.projectId, p.userId, { az: 'nova' }))
    t.equal(r.host, 'node2', 'never the disabled host')
  }
  await call<Host>(hostsApi, 'updateHost', { host: 'node2', enabled: false }, s.adminToken)
  const none = await s.controller.scheduler.schedule(spec(p.projectId, p.userId, { az: 'nova' })).catch((e: Error) => e)
  t.match((none as Error).message, /: 3 hosts; 3 after placement capacity; 1 after ComputeFilter; 0 after AvailabilityZoneFilter \(az=nova\)$/)
  const noneAtAll = await s.controller.scheduler.schedule(spec(p.projectId, p.userId, { az: 'nova' }))
    .then(() => undefined, (e: Error) => e)
  t.ok(noneAtAll)
  for (const host of ['node1', 'node2']) {
    const e = await call<Host>(hostsApi, 'updateHost', { host, enabled: true }, s.adminToken)
    t.match(e, { status: 'enabled', disabledReason: '' })
  }
  const unknown = await failure(call(hostsApi, 'updateHost', { host: 'nope', enabled: false }, s.adminToken))
  t.equal(unknown.code, status.NOT_FOUND)
  const bad = await failure(call(hostsApi, 'updateHost', { host: 'bad_name', enabled: false }, s.adminToken))
  t.equal(bad.code, status.INVALID_ARGUMENT)
  t.equal(fieldOf(bad), 'host')
})

t.test('casts: a ping reaches the agent through its work queue; a build of nothing placed there fails', async (t) => {
  const pong = await castAndWait('node3.example.org', { ping: { note: 'hello' } })
  t.match(pong, { ok: true, host: 'node3.example.org', message: 'pong: hello', action: 'ping' })

  // Real builds go through CreateServer (test/functional/compute/servers.test.ts).
  const unplaced = randomUUID()
  const failed = await castAndWait('node3.example.org', { build: { instanceUuid: unplaced } })
  t.match(failed, { ok: false, action: 'build', errorCode: 'NOT_FOUND', message: /no server .* is placed on host 'node3.example.org'/ })
  t.equal((await agents[2]!.driver.listGuests()).length, 0, 'nothing was spawned')
})

t.test('a cast sent while the agent is down is done when it comes back, once', async (t) => {
  const a = agents[2]!
  const uuid = a.agent.uuid
  await a.stop()
  const results: CastResultEvent[] = []
  const id = randomUUID()
  const off = s.controller.bus!.onCastResult((r) => r.castId === id && results.push(r))
  await s.controller.bus!.cast('node3.example.org', { ping: { note: 'while you were away' } }, id)
  t.equal(await s.controller.bus!.cast('node3.example.org', { ping: { note: 'while you were away' } }, id), id, 'sent twice')
  agents[2] = await startAgent(nats.url, 'node3.example.org', { uuid, availabilityZone: 'az2' })
  await eventually(() => results.length > 0, 5_000, 'the queued cast')
  await new Promise((r) => setTimeout(r, 300))
  off()
  t.equal(results.length, 1, 'a re-sent cast with the same id is deduplicated')
  t.match(results[0], { ok: true, message: 'pong: while you were away' })
})

t.test('automatic discovery maps waiting hosts at an interval', async (t) => {
  const auto = await startController({ hosts: { discoverIntervalMs: 50 } })
  t.teardown(() => auto.close())
  await auto.controller.hosts.announce(fakeHost('late'))
  const h = await eventually(async () => (await auto.controller.hosts.list()).find((x) => x.mapped), 3_000, 'auto-mapping')
  t.equal(h.host, 'late')
})

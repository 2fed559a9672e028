// Casts through the real gRPC API, a real nats-server and one agent on the fake driver whose log
// this test reads: the request id of the API call that caused a cast (x-request-id) reaches the
// agent and is on its log lines for the work; and servers caught rebooting (their agent stopped)
// are listed by the REBOOT and HARD_REBOOT status filters (and, as in Nova, by ACTIVE, their vm_state's status).
import { randomUUID } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { Metadata, type ServiceError } from '@grpc/grpc-js'
import { pino } from 'pino'
import t from 'tap'
import { startCloud, type TestCloud } from '../../helpers/cloud.js'
import { call, type Decoded } from '../../helpers/grpc.js'
import { eventually } from '../../helpers/agents.js'
import { tenant, type Tenant } from '../network/fixtures.js'
import { loadAgentConfig } from '../../../agent/config.js'
import { AgentService } from '../../../agent/service.js'
import { FakeDriver } from '../../../agent/virt/fake.js'
import type { CreateServerResponse, ListServersResponse, Server } from '../../../proto/gen/strato/compute/v1/servers.js'

let cloud: TestCloud
let demo: Tenant
let agent: AgentService
let stateDir: string
let cfg: ReturnType<typeof loadAgentConfig>
const log = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) })
const hardRebootId = `req-hard-${randomUUID()}`
/** The host's guests, kept across agent restarts as a hypervisor keeps them. */
const driver = new FakeDriver({ hostname: 'node1' })
/** Every line the agent logged, parsed. */
const lines: Array<Record<string, unknown>> = []

t.before(async () => {
  cloud = await startCloud({ hosts: [] })
  demo = await tenant(cloud.s, 'demo')
  stateDir = mkdtempSync(path.join(tmpdir(), 'strato-agent-casts-'))
  cfg = loadAgentConfig({ host: 'node1', natsUrl: cloud.nats.url, natsCredsFile: cloud.nats.agentCreds!('node1'), stateDir, uuid: randomUUID(), diskGb: 100, driver: 'fake', requestTimeoutMs: 2_000, myIp: '127.0.0.1', powerSyncIntervalMs: 200 }, {})
  agent = new AgentService(cfg, driver, log)
  await agent.start()
  await cloud.s.controller.hosts.discover()
})
t.teardown(async () => {
  await agent.stop()
  await cloud.close()
  rmSync(stateDir, { recursive: true, force: true })
})

/** A unary call with the caller's token and, when given, its own request id. */
function callWithId<Res>(method: string, req: object, requestId: string | undefined, token = demo.token): Promise<Decoded<Res>> {
  const md = new Metadata()
  md.set('x-auth-token', token)
  if (requestId) md.set('x-request-id', requestId)
  return new Promise((resolve, reject) => {
    const fn = (cloud.c.servers as unknown as Record<string, Function>)[method]!
    fn.call(cloud.c.servers, req, md, (err: ServiceError | null, res: Decoded<Res>) => (err ? reject(err) : resolve(res)))
  })
}
const listed = async (status: string) => (await call<ListServersResponse>(cloud.c.servers, 'listServers', { status }, demo.token)).servers.map((s) => s.id)
const logged = (msg: string, instance: string) => lines.filter((l) => l.msg === msg && l.instance === instance)

t.test("the agent logs a build under the request id of the CreateServer that caused it, and each action under its own", async (t) => {
  const requestId = `req-create-${randomUUID()}`
  const r = await callWithId<CreateServerResponse>('createServer', { name: 'traced', flavorRef: 'm1.nano', imageRef: 'cirros', networks: [{ uuid: cloud.network.id }] }, requestId)
  const id = r.servers[0]!.id
  await cloud.waitFor(id, (s) => s.status === 'ACTIVE', demo.token)
  const started = await eventually(() => logged('build started', id)[0], 5_000, "the agent's 'build started' line")
  t.match(started, { requestId, instance: id, action: 'build', host: 'node1', cast: `build.${id}` }, 'the build started under the request id')
  t.match(logged('build finished', id), [{ requestId }], 'and finished under it')

  const rebootId = `req-reboot-${randomUUID()}`
  await callWithId<Server>('rebootServer', { id, type: 'SOFT' }, rebootId)
  await cloud.waitFor(id, (s) => s.status === 'ACTIVE' && s.taskState === '', demo.token)
  const reboot = await eventually(() => logged('reboot finished', id)[0], 5_000, "the agent's 'reboot finished' line")
  t.equal(reboot.requestId, rebootId, 'the reboot carries the request id of the RebootServer call')

  await callWithId<Server>('stopServer', { id }, undefined)
  await cloud.waitFor(id, (s) => s.status === 'SHUTOFF', demo.token)
  const stop = await eventually(() => logged('stop finished', id)[0], 5_000, "the agent's 'stop finished' line")
  t.match(stop.requestId, /^[0-9a-f-]{36}$/, 'with no x-request-id, the one the controller made up')
  t.not(stop.requestId, rebootId)
  await callWithId<Server>('startServer', { id }, undefined)
  await cloud.waitFor(id, (s) => s.status === 'ACTIVE' && s.taskState === '', demo.token)
})

t.test('list --status REBOOT and HARD_REBOOT find the servers rebooting (and ACTIVE, a vm_state filter as in Nova, still does)', async (t) => {
  const id = (await call<ListServersResponse>(cloud.c.servers, 'listServers', { name: '^traced$' }, demo.token)).servers[0]!.id
  t.same(await listed('ACTIVE'), [id])
  t.same(await listed('REBOOT'), [], 'nothing rebooting yet')
  // With its agent stopped, the server stays in the task the cast started.
  await agent.stop()
  const soft = await call<Server>(cloud.c.servers, 'rebootServer', { id, type: 'SOFT' }, demo.token)
  t.equal(soft.status, 'REBOOT')
  t.same(await listed('REBOOT'), [id], 'REBOOT lists it')
  t.same(await listed('reboot'), [id], 'in any case')
  t.same(await listed('ACTIVE'), [id], 'ACTIVE still does: its vm_state is active (Nova filters ACTIVE on vm_state alone)')
  t.same(await listed('HARD_REBOOT'), [])
  const hard = await callWithId<Server>('rebootServer', { id, type: 'HARD' }, hardRebootId)
  t.equal(hard.status, 'HARD_REBOOT', 'a hard reboot may follow a soft one in progress')
  t.same(await listed('HARD_REBOOT'), [id], 'HARD_REBOOT lists it')
  t.same(await listed('REBOOT'), [])
})

t.test('an agent that restarts resumes the action in progress under the request id of the call behind it', async (t) => {
  const id = (await call<ListServersResponse>(cloud.c.servers, 'listServers', { name: '^traced$' }, demo.token)).servers[0]!.id
  // The hard reboot above is pending: its agent stopped before taking the cast.
  agent = new AgentService(cfg, driver, log)
  await agent.start()
  const resumed = await eventually(() => logged('resuming an action in progress', id)[0], 10_000, "the agent's 'resuming' line")
  t.match(resumed, { requestId: hardRebootId, action: 'reboot_hard', cast: /^reboot_hard\./ }, 'resumed under the HARD reboot call\'s request id')
  await cloud.waitFor(id, (s) => s.status === 'ACTIVE' && s.taskState === '', demo.token)
  const done = await eventually(() => logged('reboot_hard finished', id)[0], 5_000, "the agent's 'reboot_hard finished' line")
  t.equal(done.requestId, hardRebootId, 'and finished under it')
})

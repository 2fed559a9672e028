/**
 * Fault tests on a real host: the agent daemon (libvirt) SIGKILLed in the
 * middle of builds and started again; nats-server stopped while servers are
 * created and stopped, then started again; the controller daemon SIGKILLed
 * with builds in flight, and with a cast it had committed but never got onto
 * the bus. Every server ends ACTIVE, SHUTOFF or ERROR with a fault, never
 * stuck; no cast is lost; no orphan domain, disk or allocation is left.
 * One cloud for all of it (nats-server, controller and agent, each its own
 * process): a cloud's start-up is CPU the whole suite shares.
 * Needs root, libvirt-daemon-system, qemu-system-x86.
 */
import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, readdirSync } from 'node:fs'
import path from 'node:path'
import { promisify } from 'node:util'
import t, { type Test } from 'tap'
import { provision, serverGone, serverWaiter, spawnFaultController, type CloudClients, type Provisioned, type TestCloud } from '../../helpers/cloud.js'
import { spawnAgent, type AgentProcess } from '../../helpers/agent-process.js'
import type { ControllerProcess } from '../../helpers/controller-process.js'
import { killNats, type NatsServer } from '../../helpers/nats.js'
import { ensureLibvirtd, virsh, virshDomainNames, virshPowerState } from '../../helpers/libvirt.js'
import { call, type Decoded } from '../../helpers/grpc.js'
import { eventually } from '../../helpers/agents.js'
import { PowerState } from '../../../proto/power-state.js'
import type { CreateServerResponse, ListServersResponse, Server } from '../../../proto/gen/strato/compute/v1/servers.js'
import type { ListAllocationsResponse } from '../../../proto/gen/strato/placement/v1/placement.js'
import type { DiscoverHostsResponse, ListHostsResponse } from '../../../proto/gen/strato/compute/v1/hosts.js'

const run = promisify(execFile)

/** A libvirt agent process for `host`, its NICs on a bridge of the test's own (no uplink). */
function libvirtAgent(host: string, natsUrl: string, controller: string, bridge: string, stateDir?: string): Promise<AgentProcess> {
  return spawnAgent({
    host, natsUrl, driver: 'libvirt', ...(stateDir ? { stateDir } : {}),
    env: {
      STRATO_AGENT_CONTROLLER: controller,
      STRATO_AGENT_BRIDGE_MAPPINGS: `provider:${bridge}`,
      STRATO_AGENT_SHUTDOWN_TIMEOUT_MS: '2000',
      STRATO_AGENT_POWER_SYNC_INTERVAL_MS: '1000',
      STRATO_AGENT_DISK_GB: '50',
    },
  })
}

/** The one cloud every test here drives: nats-server, the controller and the agent, each its own process (each can be killed). */
interface Rig {
  c: CloudClients
  token: string
  p: Provisioned
  agent: AgentProcess
  waitFor: TestCloud['waitFor']
  nats: NatsServer
  ctl: ControllerProcess
}

const create = (r: Rig, name: string, extra: object = {}) =>
  call<CreateServerResponse>(r.c.servers, 'createServer', { name, flavorRef: r.p.flavor.id, imageRef: r.p.image.id, networks: [{ uuid: r.p.network.id }], ...extra }, r.token)
const get = (r: Rig, id: string) => call<Server>(r.c.servers, 'getServer', { id }, r.token)
const act = (r: Rig, method: string, id: string) => call<Server>(r.c.servers, method, { id }, r.token)
const allocations = async (r: Rig, id: string) => (await call<ListAllocationsResponse>(r.c.placement, 'listAllocations', { consumerUuid: id }, r.token)).allocations
/** Waits until the server is out of every transitional state (or gone). */
const settle = (r: Rig, id: string, ms = 120_000) => r.waitFor(id, (s) => s.taskState === '' && s.status !== 'BUILD', r.token, ms, 'the server to settle')
const gone = (r: Rig, id: string) => serverGone(r.c, id, r.token)

/** Deletes the servers and checks nothing of them is left: domain, disk, allocation. */
async function deleteAll(t: Test, r: Rig, ids: string[]): Promise<void> {
  for (const id of ids) await act(r, 'deleteServer', id).catch(() => {})
  for (const id of ids) await eventually(() => gone(r, id), 60_000, `server ${id} to be deleted`)
  const domains = await virshDomainNames()
  for (const id of ids) {
    t.notOk(domains.includes(`instance-${id}`), `no domain left for ${id}`)
    t.notOk(existsSync(path.join(r.agent.instancesDir, id)), `no disk left for ${id}`)
    t.same(await allocations(r, id), [], `no allocation left for ${id}`)
  }
}

/** The domains (of ours) libvirt has must be exactly those of the servers that should have one. */
async function domainsMatch(t: Test, r: Rig, servers: Array<Decoded<Server>>): Promise<void> {
  const ours = new Set(servers.map((s) => `instance-${s.id}`))
  const present = (await virshDomainNames()).filter((d) => ours.has(d))
  const want = servers.filter((s) => s.status === 'ACTIVE' || s.status === 'SHUTOFF').map((s) => `instance-${s.id}`)
  t.same(present.sort(), want.sort(), 'libvirt has a domain for each ACTIVE/SHUTOFF server and none for the others')
  for (const s of servers) {
    if (s.status === 'ACTIVE') t.equal(await virshPowerState(`instance-${s.id}`), PowerState.RUNNING, `${s.name}: virsh says running`)
    if (s.status === 'ERROR') {
      t.ok(s.fault?.message, `${s.name}: ERROR with a fault: ${s.fault?.message}`)
      t.same(await allocations(r, s.id), [], `${s.name}: an ERROR build holds no allocation`)
      t.notOk(existsSync(path.join(r.agent.instancesDir, s.id)), `${s.name}: no disk left`)
    }
  }
}

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root to drive qemu:///system')
} else {
  const bridges: string[] = []
  const newBridge = () => {
    const b = `brf-${randomBytes(3).toString('hex')}`
    bridges.push(b)
    return b
  }
  const cleanups: Array<() => Promise<unknown>> = []
  t.before(() => ensureLibvirtd())
  t.teardown(async () => {
    for (const f of cleanups.reverse()) await f().catch(() => {})
    for (const b of bridges) await run('ip', ['link', 'del', b]).catch(() => {})
  })
  /** Removes any domain of these servers that a failed test left behind. */
  const destroyLater = (ids: string[]) => cleanups.push(async () => {
    for (const id of ids) {
      await virsh('destroy', `instance-${id}`).catch(() => {})
      await virsh('undefine', `instance-${id}`).catch(() => {})
    }
  })

  /** One cloud for both tests (a cloud's start-up is CPU the suite shares); made by the first test that runs. */
  let rig: Promise<Rig> | undefined
  const cloud = (t: Test) => (rig ??= (async () => {
    const { nats, ctl, c } = await spawnFaultController(t, cleanups)
    const p = await provision(c, ctl.adminToken)
    const agent = await libvirtAgent('kvm-faults', nats.url, ctl.address, newBridge())
    cleanups.push(() => agent.remove())
    if (process.env.STRATO_TEST_LOG) cleanups.push(async () => t.comment(agent.log().slice(-8000)))
    await agent.running(60_000)
    await eventually(async () => (await call<DiscoverHostsResponse>(c.hosts, 'discoverHosts', {}, ctl.adminToken)).mapped.length > 0 || undefined, 10_000, 'the host to be mapped')
    return { c, token: ctl.adminToken, p, agent, waitFor: serverWaiter(c, ctl.adminToken), nats, ctl }
  })())

  t.test('agent and nats-server failures', { timeout: 600_000 }, async (t) => {
    const r = await cloud(t)
    const { agent } = r

    await t.test('the agent SIGKILLed during builds, then started again', async (t) => {
      const made = await create(r, 'crash', { minCount: 4, maxCount: 4 })
      const ids = made.servers.map((s) => s.id)
      destroyLater(ids)
      // Kill it once the first build has reached the hypervisor.
      await eventually(() => agent.log().includes('"msg":"spawn started"') || undefined, 60_000, 'a build to reach spawn')
      await agent.kill('SIGKILL')
      const during = await Promise.all(ids.map((id) => get(r, id)))
      t.ok(during.some((s) => s.status === 'BUILD'), 'builds were in flight when the agent died')
      await agent.restart()
      const after = await Promise.all(ids.map((id) => settle(r, id)))
      t.same(after.filter((s) => s.status === 'BUILD'), [], 'no server stays in BUILD')
      t.ok(after.every((s) => s.status === 'ACTIVE' || s.status === 'ERROR'), `each ends ACTIVE or ERROR: ${after.map((s) => s.status).join(', ')}`)
      await domainsMatch(t, r, after)
      const leftovers = readdirSync(agent.instancesDir).filter((d) => d !== '_base' && !ids.includes(d))
      t.same(leftovers, [], 'no stray directories in the instances dir')
      await deleteAll(t, r, ids)
    })

    await t.test('nats-server stopped while a server is created and another stopped; all recover when it is back', async (t) => {
      const first = (await create(r, 'steady')).servers[0]!
      destroyLater([first.id])
      await r.waitFor(first.id, (s) => s.status === 'ACTIVE', r.token, 120_000)
      await killNats(r.nats)
      const made = (await create(r, 'while-nats-down')).servers[0]!
      destroyLater([made.id])
      t.equal(made.status, 'BUILD', 'the API still takes the request; the cast waits for the bus')
      const stopping = await act(r, 'stopServer', first.id)
      t.equal(stopping.taskState, 'powering-off')
      await new Promise((res) => setTimeout(res, 1_000))
      await r.nats.restart()
      const up = await r.waitFor(made.id, (s) => s.status === 'ACTIVE' || s.status === 'ERROR', r.token, 120_000, 'the build queued while NATS was down')
      t.equal(up.status, 'ACTIVE', `built once NATS is back (${up.fault?.message ?? ''})`)
      const off = await r.waitFor(first.id, (s) => s.status === 'SHUTOFF' && s.taskState === '', r.token, 60_000, 'the stop queued while NATS was down')
      t.equal(await virshPowerState(`instance-${off.id}`), PowerState.SHUTDOWN, 'virsh: shut off')
      const host = await eventually(async () => {
        const hosts = (await call<ListHostsResponse>(r.c.hosts, 'listHosts', {}, r.token)).hosts
        return hosts.find((h) => h.host === 'kvm-faults' && h.state === 'up')
      }, 10_000, 'the host to be up again (heartbeats)')
      t.ok(host, 'heartbeats resumed')
      await deleteAll(t, r, [first.id, made.id])
    })
  })

  t.test('the controller SIGKILLed, with builds in flight and with a cast it never sent', { timeout: 600_000 }, async (t) => {
    const r = await cloud(t)
    const { c, ctl, nats } = r

    // Builds in flight: a build that got its spec finishes and its result waits in the event
    // stream; one that did not is postponed by the agent until the conductor answers again.
    const inFlight = (await create(r, 'ctl-crash', { minCount: 2, maxCount: 2 })).servers.map((s) => s.id)
    destroyLater(inFlight)
    await ctl.kill('SIGKILL')
    await new Promise((res) => setTimeout(res, 4_000))
    await ctl.restart()
    for (const id of inFlight) t.equal((await settle(r, id)).status, 'ACTIVE', 'a build finished while the controller was dead is ACTIVE after it returns')

    // A cast committed in the database but never put on the bus (NATS away), then the controller dies.
    await killNats(nats)
    const orphan = (await create(r, 'never-sent')).servers[0]!
    destroyLater([orphan.id])
    await ctl.kill('SIGKILL')
    await nats.restart()
    await ctl.restart()
    const built = await r.waitFor(orphan.id, (s) => s.status !== 'BUILD', r.token, 120_000, 'the unsent build')
    t.equal(built.status, 'ACTIVE', 'the restarted controller sent the cast it had committed')
    const all = await call<ListServersResponse>(c.servers, 'listServers', { allProjects: true }, ctl.adminToken)
    await domainsMatch(t, r, all.servers)
    await deleteAll(t, r, [...inFlight, orphan.id])
  })
}

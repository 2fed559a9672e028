/**
 * Fault tests of block storage on a real host: the agent daemon (libvirt,
 * volume role on the file driver) SIGKILLed in the middle of a volume's
 * create from an image, attach to a running server, in-use extend, detach
 * and delete, and started again on the same state. Each time the volume ends
 * in a stable status that matches the backend and libvirt (`virsh
 * domblklist`, live and persistent): never stuck in a transitional status,
 * never attached in libvirt while the API says available, or the reverse;
 * after the delete no file, domain device or attachment is left. And the
 * controller daemon SIGKILLed right after it took an attach, a detach (its
 * cast committed while NATS was down, never sent) and a delete: started
 * again, each is finished. No admin reset-state is used. Needs root,
 * libvirt-daemon-system, qemu-system-x86.
 */
import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import path from 'node:path'
import { promisify } from 'node:util'
import t, { type Test } from 'tap'
import { provision, serverGone, serverWaiter, spawnFaultController, startCloud, type CloudClients, type Provisioned, type TestCloud } from '../../helpers/cloud.js'
import { killNats } from '../../helpers/nats.js'
import type { AgentProcess } from '../../helpers/agent-process.js'
import { killDuring, settleVolume, spawnVolumeAgent } from '../../helpers/volume-cloud.js'
import { ensureLibvirtd, virsh } from '../../helpers/libvirt.js'
import { call, client, status, type Decoded } from '../../helpers/grpc.js'
import type { DiscoverHostsResponse } from '../../../proto/gen/strato/compute/v1/hosts.js'
import { eventually } from '../../helpers/agents.js'
import type { CreateServerResponse, Server } from '../../../proto/gen/strato/compute/v1/servers.js'
import { VolumesClient, type Volume } from '../../../proto/gen/strato/volume/v1/volume.js'

const run = promisify(execFile)
const GiB = 1024 ** 3

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root to drive qemu:///system')
} else {
  const bridge = `brvf-${randomBytes(3).toString('hex')}`
  let cloud: TestCloud
  /** What the helpers drive: the in-process cloud's, then the spawned controller's. */
  let agent: AgentProcess
  let volumes: VolumesClient
  let c: CloudClients
  let p: Pick<Provisioned, 'flavor' | 'image' | 'network'>
  let adminToken = ''
  let waitFor: TestCloud['waitFor']
  const made: string[] = []
  const cleanups: Array<() => Promise<unknown>> = []
  const libvirtAgent = (host: string, natsUrl: string, controller: string) => spawnVolumeAgent(host, natsUrl, controller, bridge)

  t.before(async () => {
    await ensureLibvirtd()
    cloud = await startCloud({ hosts: [], controller: { hosts: { heartbeatIntervalMs: 500, missedHeartbeats: 10, castAckWaitMs: 3_000 }, servers: { castRetryMs: 1_000, agentCallTimeoutMs: 20_000 } } })
    agent = await libvirtAgent('kvm-volf', cloud.nats.url, cloud.s.address)
    await agent.running(60_000)
    await eventually(async () => (await cloud.s.controller.hosts.discover()).mapped.length > 0 || undefined, 10_000, 'the host to be discovered')
    await eventually(async () => (await cloud.s.controller.db.selectFrom('volume_backends').selectAll().execute()).length === 1, 20_000, 'the volume backend')
    volumes = client(VolumesClient, cloud.s.address)
    c = cloud.c
    p = cloud
    adminToken = cloud.s.adminToken
    waitFor = cloud.waitFor
  })

  t.teardown(async () => {
    if (t.passing() === false || process.env.STRATO_TEST_LOG) t.comment(agent?.log().slice(-6000) ?? '')
    volumes?.close()
    for (const uuid of made) {
      await virsh('destroy', `instance-${uuid}`).catch(() => {})
      await virsh('undefine', `instance-${uuid}`, '--nvram').catch(() => {})
    }
    await agent?.remove()
    for (const f of cleanups.reverse()) await f().catch(() => {})
    await cloud?.close()
    await run('ip', ['link', 'del', bridge]).catch(() => {})
  })

  const token = () => adminToken
  const fileOf = (id: string) => path.join(agent.stateDir, 'volumes', `volume-${id}.qcow2`)
  const getVolume = (id: string) => call<Volume>(volumes, 'getVolume', { id }, token())
  const settle = (id: string) => settleVolume(getVolume, id)
  const blklist = async (uuid: string, inactive = false) => {
    const out = await virsh('domblklist', `instance-${uuid}`, ...(inactive ? ['--inactive'] : []))
    return Object.fromEntries(out.split('\n').slice(2).map((l) => l.trim().split(/\s+/)).filter((f) => f.length === 2) as Array<[string, string]>)
  }
  /** What the API says matches libvirt: in-use ⇔ the file on vdb of the running domain and of its definition. */
  const matchesLibvirt = async (t: Test, v: Decoded<Volume>, server: string) => {
    const live = (await blklist(server)).vdb
    const persistent = (await blklist(server, true)).vdb
    if (v.status === 'in-use') {
      t.equal(live, fileOf(v.id), 'in-use: libvirt has the volume on vdb of the running domain')
      t.equal(persistent, fileOf(v.id), 'and in its definition')
    } else {
      t.equal(live, undefined, `${v.status}: not in the running domain`)
      t.equal(persistent, undefined, 'nor in its definition')
    }
  }

  const newServer = async (t: Test, name: string) => {
    const r = await call<CreateServerResponse>(c.servers, 'createServer', { name, flavorRef: p.flavor.id, imageRef: p.image.id, networks: [{ uuid: p.network.id }] }, token())
    const server = r.servers[0]!.id
    made.push(server)
    const up = await waitFor(server, (s: Decoded<Server>) => (s.status === 'ACTIVE' && s.taskState === '') || s.status === 'ERROR', token(), 180_000, 'ACTIVE')
    t.equal(up.status, 'ACTIVE', up.fault?.message ?? '')
    return server
  }
  const gone = (id: string) => eventually(() => getVolume(id).then(() => false, (e: { code?: number }) => e.code === status.NOT_FOUND), 120_000, 'the volume deleted')

  t.test('the agent SIGKILLed during create, attach, extend, detach and delete of a volume', { timeout: 900_000 }, async (t) => {
    const server = await newServer(t, 'volf')

    let id = ''
    await killDuring(t, agent, 'volume_create started', () => id, async () => {
      id = (await call<Volume>(volumes, 'createVolume', { size: 1, name: 'from-image', imageId: p.image.id }, token())).id
    })
    const created = await settle(id)
    t.equal(created.status, 'available', `created once the agent is back (${created.statusReason})`)
    t.ok(existsSync(fileOf(id)), 'the backend has its file')
    t.equal(created.bootable, true, 'from an image: bootable')

    await killDuring(t, agent, 'attach_volume started', () => id, () => call(c.servers, 'attachVolume', { serverId: server, volumeId: id }, token()))
    const attached = await settle(id)
    t.equal(attached.status, 'in-use', `attached once the agent is back (${attached.statusReason})`)
    await matchesLibvirt(t, attached, server)

    await killDuring(t, agent, 'volume_extend started', () => id, () => call(volumes, 'extendVolume', { id, newSize: 2 }, token()))
    const grown = await settle(id)
    t.equal(grown.status, 'in-use', `extended and in use again (${grown.statusReason})`)
    t.equal(grown.size, 2)
    t.match(await virsh('domblkinfo', `instance-${server}`, 'vdb'), new RegExp(`Capacity:\\s+${2 * GiB}\\b`), 'virsh domblkinfo: QEMU sees 2 GiB')
    await matchesLibvirt(t, grown, server)

    await killDuring(t, agent, 'detach_volume started', () => id, () => call(c.servers, 'detachVolume', { serverId: server, volumeId: id }, token()))
    const detached = await settle(id)
    t.equal(detached.status, 'available', `detached once the agent is back (${detached.statusReason})`)
    t.same(detached.attachments, [])
    await matchesLibvirt(t, detached, server)

    await killDuring(t, agent, 'volume_delete started', () => id, () => call(volumes, 'deleteVolume', { id }, token()))
    await gone(id)
    t.notOk(existsSync(fileOf(id)), 'no volume file left')
    t.equal((await cloud.s.controller.db.selectFrom('volume_attachments').selectAll().execute()).length, 0, 'no attachment record left')

    await call(c.servers, 'deleteServer', { id: server }, token())
    await eventually(() => serverGone(c, server, token()), 120_000, 'the server deleted')
  })

  t.test('the controller SIGKILLed after it took an attach, a detach it could not send, and a delete', { timeout: 900_000 }, async (t) => {
    // The first agent leaves: this one talks to a controller of its own, on a nats-server of its own.
    await agent.remove()
    volumes.close()
    const fault = await spawnFaultController(t, cleanups)
    const { nats, ctl } = fault
    c = fault.c
    volumes = client(VolumesClient, ctl.address)
    cleanups.push(async () => volumes.close())
    adminToken = ctl.adminToken
    waitFor = serverWaiter(c, ctl.adminToken)
    p = await provision(c, ctl.adminToken)
    agent = await libvirtAgent('kvm-volc', nats.url, ctl.address)
    await agent.running(60_000)
    await eventually(async () => (await call<DiscoverHostsResponse>(c.hosts, 'discoverHosts', {}, ctl.adminToken)).mapped.length > 0 || undefined, 10_000, 'the host to be mapped')
    const server = await newServer(t, 'volc')
    const v = await eventually(async () => call<Volume>(volumes, 'createVolume', { size: 1, name: 'ctl-crash' }, token()).catch(() => undefined), 20_000, 'the volume backend to be reported')
    t.equal((await settle(v.id)).status, 'available')

    // Attach taken and cast, then the controller dies: the agent's result waits in the event stream.
    await call(c.servers, 'attachVolume', { serverId: server, volumeId: v.id }, token())
    await ctl.kill('SIGKILL')
    await ctl.restart()
    const attached = await settle(v.id)
    t.equal(attached.status, 'in-use', `in-use after the controller is back (${attached.statusReason})`)
    await matchesLibvirt(t, attached, server)

    // A detach committed while NATS is down (never sent), then the controller dies.
    await killNats(nats)
    await call(c.servers, 'detachVolume', { serverId: server, volumeId: v.id }, token())
    t.equal((await getVolume(v.id)).status, 'detaching')
    await ctl.kill('SIGKILL')
    await nats.restart()
    await ctl.restart()
    const detached = await settle(v.id)
    t.equal(detached.status, 'available', `the restarted controller sent the detach it had committed (${detached.statusReason})`)
    await matchesLibvirt(t, detached, server)

    // A delete taken, then the controller dies.
    await call(volumes, 'deleteVolume', { id: v.id }, token())
    await ctl.kill('SIGKILL')
    await ctl.restart()
    await gone(v.id)
    t.notOk(existsSync(fileOf(v.id)), 'no volume file left')

    await call(c.servers, 'deleteServer', { id: server }, token())
    await eventually(() => serverGone(c, server, token()), 120_000, 'the server deleted')
  })
}

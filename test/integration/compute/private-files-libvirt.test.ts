/**
 * Integration: a guest's files are private and QEMU still reaches them (issue
 * 15). The agent daemon on the libvirt driver (TCG without /dev/kvm) builds
 * two servers from one image: every directory on the way (state dir,
 * instances, the instance's own, the image cache) is 0710 root:libvirt-qemu,
 * every file (disk, config drive, console log, cached base) 0600; QEMU runs as
 * libvirt-qemu, not root, and both guests print their marker — through group
 * search alone, with the base shared as a backing file. libvirt's
 * dynamic_ownership hands the disk to QEMU while the guest runs and back to
 * root when it stops; the shared base stays usable by the next guest after
 * the first is deleted. An unprivileged user reads none of it.
 * Needs root, libvirt-daemon-system, qemu-system-x86.
 */
import { readFileSync, statSync } from 'node:fs'
import { spawnSync } from 'node:child_process'
import path from 'node:path'
import t from 'tap'
import { serverGone, startCloud, type TestCloud } from '../../helpers/cloud.js'
import { spawnAgent, type AgentProcess } from '../../helpers/agent-process.js'
import { ensureLibvirtd, virsh } from '../../helpers/libvirt.js'
import { call, type Decoded } from '../../helpers/grpc.js'
import { eventually } from '../../helpers/agents.js'
import { groupId } from '../../../agent/disk/guest-dirs.js'
import type { ConsoleOutput, CreateServerResponse, Server } from '../../../proto/gen/strato/compute/v1/servers.js'

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root to drive qemu:///system')
} else {
  let cloud: TestCloud
  let agent: AgentProcess
  const made: string[] = []
  const qemuGid = groupId('libvirt-qemu')
  const qemuUid = Number(spawnSync('id', ['-u', 'libvirt-qemu'], { encoding: 'utf8' }).stdout.trim())

  t.before(async () => {
    await ensureLibvirtd()
    cloud = await startCloud({ hosts: [], controller: { hosts: { heartbeatIntervalMs: 500, missedHeartbeats: 10 }, servers: { castRetryMs: 1_000, agentCallTimeoutMs: 20_000 } } })
    agent = await spawnAgent({
      host: 'kvm-files', natsUrl: cloud.nats.url, driver: 'libvirt',
      // No NICs here: no bridge, filtering, DHCP or metadata to set up.
      env: { STRATO_AGENT_CONTROLLER: cloud.s.address, STRATO_AGENT_FIREWALL: 'none', STRATO_AGENT_DHCP: 'off', STRATO_AGENT_METADATA: 'off', STRATO_AGENT_SHUTDOWN_TIMEOUT_MS: '1000', STRATO_AGENT_DISK_GB: '50' },
    })
    await agent.running(60_000)
    await eventually(async () => (await cloud.s.controller.hosts.discover()).mapped.length > 0 || undefined, 10_000, 'the host to be discovered')
  })

  t.teardown(async () => {
    if (t.passing() === false || process.env.STRATO_TEST_LOG) t.comment(agent?.log().slice(-6000) ?? '')
    for (const uuid of made) {
      await virsh('destroy', `instance-${uuid}`).catch(() => {})
      await virsh('undefine', `instance-${uuid}`, '--nvram').catch(() => {})
    }
    await agent?.remove()
    await cloud?.close()
  })

  const stat = (p: string) => {
    const s = statSync(p)
    return { mode: (s.mode & 0o7777).toString(8).padStart(4, '0'), uid: s.uid, gid: s.gid }
  }
  const consoleHas = async (id: string) => (await call<ConsoleOutput>(cloud.c.servers, 'getConsoleOutput', { id }, cloud.s.adminToken)).output.includes(cloud.marker) || undefined
  const boot = async (name: string) => {
    const r = await call<CreateServerResponse>(cloud.c.servers, 'createServer', { name, flavorRef: cloud.flavor.id, imageRef: cloud.image.id, networkMode: 'none' }, cloud.s.adminToken)
    const id = r.servers[0]!.id
    made.push(id)
    const up = await cloud.waitFor(id, (x: Decoded<Server>) => (x.status === 'ACTIVE' && x.taskState === '') || x.status === 'ERROR', cloud.s.adminToken, 120_000, 'ACTIVE')
    if (up.status !== 'ACTIVE') throw new Error(`server ${name} is ${up.status}: ${up.fault?.message ?? 'no fault'}`)
    await eventually(() => consoleHas(id), 90_000, `${name}'s marker on the console`)
    return id
  }

  t.test('guest files are 0600 behind 0710 directories of QEMU\'s group, and guests boot', { timeout: 600_000 }, async (t) => {
    const first = await boot('files-1')
    t.pass('the first guest printed its marker')
    const dir = path.join(agent.instancesDir, first)
    const base = path.join(agent.instancesDir, '_base', `${cloud.image.id}.qcow2`)
    for (const d of [agent.stateDir, agent.instancesDir, path.join(agent.instancesDir, '_base'), dir]) {
      t.same(stat(d), { mode: '0710', uid: 0, gid: qemuGid }, `${path.relative(agent.stateDir, d) || 'state dir'}: root:libvirt-qemu 0710 (search only)`)
    }
    t.match(stat(path.join(agent.stateDir, 'compute_id')), { mode: '0600' }, 'compute_id 0600')
    for (const f of ['disk', 'disk.config', 'console.log']) t.match(stat(path.join(dir, f)), { mode: '0600' }, `${f} is 0600`)
    t.match(stat(base), { mode: '0600' }, 'the cached base is 0600')
    t.match(stat(path.join(dir, 'disk')), { uid: qemuUid }, "libvirt gave the running guest's disk to QEMU (dynamic_ownership)")
    t.match(stat(base), { uid: qemuUid }, '… and its backing file, the base')
    t.match(readFileSync(path.join(dir, 'console.log'), 'utf8'), cloud.marker, 'the console log holds the marker')

    const pid = spawnSync('pgrep', ['-f', `guest=instance-${first}`], { encoding: 'utf8' }).stdout.trim().split('\n')[0]!
    const status = readFileSync(`/proc/${pid}/status`, 'utf8')
    t.match(status, new RegExp(`\\nUid:\\s+${qemuUid}\\s`), 'QEMU runs as libvirt-qemu, not root: the group is its only way in')

    for (const f of [path.join(dir, 'disk'), path.join(dir, 'disk.config'), base]) {
      const r = spawnSync('runuser', ['-u', 'nobody', '--', 'cat', f], { encoding: 'utf8' })
      t.match(r.stderr, /Permission denied/, `nobody cannot read ${path.relative(agent.instancesDir, f)}`)
    }

    // A second guest on the same base, at the same time.
    const second = await boot('files-2')
    t.pass('a second guest on the shared base printed its marker')

    // Stopped: the disk is root's again, still 0600.
    await call(cloud.c.servers, 'stopServer', { id: first }, cloud.s.adminToken)
    await cloud.waitFor(first, (x: Decoded<Server>) => x.status === 'SHUTOFF' && x.taskState === '', cloud.s.adminToken, 60_000, 'SHUTOFF')
    t.same(stat(path.join(dir, 'disk')), { mode: '0600', uid: 0, gid: 0 }, 'a stopped guest\'s disk is back to root:root 0600')

    // The first goes; the base it shared still serves the second (running) and a third.
    await call(cloud.c.servers, 'deleteServer', { id: first }, cloud.s.adminToken)
    await eventually(() => serverGone(cloud.c, first, cloud.s.adminToken), 60_000, 'the first server to be deleted')
    await call(cloud.c.servers, 'rebootServer', { id: second, type: 'HARD' }, cloud.s.adminToken)
    await cloud.waitFor(second, (x: Decoded<Server>) => x.status === 'ACTIVE' && x.taskState === '', cloud.s.adminToken, 60_000, 'ACTIVE')
    t.equal((await virsh('domstate', `instance-${second}`)).trim(), 'running', 'the second guest restarts on the shared base after the first is gone')
    const third = await boot('files-3')
    t.pass('a third guest boots from the cached base')
    t.match(stat(base), { mode: '0600' }, 'the base is still 0600')
    for (const id of [second, third]) {
      await call(cloud.c.servers, 'deleteServer', { id }, cloud.s.adminToken)
      await eventually(() => serverGone(cloud.c, id, cloud.s.adminToken), 60_000, 'the server to be deleted')
    }
  })
}

/**
 * Integration, end to end on a real host: the controller, a real nats-server,
 * and the agent daemon as its own process driving libvirt (KVM, TCG without
 * /dev/kvm). An image uploaded through the API boots as a server on the
 * provider network; its console shows the image's marker; stop, start, soft
 * and hard reboot each leave `virsh list --all` agreeing with the API; delete
 * leaves no domain, no disk, no port and no allocation behind.
 *
 * Then, on the same cloud (a cloud's start-up is CPU the suite shares), a
 * guest's files are private and QEMU still reaches them (issue 15): the agent
 * builds servers from one image: every directory on the way (state dir,
 * instances, the instance's own, the image cache) is 0710 root:libvirt-qemu,
 * every file (disk, config drive, console log, cached base) 0600; QEMU runs as
 * libvirt-qemu, not root, and the guests print their marker — through group
 * search alone, with the base shared as a backing file. libvirt's
 * dynamic_ownership hands the disk to QEMU while the guest runs and back to
 * root when it stops; the shared base stays usable by the next guest after
 * the first is deleted. An unprivileged user reads none of it.
 * Needs root, libvirt-daemon-system, qemu-system-x86.
 */
import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, readFileSync, statSync } from 'node:fs'
import { spawnSync } from 'node:child_process'
import path from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'
import { serverGone, startCloud, type TestCloud } from '../../helpers/cloud.js'
import { spawnAgent, type AgentProcess } from '../../helpers/agent-process.js'
import { ensureLibvirtd, virsh, virshDomainNames, virshPowerState } from '../../helpers/libvirt.js'
import { call, type Decoded } from '../../helpers/grpc.js'
import { eventually } from '../../helpers/agents.js'
import { groupId } from '../../../agent/disk/guest-dirs.js'
import { PowerState } from '../../../proto/power-state.js'
import type { ConsoleOutput, CreateServerResponse, Server } from '../../../proto/gen/strato/compute/v1/servers.js'
import type { ListAllocationsResponse } from '../../../proto/gen/strato/placement/v1/placement.js'
import type { ListPortsResponse } from '../../../proto/gen/strato/network/v1/network.js'

const run = promisify(execFile)

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root to drive qemu:///system')
} else {
  // A bridge of this run's own (no uplink: nothing leaves the machine), removed at the end.
  const bridge = `brs-${randomBytes(3).toString('hex')}`
  let cloud: TestCloud
  let agent: AgentProcess
  const made: string[] = []

  t.before(async () => {
    await ensureLibvirtd()
    // Heartbeats as in the fault tests: a host is down after 5 s without one, not 1 s (QEMU and a
    // second test file share the two cores; a late heartbeat must not make the host look dead).
    cloud = await startCloud({ hosts: [], controller: { hosts: { heartbeatIntervalMs: 500, missedHeartbeats: 10 }, servers: { castRetryMs: 1_000, agentCallTimeoutMs: 20_000 } } })
    agent = await spawnAgent({
      host: 'kvm-e2e', natsUrl: cloud.nats.url, driver: 'libvirt',
      env: {
        STRATO_AGENT_CONTROLLER: cloud.s.address,
        STRATO_AGENT_BRIDGE_MAPPINGS: `provider:${bridge}`,
        STRATO_AGENT_SHUTDOWN_TIMEOUT_MS: '3000',
        STRATO_AGENT_POWER_SYNC_INTERVAL_MS: '1000',
        STRATO_AGENT_DISK_GB: '50',
      },
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
    await run('ip', ['link', 'del', bridge]).catch(() => {})
  })

  const get = (id: string) => call<Server>(cloud.c.servers, 'getServer', { id }, cloud.s.adminToken)
  const act = (method: string, id: string, extra: object = {}) => call<Server>(cloud.c.servers, method, { id, ...extra }, cloud.s.adminToken)
  const console = async (id: string) => (await call<ConsoleOutput>(cloud.c.servers, 'getConsoleOutput', { id }, cloud.s.adminToken)).output
  // Settled in `want`, or failed: an ERROR ends the wait at once, with its fault.
  const wait = async (id: string, want: string, ms = 60_000) => {
    const s = await cloud.waitFor(id, (x: Decoded<Server>) => (x.status === want && x.taskState === '') || x.status === 'ERROR', cloud.s.adminToken, ms, want)
    if (s.status !== want) throw new Error(`server ${id} is ${s.status}, not ${want}: ${s.fault?.message ?? 'no fault'}`)
    return s
  }

  t.test('a server boots from an uploaded image, and virsh agrees with the API through every action', { timeout: 600_000 }, async (t) => {
    const r = await call<CreateServerResponse>(cloud.c.servers, 'createServer', {
      name: 'e2e', flavorRef: cloud.flavor.id, imageRef: cloud.image.id, networks: [{ uuid: cloud.network.id }],
    }, cloud.s.adminToken)
    const id = r.servers[0]!.id
    made.push(id)
    const domain = `instance-${id}`
    const up = await wait(id, 'ACTIVE', 120_000)
    t.equal(up.host, 'kvm-e2e')
    t.equal(up.powerState, PowerState.RUNNING)
    t.equal(await virshPowerState(domain), PowerState.RUNNING, 'virsh: running')
    const xml = await virsh('dumpxml', domain)
    t.match(xml, `<source bridge='${bridge}'/>`, 'the NIC is on the bridge the provider network maps to')
    t.match(xml, up.addresses[0]!.macAddr, "with the port's MAC")
    t.match(xml, /<memory unit='KiB'>65536<\/memory>/, "the flavor's RAM")
    t.match(xml, new RegExp(`<disk type='file' device='cdrom'>[\\s\\S]*?<source file='[^']*/${id}/disk.config'[\\s\\S]*?<readonly/>`), 'the config drive, a read-only CD-ROM')
    t.equal(up.configDrive, 'True')
    // Security groups on the host: the guest's tap is named after its port, and its chains hold the default group.
    const portId = (await call<ListPortsResponse>(cloud.c.ports, 'listPorts', { deviceId: id }, cloud.s.adminToken)).ports[0]!.id
    t.match(xml, `<target dev='tap${portId.slice(0, 11)}'/>`, "the tap is named after the port (tap + 11 characters of its id)")
    const chains = (await run('iptables-save', ['-t', 'filter'])).stdout
    t.match(chains, `-A strato-s-${portId.slice(0, 11)} -s ${up.addresses[0]!.addr}/32 -m mac --mac-source ${up.addresses[0]!.macAddr} -j RETURN`, 'anti-spoofing: its own address and MAC')
    t.match(chains, `-A strato-i-${portId.slice(0, 11)} -s ${up.addresses[0]!.addr}/32 -j RETURN`, 'ingress from the members of its default group')
    t.match(chains, `-A strato-i-${portId.slice(0, 11)} -j DROP`, 'and nothing else')
    t.match(await virsh('qemu-monitor-command', domain, '--hmp', 'info block'), new RegExp(`${id}/disk\\.config \\(raw, read-only\\)`), 'QEMU has the drive open, read-only')
    const out = await eventually(async () => ((await console(id)).includes(cloud.marker) ? true : undefined), 60_000, 'the marker on the console')
    t.ok(out, 'GetConsoleOutput shows what the guest printed')

    await act('stopServer', id)
    const off = await wait(id, 'SHUTOFF')
    t.equal(off.powerState, PowerState.SHUTDOWN)
    t.equal(await virshPowerState(domain), PowerState.SHUTDOWN, 'virsh: shut off')

    await act('startServer', id)
    await wait(id, 'ACTIVE')
    t.equal(await virshPowerState(domain), PowerState.RUNNING, 'virsh: running again')

    // The boot sector ignores ACPI: a soft reboot falls back to a hard one after the shutdown timeout.
    const soft = await act('rebootServer', id, { type: 'SOFT' })
    t.equal(soft.status, 'REBOOT')
    await wait(id, 'ACTIVE')
    t.equal(await virshPowerState(domain), PowerState.RUNNING, 'virsh: running after a soft reboot')
    const hard = await act('rebootServer', id, { type: 'HARD' })
    t.equal(hard.status, 'HARD_REBOOT')
    await wait(id, 'ACTIVE')
    t.equal(await virshPowerState(domain), PowerState.RUNNING, 'virsh: running after a hard reboot')
    await eventually(async () => ((await console(id)).includes(cloud.marker) ? true : undefined), 60_000, 'the marker after the reboots')

    // Power-state sync: the guest destroyed behind Strato's back is seen as SHUTOFF.
    await virsh('destroy', domain)
    const synced = await wait(id, 'SHUTOFF', 20_000)
    t.equal(synced.powerState, PowerState.SHUTDOWN, 'the sync notices a guest stopped outside Strato')
    await act('startServer', id)
    await wait(id, 'ACTIVE')

    await act('deleteServer', id)
    await eventually(() => serverGone(cloud.c, id, cloud.s.adminToken), 60_000, 'the server to be gone')
    t.notOk((await virshDomainNames()).includes(domain), 'virsh: no domain left')
    t.notOk(existsSync(path.join(agent.instancesDir, id)), 'no disk or console log left')
    t.same((await call<ListPortsResponse>(cloud.c.ports, 'listPorts', { deviceId: id }, cloud.s.adminToken)).ports, [], 'its port is deleted')
    t.same((await call<ListAllocationsResponse>(cloud.c.placement, 'listAllocations', { consumerUuid: id }, cloud.s.adminToken)).allocations, [], 'its allocation is released')
    t.ok(existsSync(path.join(agent.instancesDir, '_base', `${cloud.image.id}.qcow2`)), 'the cached base image stays for the next boot')
  })

  const stat = (p: string) => {
    const s = statSync(p)
    return { mode: (s.mode & 0o7777).toString(8).padStart(4, '0'), uid: s.uid, gid: s.gid }
  }
  const qemuGid = groupId('libvirt-qemu')
  const qemuUid = Number(spawnSync('id', ['-u', 'libvirt-qemu'], { encoding: 'utf8' }).stdout.trim())
  const consoleHas = async (id: string) => (await call<ConsoleOutput>(cloud.c.servers, 'getConsoleOutput', { id }, cloud.s.adminToken)).output.includes(cloud.marker) || undefined
  const bootNoNic = async (name: string) => {
    const r = await call<CreateServerResponse>(cloud.c.servers, 'createServer', { name, flavorRef: cloud.flavor.id, imageRef: cloud.image.id, networkMode: 'none' }, cloud.s.adminToken)
    const id = r.servers[0]!.id
    made.push(id)
    const up = await cloud.waitFor(id, (x: Decoded<Server>) => (x.status === 'ACTIVE' && x.taskState === '') || x.status === 'ERROR', cloud.s.adminToken, 120_000, 'ACTIVE')
    if (up.status !== 'ACTIVE') throw new Error(`server ${name} is ${up.status}: ${up.fault?.message ?? 'no fault'}`)
    await eventually(() => consoleHas(id), 90_000, `${name}'s marker on the console`)
    return id
  }

  t.test('guest files are 0600 behind 0710 directories of QEMU\'s group, and guests boot', { timeout: 600_000 }, async (t) => {
    const first = await bootNoNic('files-1')
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
    const second = await bootNoNic('files-2')
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
    const third = await bootNoNic('files-3')
    t.pass('a third guest boots from the cached base')
    t.match(stat(base), { mode: '0600' }, 'the base is still 0600')
    for (const id of [second, third]) {
      await call(cloud.c.servers, 'deleteServer', { id }, cloud.s.adminToken)
      await eventually(() => serverGone(cloud.c, id, cloud.s.adminToken), 60_000, 'the server to be deleted')
    }
  })
}

/**
 * Integration, end to end on a real host: a volume of one host attached to a
 * server of another, over the network. Two libvirt agents as their own
 * processes: host A with the volume role (qcow2 files, NBD exports on
 * 127.0.0.1 with the test CA's server certificate), host B with no volume
 * role, its own instances dir, and the network path forced. The volume on A
 * attached to a server on B is an NBD network disk of the domain (`virsh
 * domblklist`/`dumpxml`: `<disk type='network'>`, protocol nbd, TLS on)
 * served by one qemu-storage-daemon on A; the guest's QEMU reads through it
 * (HMP qemu-io on the disk's node) what A wrote, and what qemu-io writes
 * through the export with the cloud's client certificate (a client without
 * one is refused) is read by the guest's QEMU and is in the volume's file on
 * A after the detach; the detach ends the export; after the deletes no file,
 * export process or domain device is left. QEMU presents the client
 * certificate libvirt keeps in /etc/pki/qemu (qemu.conf's NBD default),
 * which names host B: another host's certificate of the same CA is refused.
 * Faults: host B's agent SIGKILLed during an attach and during a detach, and
 * host A's agent with the export server while the volume is in-use, each
 * started again: the volume ends in-use or available as libvirt and the
 * export servers running say, the guest's QEMU reading through the export
 * served again.
 * A multiattach volume of host A attached to two servers of host A (the
 * machine's libvirt then presents host A's client certificate): both domains
 * have the volume's one NBD export as a raw `<shareable/>` disk (QEMU refuses
 * a second writer of the qcow2 file), what one guest's QEMU writes the other
 * reads, a snapshot is taken by the export's daemon, one detach leaves the
 * other server attached and the export serving, the last one ends it.
 * Needs root, libvirt-daemon-system, qemu-system-x86, qemu-utils,
 * qemu-system-common (qemu-storage-daemon).
 */
import { execFile } from 'node:child_process'
import { chmodSync, existsSync, mkdtempSync, rmSync } from 'node:fs'
import { readFile, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import t, { type Test } from 'tap'
import { serverGone, type TestCloud } from '../../helpers/cloud.js'
import type { AgentProcess } from '../../helpers/agent-process.js'
import { virsh, virshDomainNames } from '../../helpers/libvirt.js'
import { call, client, status, type Decoded } from '../../helpers/grpc.js'
import { eventually } from '../../helpers/agents.js'
import { libvirtNbdTls, nbdIo } from '../../helpers/nbd-tls.js'
import { exportServersUnder, killDuring, settleVolume, startVolumeCloud, type VolumeCloud } from '../../helpers/volume-cloud.js'
import type { CreateServerResponse, Server } from '../../../proto/gen/strato/compute/v1/servers.js'
import { SnapshotsClient, VolumeTypesClient, type Snapshot, type Volume, type VolumeType, type VolumesClient } from '../../../proto/gen/strato/volume/v1/volume.js'

const run = promisify(execFile)
const GiB = 1024 ** 3

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root to drive qemu:///system')
} else {
  let vc: VolumeCloud
  let cloud: TestCloud
  let hostA: AgentProcess
  let hostB: AgentProcess
  let volumes: VolumesClient
  let made: string[] = []
  let tls: Awaited<ReturnType<typeof libvirtNbdTls>>
  const scratch = mkdtempSync(path.join(tmpdir(), 'strato-nbd-it-'))
  // Host B's instances dir is in here: QEMU (another user) must traverse it.
  chmodSync(scratch, 0o711)

  t.before(async () => {
    tls = await libvirtNbdTls(scratch, 'kvm-nbd-b')
    vc = await startVolumeCloud({
      host: 'kvm-nbd-a', bridgePrefix: 'brn',
      agentEnv: { STRATO_AGENT_VOLUME_EXPORT_ADDRESS: '127.0.0.1', STRATO_AGENT_VOLUME_EXPORT_TLS_DIR: tls.serverDir },
    })
    ;({ cloud, agent: hostA, volumes, made } = vc)
    hostB = await vc.volumeAgent('kvm-nbd-b', {
      STRATO_AGENT_VOLUME: 'off', STRATO_AGENT_VOLUME_ATTACH: 'network', STRATO_AGENT_INSTANCES_DIR: path.join(scratch, 'instances-b'),
    })
  })

  t.teardown(async () => {
    await vc?.close(t)
    rmSync(scratch, { recursive: true, force: true })
  })

  const token = () => cloud.s.adminToken
  const getVolume = (id: string) => call<Volume>(volumes, 'getVolume', { id }, token())
  const waitVolume = async (id: string, want: string, ms = 120_000) => {
    let last: Decoded<Volume> | undefined
    return eventually(async () => {
      last = await getVolume(id)
      if (last.status === 'error') throw new Error(`volume ${id} is in error: ${last.statusReason}`)
      return last.status === want ? last : undefined
    }, ms, `volume ${id} ${want}`).catch((err: Error) => {
      throw new Error(`${err.message}; last: ${last?.status} ${last?.statusReason}`)
    })
  }
  const domain = (uuid: string) => `instance-${uuid}`
  /** The disk element of `device` in the domain's live (or persistent) XML. */
  const diskXml = async (uuid: string, device: string, inactive = false) => {
    const xml = await virsh('dumpxml', ...(inactive ? ['--inactive'] : []), domain(uuid))
    return [...xml.matchAll(/<disk[\s\S]*?<\/disk>/g)].map((m) => m[0]).find((d) => d.includes(`dev='${device}'`))
  }
  /**
   * QEMU of the guest runs qemu-io on the disk's node: libvirt names it libvirt-<source index>-format,
   * or -storage when a raw disk needs no format layer.
   */
  const qemuIo = async (uuid: string, device: string, command: string) => {
    const index = /<source [^>]*index='(\d+)'/.exec((await diskXml(uuid, device)) ?? '')?.[1]
    if (!index) throw new Error(`no source index for ${device} in the live XML`)
    const log = `/var/log/libvirt/qemu/${domain(uuid)}.log`
    let reply = ''
    for (const node of [`libvirt-${index}-format`, `libvirt-${index}-storage`]) {
      const before = (await readFile(log, 'utf8')).length
      reply = await virsh('qemu-monitor-command', domain(uuid), '--hmp', `qemu-io ${node} "${command}"`)
      if (/not found|cannot find|no such/i.test(reply)) continue
      // qemu-io prints to QEMU's stdout, which libvirt keeps in the domain's log (or HMP answers it).
      return eventually(async () => {
        const added = `${reply}\n${(await readFile(log, 'utf8')).slice(before)}`
        return /(wrote|read) \d+\/\d+ bytes|verification failed|error/i.test(added) ? added : undefined
      }, 30_000, `qemu-io output for ${node} (HMP said: ${reply.trim() || 'nothing'})`)
    }
    throw new Error(`no block node of ${device} for qemu-io: ${reply}`)
  }

  /** What the API says matches libvirt: in-use ⇔ the volume's NBD export on vdb of the running domain and of its definition. */
  const matchesLibvirt = async (t: Test, v: Decoded<Volume>, server: string) => {
    const live = await virsh('domblklist', domain(server))
    const persistent = await virsh('domblklist', '--inactive', domain(server))
    const on = new RegExp(`vdb\\s+volume-${v.id}`)
    if (v.status === 'in-use') {
      t.match(live, on, 'in-use: virsh domblklist has the export on vdb of the running domain')
      t.match(persistent, on, 'and in its definition')
    } else {
      t.notMatch(live, /vdb/, `${v.status}: not in the running domain`)
      t.notMatch(persistent, /vdb/, 'nor in its definition')
    }
  }

  t.test('a volume of host A attached to a server of host B is an NBD network disk; what the guest writes is in the file after detach; nothing is left after the deletes', { timeout: 900_000 }, async (t) => {
    // The server on B (an admin's zone:host), the volume on A (the only volume backend).
    const r = await call<CreateServerResponse>(cloud.c.servers, 'createServer', { name: 'nbd-b', flavorRef: cloud.flavor.id, imageRef: cloud.image.id, networks: [{ uuid: cloud.network.id }], availabilityZone: `nova:${hostB.host}` }, token())
    const s = r.servers[0]!
    made.push(s.id)
    const server = await cloud.waitFor(s.id, (x: Decoded<Server>) => (x.status === 'ACTIVE' && x.taskState === '') || x.status === 'ERROR', token(), 300_000, 'ACTIVE')
    t.equal(server.status, 'ACTIVE', `the server runs: ${server.fault?.message ?? ''}`)
    t.equal(server.host, hostB.host, 'on host B')
    t.ok(existsSync(path.join(hostB.instancesDir, s.id)), 'with its disk in B\'s own instances dir')
    const created = await call<Volume>(volumes, 'createVolume', { size: 1, name: 'far' }, token())
    const v = await waitVolume(created.id, 'available')
    t.ok(existsSync(vc.fileOf(v.id, hostA)), 'the volume file is on host A')

    // Written on A before the attach, with qemu-io on the file: B's guest must read it over the network.
    await run('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0xab 0 64k', vc.fileOf(v.id, hostA)])

    await call(cloud.c.servers, 'attachVolume', { serverId: s.id, volumeId: v.id }, token())
    await waitVolume(v.id, 'in-use')
    const disk = await diskXml(s.id, 'vdb')
    t.match(disk, /<disk type='network' device='disk'>/, 'virsh dumpxml: a network disk')
    t.match(disk, new RegExp(`<source protocol='nbd' name='volume-${v.id}' tls='yes'`), 'the NBD export of the volume, over TLS')
    t.match(disk, /<host name='127\.0\.0\.1' port='\d+'\/>/, 'served at host A\'s export address')
    t.match(await diskXml(s.id, 'vdb', true) ?? '', /protocol='nbd'/, 'in the persistent definition too')
    t.match(await virsh('domblklist', domain(s.id)), new RegExp(`vdb\\s+volume-${v.id}`), 'virsh domblklist lists it')
    const servers = await exportServersUnder(hostA.stateDir)
    t.equal(servers.length, 1, 'one export server runs on host A')

    // The guest's QEMU (its disk node; the guest's device holds the only write permission) reads through the export.
    t.match(await qemuIo(s.id, 'vdb', 'read -P 0xab 0 64k'), /read 65536\/65536 bytes/, 'QEMU on B reads what A has')
    t.match(await qemuIo(s.id, 'vdb', 'read -P 0xcd 0 64k'), /verification failed/, '(and the check can fail: another pattern is not there)')
    // Written through the export by another client with the cloud's client certificate, as a guest on another host would.
    const at = /<host name='([^']+)' port='(\d+)'/.exec(disk ?? '')!
    const target = { address: at[1]!, port: Number(at[2]), name: `volume-${v.id}` }
    t.match(await nbdIo(target, tls.libvirtClientDir, 'write -P 0x5a 1M 64k'), /wrote 65536\/65536 bytes/, 'qemu-io writes through the export')
    t.match(await qemuIo(s.id, 'vdb', 'read -P 0x5a 1M 64k'), /read 65536\/65536 bytes/, 'and the guest\'s QEMU reads it over NBD')
    await t.rejects(nbdIo(target, undefined, 'read 0 512'), 'a client without the certificate is refused')
    await t.rejects(nbdIo(target, await tls.clientFor(hostA.host), 'read 0 512'), 'another host\'s certificate of the same CA (CN=kvm-nbd-a) is refused: the export is for host B only')
    await t.rejects(nbdIo(target, tls.clientDir, 'read 0 512'), 'as is a certificate of the CA naming no host')

    // Extended while in use over the network: host A grows it through its export, and B's QEMU learns
    // the size (Nova's volume-extended event: an extend_volume cast to B through the controller).
    const capacity = async () => Number(/Capacity:\s+(\d+)/.exec(await virsh('domblkinfo', domain(s.id), 'vdb'))?.[1])
    t.equal(await capacity(), 1 * GiB, 'virsh domblkinfo on B: 1 GiB before')
    await call(volumes, 'extendVolume', { id: v.id, newSize: 2 }, token())
    t.equal((await waitVolume(v.id, 'in-use')).size, 2, 'extended: in-use again at 2 GiB')
    await eventually(async () => (await capacity()) === 2 * GiB, 120_000, 'QEMU on B to see 2 GiB')
    t.pass('virsh domblkinfo on B: QEMU has the disk at 2 GiB')
    t.match(await qemuIo(s.id, 'vdb', 'read -P 0 1536M 64k'), /read 65536\/65536 bytes/, 'and reads past the old end through the export')
    t.match(await qemuIo(s.id, 'vdb', 'read -P 0xab 0 64k'), /read 65536\/65536 bytes/, 'with the data it had')
    const virtualSize = async () => (JSON.parse((await run('qemu-img', ['info', '-U', '--output=json', vc.fileOf(v.id, hostA)])).stdout) as { 'virtual-size': number })['virtual-size']
    t.equal(await virtualSize(), 2 * GiB, 'the volume file on A is 2 GiB (qemu-img info)')
    t.notOk((await call<Server>(cloud.c.servers, 'getServer', { id: s.id }, token())).fault?.message, 'no fault on the server')
    // Host B's agent down meanwhile: the extend is done (in-use at 3 GiB, as Cinder), and B's QEMU learns the size when B is back.
    await hostB.kill('SIGKILL')
    await call(volumes, 'extendVolume', { id: v.id, newSize: 3 }, token())
    t.equal((await waitVolume(v.id, 'in-use')).size, 3, 'B down: the extend is done all the same (in-use at 3 GiB)')
    t.equal(await capacity(), 2 * GiB, 'B\'s QEMU still has 2 GiB while B\'s agent is down')
    await hostB.restart()
    await eventually(async () => (await capacity()) === 3 * GiB, 120_000, 'QEMU on B to see 3 GiB once B is back')
    t.pass('B back: its QEMU has the disk at 3 GiB')
    t.equal((await getVolume(v.id)).status, 'in-use', 'and the volume is in-use')

    // A snapshot while in use over the network (--force) is copy-on-write: host A's export daemon moves onto
    // a new active file (QMP blockdev-snapshot; the export follows the node) while B's guest goes on; the old
    // file, frozen under its name, is the snapshot's data. The export and its daemon stay.
    const snapshots = client(SnapshotsClient, cloud.s.address)
    t.teardown(() => snapshots.close())
    const daemons = await exportServersUnder(hostA.stateDir)
    const frozen = await stat(vc.fileOf(v.id, hostA))
    const snap = await call<Snapshot>(snapshots, 'createSnapshot', { volumeId: v.id, name: 'over-nbd', force: true }, token())
    await eventually(async () => {
      const x = await call<Snapshot>(snapshots, 'getSnapshot', { id: snap.id }, token())
      if (x.status === 'error') throw new Error(`snapshot failed: ${x.statusReason}`)
      return x.status === 'available'
    }, 120_000, 'the snapshot available')
    const layer = path.join(path.dirname(vc.fileOf(v.id, hostA)), `volume-${v.id}.${snap.id}.qcow2`)
    t.same(await exportServersUnder(hostA.stateDir), daemons, 'the same export daemon serves on')
    const after = await stat(vc.fileOf(v.id, hostA))
    t.same([after.ino, after.size], [frozen.ino, frozen.size], 'the snapshot\'s data is the volume\'s old file: same inode and size, nothing copied')
    t.match((await run('qemu-img', ['info', '-U', '--output=json', layer])).stdout, new RegExp(`"backing-filename": "${path.basename(vc.fileOf(v.id, hostA))}"`), 'the new active file is an overlay on it')
    t.match((await run('qemu-io', ['-r', '-U', '-f', 'qcow2', '-c', 'read -P 0x5a 1M 64k', '-c', 'read -P 0xab 0 64k', vc.fileOf(v.id, hostA)])).stdout, /read 65536\/65536[\s\S]*read 65536\/65536/, 'the snapshot has the data written over the export and before')
    t.match(await qemuIo(s.id, 'vdb', 'read -P 0xab 0 64k'), /read 65536\/65536 bytes/, 'QEMU on B reads on through the export')
    await call(snapshots, 'deleteSnapshot', { id: snap.id }, token())
    await eventually(() => call(snapshots, 'getSnapshot', { id: snap.id }, token()).then(() => false, (e: { code?: number }) => e.code === status.NOT_FOUND), 60_000, 'the snapshot deleted')
    t.notOk(existsSync(vc.fileOf(v.id, hostA)), 'deleted: the frozen file is gone (the export\'s daemon pulled it into the active file)')
    t.notMatch((await run('qemu-img', ['info', '-U', '--output=json', layer])).stdout, /backing-filename/, 'which stands alone')
    t.match(await qemuIo(s.id, 'vdb', 'read -P 0xab 0 64k'), /read 65536\/65536 bytes/, 'QEMU on B reads its data on')

    await call(cloud.c.servers, 'detachVolume', { serverId: s.id, volumeId: v.id }, token())
    await waitVolume(v.id, 'available')
    t.notOk(await diskXml(s.id, 'vdb'), 'detached: not in the running domain')
    t.notOk(await diskXml(s.id, 'vdb', true), 'nor in its definition')
    await eventually(async () => (await exportServersUnder(hostA.stateDir)).length === 0, 60_000, 'the export server to stop')
    t.pass('the detach ended the export')
    const check = await run('qemu-io', ['-f', 'qcow2', '-c', 'read -P 0x5a 1M 64k', '-c', 'read -P 0xab 0 64k', layer])
    t.match(check.stdout, /read 65536\/65536 bytes at offset 1048576[\s\S]*read 65536\/65536 bytes at offset 0/, 'what was written through the export is in the volume file on A, beside what was there')
    // qemu-io exits 1 when the pattern is not there.
    const other = await run('qemu-io', ['-f', 'qcow2', '-c', 'read -P 0x11 1M 64k', layer]).catch((err: { stdout?: string }) => ({ stdout: err.stdout ?? '' }))
    t.match(other.stdout, /verification failed/, '(and the check can fail: another pattern is not there)')

    // Faults on the network path. Host B's agent SIGKILLed during the attach, then started again: in-use,
    // a network disk of the domain, its export served; never stuck, no admin reset-state.
    await killDuring(t, hostB, 'attach_volume started', () => v.id, () => call(cloud.c.servers, 'attachVolume', { serverId: s.id, volumeId: v.id }, token()))
    const attached = await settleVolume(getVolume, v.id)
    t.equal(attached.status, 'in-use', `attached once B's agent is back (${attached.statusReason})`)
    await matchesLibvirt(t, attached, s.id)
    const served = await exportServersUnder(hostA.stateDir)
    t.equal(served.length, 1, 'one export server runs on host A for it')
    const port = /<host name='[^']+' port='(\d+)'/.exec((await diskXml(s.id, 'vdb')) ?? '')?.[1]

    // Host A (the volume host) down with its export server, as a reboot does: I/O errors meanwhile;
    // started again, A serves the export again where it was, and the guest's QEMU reconnects on its next request.
    await hostA.kill('SIGKILL')
    process.kill(served[0]!, 'SIGKILL')
    await eventually(async () => !existsSync(`/proc/${served[0]}`), 30_000, 'the export server to die')
    t.match(await qemuIo(s.id, 'vdb', 'read 0 4k'), /error/i, 'export down: the guest\'s reads fail (no reconnect delay in libvirt 9.0)')
    await hostA.restart()
    const again = await eventually(async () => (await exportServersUnder(hostA.stateDir)).find((pid) => pid !== served[0]), 60_000, 'the export served again')
    t.ok(again, `host A serves the export again (pid ${again})`)
    const reread = await eventually(async () => {
      const out = await qemuIo(s.id, 'vdb', 'read -P 0xab 0 64k')
      return /read 65536\/65536 bytes/.test(out) ? out : undefined
    }, 60_000, 'the guest\'s QEMU to read through the export again')
    t.match(reread, /read 65536\/65536 bytes/, 'the guest\'s QEMU reads the volume again with no re-attach')
    t.match(await diskXml(s.id, 'vdb') ?? '', new RegExp(`port='${port}'`), `at the port it had (${port})`)
    t.match(await qemuIo(s.id, 'vdb', 'read -P 0x11 0 64k'), /verification failed/, '(and the check can fail: another pattern is not there)')
    t.equal((await getVolume(v.id)).status, 'in-use', 'and the volume stayed in-use')

    // Host B's agent SIGKILLed during the detach: available, out of the domain, and no export left on A.
    await killDuring(t, hostB, 'detach_volume started', () => v.id, () => call(cloud.c.servers, 'detachVolume', { serverId: s.id, volumeId: v.id }, token()))
    const detached = await settleVolume(getVolume, v.id)
    t.equal(detached.status, 'available', `detached once B's agent is back (${detached.statusReason})`)
    await matchesLibvirt(t, detached, s.id)
    await eventually(async () => (await exportServersUnder(hostA.stateDir)).length === 0, 60_000, 'no export server for an available volume')
    t.pass('no export server left for a volume the API says is available')

    // Attached again, then everything deleted: the server's delete frees it, the export ends, the volume goes.
    await call(cloud.c.servers, 'attachVolume', { serverId: s.id, volumeId: v.id }, token())
    await waitVolume(v.id, 'in-use')
    t.equal((await exportServersUnder(hostA.stateDir)).length, 1, 'exported again')
    await call(cloud.c.servers, 'deleteServer', { id: s.id }, token())
    await eventually(() => serverGone(cloud.c, s.id, token()), 120_000, 'server deleted')
    await waitVolume(v.id, 'available')
    await eventually(async () => (await exportServersUnder(hostA.stateDir)).length === 0, 60_000, 'the export to end with the server')
    t.pass('deleting the server ended the export')
    await call(volumes, 'deleteVolume', { id: v.id }, token())
    await eventually(() => getVolume(v.id).then(() => false, (e: { code?: number }) => e.code === status.NOT_FOUND), 60_000, 'volume deleted')
    t.notOk(existsSync(vc.fileOf(v.id, hostA)) || existsSync(layer), 'no volume file left')
    t.same(await exportServersUnder(hostA.stateDir), [], 'no export server left')
    t.notOk((await virshDomainNames()).includes(domain(s.id)), 'no domain left')
    t.equal((await cloud.s.controller.db.selectFrom('volume_attachments').selectAll().execute()).length, 0, 'no attachment record left')
  })

  t.test('a multiattach volume of host A attached to two servers of host A: both are clients of its one NBD export, shareable; the export ends with the last detach', { timeout: 900_000 }, async (t) => {
    // Both hosts share this machine's libvirt: from here on its NBD client certificate names host A, whose guests attach now.
    await libvirtNbdTls(scratch, hostA.host)
    const ids = await Promise.all(['multi-1', 'multi-2'].map(async (name) => {
      const r = await call<CreateServerResponse>(cloud.c.servers, 'createServer', { name, flavorRef: cloud.flavor.id, imageRef: cloud.image.id, networks: [{ uuid: cloud.network.id }], availabilityZone: `nova:${hostA.host}` }, token())
      made.push(r.servers[0]!.id)
      return r.servers[0]!.id
    }))
    for (const id of ids) {
      const x = await cloud.waitFor(id, (s: Decoded<Server>) => (s.status === 'ACTIVE' && s.taskState === '') || s.status === 'ERROR', token(), 300_000, 'ACTIVE')
      t.same([x.status, x.host], ['ACTIVE', hostA.host], `server ${x.name} runs on host A, the volume's host: ${x.fault?.message ?? ''}`)
    }
    // Multiattach as Cinder's volume types say it (the gRPC create has no multiattach field of its own).
    const types = client(VolumeTypesClient, cloud.s.address)
    t.teardown(() => types.close())
    const type = await call<VolumeType>(types, 'createVolumeType', { name: 'multiattach', extraSpecs: { multiattach: '<is> True' } }, token())
    const created = await call<Volume>(volumes, 'createVolume', { size: 1, name: 'shared', volumeType: type.id }, token())
    const v = await waitVolume(created.id, 'available')
    t.ok(v.multiattach, 'a multiattach volume')
    await run('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0xab 0 64k', vc.fileOf(v.id, hostA)])

    for (const id of ids) {
      await call(cloud.c.servers, 'attachVolume', { serverId: id, volumeId: v.id }, token())
      await waitVolume(v.id, 'in-use')
    }
    t.equal((await getVolume(v.id)).attachments.length, 2, 'attached to both servers')
    const port = /<host name='127\.0\.0\.1' port='(\d+)'\/>/.exec((await diskXml(ids[0]!, 'vdb')) ?? '')?.[1]
    for (const id of ids) {
      const disk = (await diskXml(id, 'vdb')) ?? ''
      t.match(disk, new RegExp(`<source protocol='nbd' name='volume-${v.id}' tls='yes'`), `server ${id}: the volume's NBD export though the volume is on its own host`)
      t.match(disk, /<driver name='qemu' type='raw'/, 'served raw')
      t.match(disk, /<shareable\/>/, 'a shareable disk')
      t.match(disk, new RegExp(`port='${port}'`), 'the same export as the other server\'s')
      t.match(await diskXml(id, 'vdb', true) ?? '', /<shareable\/>/, 'shareable in the persistent definition too')
    }
    const daemons = await exportServersUnder(hostA.stateDir)
    t.equal(daemons.length, 1, 'one export server on host A opens the qcow2 file for both')
    // Both guests' QEMU write the volume at once: what one writes, the other reads.
    t.match(await qemuIo(ids[0]!, 'vdb', 'read -P 0xab 0 64k'), /read 65536\/65536 bytes/, 'the first guest reads what was in the file')
    t.match(await qemuIo(ids[0]!, 'vdb', 'write -P 0x5a 1M 64k'), /wrote 65536\/65536 bytes/, 'the first guest writes')
    t.match(await qemuIo(ids[1]!, 'vdb', 'read -P 0x5a 1M 64k'), /read 65536\/65536 bytes/, 'the second guest reads it')
    t.match(await qemuIo(ids[1]!, 'vdb', 'write -P 0x6b 2M 64k'), /wrote 65536\/65536 bytes/, 'and writes too (shared write permission)')
    t.match(await qemuIo(ids[0]!, 'vdb', 'read -P 0x6b 2M 64k'), /read 65536\/65536 bytes/, 'which the first guest reads')
    t.match(await qemuIo(ids[0]!, 'vdb', 'read -P 0x11 2M 64k'), /verification failed/, '(and the check can fail: another pattern is not there)')

    // A snapshot while both have it (--force): neither guest's QEMU has the file open; the export's daemon moves onto the new file.
    const snapshots = client(SnapshotsClient, cloud.s.address)
    t.teardown(() => snapshots.close())
    const snap = await call<Snapshot>(snapshots, 'createSnapshot', { volumeId: v.id, name: 'shared-snap', force: true }, token())
    const taken = await eventually(async () => {
      const x = await call<Snapshot>(snapshots, 'getSnapshot', { id: snap.id }, token())
      return x.status === 'available' || x.status === 'error' ? x : undefined
    }, 120_000, 'the snapshot taken')
    t.equal(taken.status, 'available', `the snapshot of the volume two guests of its host have is taken: ${taken.statusReason ?? ''}`)
    t.match((await run('qemu-io', ['-r', '-U', '-f', 'qcow2', '-c', 'read -P 0x6b 2M 64k', vc.fileOf(v.id, hostA)])).stdout, /read 65536\/65536/, 'with what the guests wrote')
    t.same(await exportServersUnder(hostA.stateDir), daemons, 'by the same export server, which serves on')
    t.match(await qemuIo(ids[1]!, 'vdb', 'read -P 0x5a 1M 64k'), /read 65536\/65536 bytes/, 'the guests read on')
    await call(snapshots, 'deleteSnapshot', { id: snap.id }, token())
    await eventually(() => call(snapshots, 'getSnapshot', { id: snap.id }, token()).then(() => false, (e: { code?: number }) => e.code === status.NOT_FOUND), 60_000, 'the snapshot deleted')

    // One detach leaves the other server attached and the export serving it.
    await call(cloud.c.servers, 'detachVolume', { serverId: ids[0]!, volumeId: v.id }, token())
    await eventually(async () => (await getVolume(v.id)).attachments.length === 1, 120_000, 'one attachment left')
    t.equal((await waitVolume(v.id, 'in-use')).attachments[0]?.serverId, ids[1], 'in-use, attached to the second server')
    t.notOk(await diskXml(ids[0]!, 'vdb'), 'not in the first domain any more')
    t.same(await exportServersUnder(hostA.stateDir), daemons, 'the export server runs on')
    t.match(await qemuIo(ids[1]!, 'vdb', 'read -P 0x5a 1M 64k'), /read 65536\/65536 bytes/, 'and the second guest reads through it')
    t.match(await qemuIo(ids[1]!, 'vdb', 'write -P 0x7c 3M 64k'), /wrote 65536\/65536 bytes/, 'and writes')

    // The last detach ends the export; what the guests wrote is in the volume's file.
    await call(cloud.c.servers, 'detachVolume', { serverId: ids[1]!, volumeId: v.id }, token())
    await waitVolume(v.id, 'available')
    t.notOk(await diskXml(ids[1]!, 'vdb'), 'not in the second domain')
    await eventually(async () => (await exportServersUnder(hostA.stateDir)).length === 0, 60_000, 'the export server to stop')
    t.pass('the last detach ended the export')
    const layer = path.join(path.dirname(vc.fileOf(v.id, hostA)), `volume-${v.id}.${snap.id}.qcow2`)
    t.match((await run('qemu-io', ['-f', 'qcow2', '-c', 'read -P 0x5a 1M 64k', '-c', 'read -P 0x6b 2M 64k', '-c', 'read -P 0x7c 3M 64k', layer])).stdout, /(read 65536\/65536[\s\S]*){3}/, 'the volume file has what both guests wrote')

    for (const id of ids) await call(cloud.c.servers, 'deleteServer', { id }, token())
    for (const id of ids) await eventually(() => serverGone(cloud.c, id, token()), 120_000, 'server deleted')
    await call(volumes, 'deleteVolume', { id: v.id }, token())
    await eventually(() => getVolume(v.id).then(() => false, (e: { code?: number }) => e.code === status.NOT_FOUND), 60_000, 'volume deleted')
    t.same(await exportServersUnder(hostA.stateDir), [], 'no export server left')
  })
}

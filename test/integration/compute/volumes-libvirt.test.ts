/**
 * Integration, end to end on a real host: the controller, a real nats-server,
 * and the agent daemon as its own process driving libvirt (KVM, TCG without
 * /dev/kvm) with its volume role on the file driver (qcow2 volumes of the
 * native engine). A blank volume hot-plugged into a running server is in the
 * domain (`virsh domblklist`, live and persistent); detached, it leaves both;
 * bytes written to it with qemu-io while detached are read back through the
 * QEMU of a second, stopped-then-started server it was attached to; extended
 * while in use, QEMU sees the new size (`virsh domblkinfo`); snapshotted
 * twice while the server runs (--force), copy-on-write: the guest moves onto
 * a new active file each time, the old one (same inode and size) frozen as
 * the snapshot's data, nothing copied; the guest reads every write right
 * after and after a stop/start, the snapshots and volumes from them keep the
 * data as it was; both deleted while it runs (the older under the newer's
 * layer: the guest pulls its chain first), every byte stays; a snapshot taken
 * while stopped (the active file frozen, an overlay at its name) and deleted
 * while the server runs is pulled into the active file live; attached to the
 * other server the volume reads the latest data; after the deletes no domain,
 * no file of the volume and no attachment is left.
 * Needs root, libvirt-daemon-system, qemu-system-x86, qemu-utils.
 */
import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { readdir, readFile, stat } from 'node:fs/promises'
import path from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'
import { serverGone, type TestCloud } from '../../helpers/cloud.js'
import type { AgentProcess } from '../../helpers/agent-process.js'
import { virsh, virshDomainNames } from '../../helpers/libvirt.js'
import { startVolumeCloud, type VolumeCloud } from '../../helpers/volume-cloud.js'
import { call, client, failure, status, type Decoded } from '../../helpers/grpc.js'
import { eventually } from '../../helpers/agents.js'
import type { CreateServerResponse, Server, ServerVolume } from '../../../proto/gen/strato/compute/v1/servers.js'
import { SnapshotsClient, VolumesClient, VolumeTypesClient, type Snapshot, type Volume, type VolumeType } from '../../../proto/gen/strato/volume/v1/volume.js'

const run = promisify(execFile)
const GiB = 1024 ** 3

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root to drive qemu:///system')
} else {
  let vc: VolumeCloud
  let cloud: TestCloud
  let agent: AgentProcess
  let volumes: VolumesClient
  let made: string[] = []
  let snapshots: SnapshotsClient

  t.before(async () => {
    vc = await startVolumeCloud({ host: 'kvm-vol', bridgePrefix: 'brv' })
    ;({ cloud, agent, volumes, made } = vc)
    snapshots = client(SnapshotsClient, cloud.s.address)
  })

  t.teardown(async () => {
    snapshots?.close()
    await vc?.close(t)
  })

  const token = () => cloud.s.adminToken
  const volumeDir = () => path.join(agent.stateDir, 'volumes')
  const fileOf = (id: string) => path.join(volumeDir(), `volume-${id}.qcow2`)
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
  const waitSnapshot = (id: string, want: string) => eventually(async () => {
    const s = await call<Snapshot>(snapshots, 'getSnapshot', { id }, token())
    if (s.status === 'error') throw new Error(`snapshot ${id} in error: ${s.statusReason}`)
    return s.status === want
  }, 120_000, `snapshot ${id} ${want}`)
  const waitServer = async (id: string, want: string, ms = 120_000) => {
    const s = await cloud.waitFor(id, (x: Decoded<Server>) => (x.status === want && x.taskState === '') || x.status === 'ERROR', token(), ms, want)
    if (s.status !== want) throw new Error(`server ${id} is ${s.status}, not ${want}: ${s.fault?.message ?? 'no fault'}`)
    return s
  }
  const newServer = async (name: string) => {
    const r = await call<CreateServerResponse>(cloud.c.servers, 'createServer', { name, flavorRef: cloud.flavor.id, imageRef: cloud.image.id, networks: [{ uuid: cloud.network.id }] }, token())
    const id = r.servers[0]!.id
    made.push(id)
    return waitServer(id, 'ACTIVE')
  }
  const attach = (serverId: string, volumeId: string) => call<ServerVolume>(cloud.c.servers, 'attachVolume', { serverId, volumeId }, token())
  const detach = (serverId: string, volumeId: string) => call(cloud.c.servers, 'detachVolume', { serverId, volumeId }, token())
  const acceleratorOf = async (uuid: string) => (/<domain type='kvm'/.test(await virsh('dumpxml', `instance-${uuid}`)) ? 'KVM' : 'TCG')
  /** The disks of a domain, target → source, as `virsh domblklist` shows them (live, or `--inactive`). */
  const blklist = async (uuid: string, inactive = false) => {
    const out = await virsh('domblklist', `instance-${uuid}`, ...(inactive ? ['--inactive'] : []))
    return Object.fromEntries(out.split('\n').slice(2).map((l) => l.trim().split(/\s+/)).filter((f) => f.length === 2) as Array<[string, string]>)
  }
  /**
   * QEMU itself reads the attached disk (HMP qemu-io on the disk's node): the bytes the guest
   * would see. qemu-io prints to QEMU's stdout, which libvirt keeps in the domain's log.
   */
  const readThroughQemu = async (uuid: string, device: string, pattern: string, at = '0') => {
    const log = `/var/log/libvirt/qemu/instance-${uuid}.log`
    const before = (await readFile(log, 'utf8')).length
    await qemuIo(uuid, device, `read -P ${pattern} ${at} 64k`)
    return eventually(async () => {
      const added = (await readFile(log, 'utf8')).slice(before)
      return /read \d+\/\d+ bytes|Pattern verification failed/.test(added) ? added : undefined
    }, 10_000, 'qemu-io output in the domain log')
  }
  /** Whether QEMU reads `pattern` on the disk (the read done, and no pattern failure). */
  const qemuReads = async (uuid: string, device: string, pattern: string, at = '0') => {
    const out = await readThroughQemu(uuid, device, pattern, at)
    return /read 65536\/65536 bytes/.test(out) && !/Pattern verification failed/.test(out)
  }
  /**
   * The guest's writes: HMP qemu-io through the disk's device (its block backend: the node a
   * format node name gives has its write permission taken by the device).
   */
  const writeThroughQemu = async (uuid: string, device: string, command: string) => {
    const xml = await virsh('dumpxml', `instance-${uuid}`)
    const disk = [...xml.matchAll(/<disk[\s\S]*?<\/disk>/g)].map((m) => m[0]).find((d) => d.includes(`dev='${device}'`))
    const alias = /<alias name='([^']+)'/.exec(disk ?? '')?.[1]
    if (!alias) throw new Error(`no alias for ${device} in the live XML`)
    const log = `/var/log/libvirt/qemu/instance-${uuid}.log`
    const before = (await readFile(log, 'utf8')).length
    await virsh('qemu-monitor-command', `instance-${uuid}`, '--hmp', `qemu-io -d /machine/peripheral/${alias}/virtio-backend "${command}"`)
    return eventually(async () => {
      const added = (await readFile(log, 'utf8')).slice(before)
      return /wrote \d+\/\d+ bytes/.test(added) ? added : undefined
    }, 10_000, 'qemu-io write in the domain log')
  }
  const qemuIo = async (uuid: string, device: string, command: string) => {
    const xml = await virsh('dumpxml', `instance-${uuid}`)
    const disk = [...xml.matchAll(/<disk[\s\S]*?<\/disk>/g)].map((m) => m[0]).find((d) => d.includes(`dev='${device}'`))
    // libvirt names the disk's format node libvirt-<source index>-format (-blockdev).
    const index = /<source file=[^>]*index='(\d+)'/.exec(disk ?? '')?.[1]
    if (!index) throw new Error(`no source index for ${device} in the live XML`)
    return virsh('qemu-monitor-command', `instance-${uuid}`, '--hmp', `qemu-io libvirt-${index}-format "${command}"`)
  }

  t.test('hot-plug, detach, data kept across servers, attach to a stopped server, in-use extend, and nothing left after the deletes', { timeout: 900_000 }, async (t) => {
    const a = await newServer('vol-a')
    const created = await call<Volume>(volumes, 'createVolume', { size: 1, name: 'blank' }, token())
    const v = await waitVolume(created.id, 'available')
    t.ok(existsSync(fileOf(v.id)), 'the backend made the volume file')

    // Hot-plug into the running server (the time is reported, never asserted: the machine is shared).
    let started = Date.now()
    const sv = await attach(a.id, v.id)
    t.equal(sv.device, '/dev/vdb')
    await waitVolume(v.id, 'in-use')
    t.comment(`attach, API call to in-use: ${Date.now() - started} ms (${await acceleratorOf(a.id)})`)
    t.equal((await blklist(a.id)).vdb, fileOf(v.id), 'virsh domblklist: the volume on vdb of the running domain')
    t.equal((await blklist(a.id, true)).vdb, fileOf(v.id), 'and in its persistent definition')
    t.match(await virsh('dumpxml', '--inactive', `instance-${a.id}`), new RegExp(`<serial>${v.id.slice(0, 20)}</serial>`), 'with the volume id as serial')

    // Detach: gone from the live domain and the definition (the guest acknowledged the unplug).
    started = Date.now()
    await detach(a.id, v.id)
    await waitVolume(v.id, 'available')
    t.comment(`detach, API call to available: ${Date.now() - started} ms`)
    t.notOk('vdb' in (await blklist(a.id)), 'not in the running domain any more')
    t.notOk('vdb' in (await blklist(a.id, true)), 'nor in its definition')

    // Written while detached, with qemu-io on the volume's file.
    const write = await run('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0xab 0 64k', fileOf(v.id)])
    t.match(write.stdout, /wrote 65536\/65536 bytes/)

    // A second server, stopped: the volume goes into its definition only, and is there once it runs.
    const b = await newServer('vol-b')
    await call(cloud.c.servers, 'stopServer', { id: b.id }, token())
    await waitServer(b.id, 'SHUTOFF')
    await attach(b.id, v.id)
    await waitVolume(v.id, 'in-use')
    t.equal((await blklist(b.id, true)).vdb, fileOf(v.id), 'in the stopped domain\'s definition')
    t.equal((await virsh('domstate', `instance-${b.id}`)).trim(), 'shut off', 'still stopped')
    await call(cloud.c.servers, 'startServer', { id: b.id }, token())
    await waitServer(b.id, 'ACTIVE')
    t.equal((await blklist(b.id)).vdb, fileOf(v.id), 'started with the volume')
    t.ok(await qemuReads(b.id, 'vdb', '0xab'), 'QEMU of the second server reads what was written')
    t.match(await readThroughQemu(b.id, 'vdb', '0xcd'), /Pattern verification failed/, '(and the check can fail: another pattern is not there)')

    // Extended while in use: the file grows and QEMU is told.
    await call<Volume>(volumes, 'extendVolume', { id: v.id, newSize: 2 }, token())
    const grown = await waitVolume(v.id, 'in-use')
    t.equal(grown.size, 2)
    t.match(await virsh('domblkinfo', `instance-${b.id}`, 'vdb'), new RegExp(`Capacity:\\s+${2 * GiB}\\b`), 'virsh domblkinfo: QEMU sees 2 GiB')
    t.ok(await qemuReads(b.id, 'vdb', '0xab'), 'the data is still there')

    // A snapshot of the volume in use by the running server (--force) is copy-on-write: the guest moves onto
    // a new active file of a name of its own (libvirt disk-only external snapshot), the file it had stays,
    // frozen under its name, as the snapshot's data. Nothing is copied.
    const unforced = await failure(call(snapshots, 'createSnapshot', { volumeId: v.id, name: 'live' }, token()))
    t.equal(unforced.code, status.FAILED_PRECONDITION, `without force an in-use volume is not snapshotted: ${unforced.details}`)
    const first = await stat(fileOf(v.id))
    const snap = await call<Snapshot>(snapshots, 'createSnapshot', { volumeId: v.id, name: 'live', force: true }, token())
    await waitSnapshot(snap.id, 'available')
    const layer1 = path.join(volumeDir(), `volume-${v.id}.${snap.id}.qcow2`)
    t.equal((await virsh('domstate', `instance-${b.id}`)).trim(), 'running', 'the server ran on')
    t.equal((await blklist(b.id)).vdb, layer1, 'virsh domblklist: the running domain writes to the volume\'s new active file')
    t.equal((await blklist(b.id, true)).vdb, layer1, 'and its definition names it')
    t.ok(await qemuReads(b.id, 'vdb', '0xab'), 'right after the snapshot the guest reads what it wrote before it')
    const after = await stat(fileOf(v.id))
    t.same([after.ino, after.size], [first.ino, first.size], 'the snapshot\'s data is the volume\'s old file: same inode, same size')
    t.ok((await stat(layer1)).blocks * 512 < 1024 * 1024, `the new active file is a small overlay (${(await stat(layer1)).blocks * 512} bytes allocated)`)
    t.match((await run('qemu-img', ['info', '-U', '--output=json', layer1])).stdout, new RegExp(`"backing-filename": "${path.basename(fileOf(v.id))}"`), 'on the old file')
    t.notOk((await readdir(volumeDir())).some((f) => f.startsWith('snapshot-')), 'no copy made')
    await writeThroughQemu(b.id, 'vdb', 'write -P 0xcd 128k 64k')
    t.ok(await qemuReads(b.id, 'vdb', '0xcd', '128k'), 'the guest writes after the snapshot')
    t.match((await run('qemu-io', ['-r', '-U', '-f', 'qcow2', '-c', 'read -P 0xab 0 64k', fileOf(v.id)])).stdout, /read 65536\/65536 bytes/, 'the snapshot keeps the data as it was')
    // (qemu-io exits 1 when the pattern is not there)
    const lacks = (file: string, command: string) => run('qemu-io', ['-r', '-U', '-f', 'qcow2', '-c', command, file]).then((r) => r.stdout, (e: { stdout: string }) => e.stdout)
    t.match(await lacks(fileOf(v.id), 'read -P 0xcd 128k 64k'), /Pattern verification failed/, 'the later write went to the volume, not the snapshot')
    const fromSnap = await call<Volume>(volumes, 'createVolume', { snapshotId: snap.id, size: 2, name: 'from-live' }, token())
    await waitVolume(fromSnap.id, 'available')
    t.match((await run('qemu-io', ['-r', '-U', '-f', 'qcow2', '-c', 'read -P 0xab 0 64k', fileOf(fromSnap.id)])).stdout, /read 65536\/65536 bytes/, 'a volume from the snapshot has the data as at the snapshot')
    t.match(await lacks(fileOf(fromSnap.id), 'read -P 0xcd 128k 64k'), /Pattern verification failed/, 'not the later writes')

    // A second live snapshot at once: the guest moves on again; the first active file is the second's data.
    const snapB = await call<Snapshot>(snapshots, 'createSnapshot', { volumeId: v.id, name: 'live-2', force: true }, token())
    await waitSnapshot(snapB.id, 'available')
    const layer2 = path.join(volumeDir(), `volume-${v.id}.${snapB.id}.qcow2`)
    t.equal((await blklist(b.id)).vdb, layer2, 'the running domain writes to the newest active file')
    await writeThroughQemu(b.id, 'vdb', 'write -P 0xef 64k 64k')
    const fromB = await call<Volume>(volumes, 'createVolume', { snapshotId: snapB.id, size: 2, name: 'from-live-2' }, token())
    await waitVolume(fromB.id, 'available')
    t.match((await run('qemu-io', ['-r', '-U', '-f', 'qcow2', '-c', 'read -P 0xab 0 64k', '-c', 'read -P 0xcd 128k 64k', fileOf(fromB.id)])).stdout, /(read 65536\/65536 bytes[\s\S]*){2}/, 'a volume from the second snapshot has the data of both writes before it')
    t.match(await lacks(fileOf(fromB.id), 'read -P 0xef 64k 64k'), /Pattern verification failed/, 'not the one after it')
    const readsAll = async () => (await qemuReads(b.id, 'vdb', '0xab')) && (await qemuReads(b.id, 'vdb', '0xef', '64k')) && (await qemuReads(b.id, 'vdb', '0xcd', '128k'))
    t.ok(await readsAll(), 'the guest reads every write through its chain')
    const restart = async () => {
      await call(cloud.c.servers, 'stopServer', { id: b.id }, token())
      await waitServer(b.id, 'SHUTOFF')
      await call(cloud.c.servers, 'startServer', { id: b.id }, token())
      await waitServer(b.id, 'ACTIVE')
    }
    await restart()
    t.equal((await blklist(b.id)).vdb, layer2, 'stopped and started: the domain opens the newest active file')
    t.ok(await readsAll(), 'and reads every write')

    // Deletes while the guest runs. The older snapshot's file has the second's layer (read-only in the guest's
    // chain) and a volume resting on it: the guest pulls its chain into its active file, then the layer and the
    // volume are flattened, and the file goes.
    const gone = (id: string) => eventually(async () => {
      const x = await call<Snapshot>(snapshots, 'getSnapshot', { id }, token()).catch((e: { code?: number }) => (e.code === status.NOT_FOUND ? undefined : Promise.reject(e)))
      if (x?.status === 'error_deleting') throw new Error(`snapshot delete failed: ${x.statusReason}`)
      return x === undefined
    }, 120_000, `snapshot ${id} gone from the API`)
    await call<Snapshot>(snapshots, 'deleteSnapshot', { id: snap.id }, token())
    await gone(snap.id)
    t.notOk(existsSync(fileOf(v.id)), 'the older snapshot\'s file is gone')
    t.ok(await readsAll(), 'the guest reads every write')
    t.match((await run('qemu-io', ['-r', '-U', '-f', 'qcow2', '-c', 'read -P 0xab 0 64k', '-c', 'read -P 0xcd 128k 64k', fileOf(fromB.id)])).stdout, /(read 65536\/65536 bytes[\s\S]*){2}/, 'the other snapshot\'s volume reads what it read')
    t.match((await run('qemu-io', ['-r', '-U', '-f', 'qcow2', '-c', 'read -P 0xab 0 64k', fileOf(fromSnap.id)])).stdout, /read 65536\/65536 bytes/, 'so does the deleted snapshot\'s volume')
    t.match((await run('qemu-io', ['-r', '-U', '-f', 'qcow2', '-c', 'read -P 0xcd 128k 64k', layer1])).stdout, /read 65536\/65536 bytes/, 'and the newer snapshot\'s data')
    await call<Snapshot>(snapshots, 'deleteSnapshot', { id: snapB.id }, token())
    await gone(snapB.id)
    t.notOk(existsSync(layer1), 'the newer snapshot\'s file is gone')
    t.equal((await blklist(b.id)).vdb, layer2, 'the guest keeps its active file')
    t.same(JSON.parse((await run('qemu-img', ['info', '-U', '--backing-chain', '--output=json', layer2])).stdout).map((i: Record<string, unknown>) => i['backing-filename']), [undefined], 'which stands alone')
    t.ok(await readsAll(), 'the guest reads every write')
    t.match((await run('qemu-io', ['-r', '-U', '-f', 'qcow2', '-c', 'read -P 0xab 0 64k', '-c', 'read -P 0xcd 128k 64k', fileOf(fromB.id)])).stdout, /(read 65536\/65536 bytes[\s\S]*){2}/, 'the newer snapshot\'s volume reads what it read')

    // Stopped, the in-use volume's active file becomes the snapshot and the volume a new overlay on it at
    // that path; started again, QEMU opens the chain by the files' names. Deleted while the server runs,
    // the guest's QEMU pulls the chain into the active file (libvirt block pull: block-stream).
    await call(cloud.c.servers, 'stopServer', { id: b.id }, token())
    await waitServer(b.id, 'SHUTOFF')
    const snap2 = await call<Snapshot>(snapshots, 'createSnapshot', { volumeId: v.id, name: 'stopped', force: true }, token())
    await waitSnapshot(snap2.id, 'available')
    await call(cloud.c.servers, 'startServer', { id: b.id }, token())
    await waitServer(b.id, 'ACTIVE')
    const snap2File = path.join(volumeDir(), `snapshot-${v.id}_${snap2.id}.qcow2`)
    t.match((await run('qemu-img', ['info', '-U', '--output=json', layer2])).stdout, new RegExp(`"backing-filename": "${path.basename(snap2File)}"`), 'the volume\'s active file is a new overlay on the snapshot\'s')
    t.ok(await readsAll(), 'the guest reads what it wrote before the snapshot (through the overlay)')
    await writeThroughQemu(b.id, 'vdb', 'write -P 0x5a 192k 64k')
    const deleting = await call<Snapshot>(snapshots, 'deleteSnapshot', { id: snap2.id }, token())
    t.equal(deleting.status, 'deleting', 'deleting while the server has the volume open')
    await gone(snap2.id)
    t.notOk(existsSync(snap2File), 'its file is gone')
    t.equal((await blklist(b.id)).vdb, layer2, 'virsh domblklist: the running domain has the volume\'s active file on vdb')
    t.equal((await blklist(b.id, true)).vdb, layer2, 'and so has its definition')
    const chain = JSON.parse((await run('qemu-img', ['info', '-U', '--backing-chain', '--output=json', layer2])).stdout) as Array<Record<string, unknown>>
    t.same(chain.map((i) => i['backing-filename']), [undefined], 'qemu-img info --backing-chain: the volume\'s file stands alone (the snapshot\'s data pulled into it)')
    const liveDisk = [...(await virsh('dumpxml', `instance-${b.id}`)).matchAll(/<disk[\s\S]*?<\/disk>/g)].map((m) => m[0]).find((d) => d.includes(`dev='vdb'`)) ?? ''
    t.notMatch(liveDisk, /<backingStore type=/, 'the live chain libvirt keeps has no backing image either')
    t.ok(await readsAll() && await qemuReads(b.id, 'vdb', '0x5a', '192k'), 'the guest reads what it wrote before the deleted snapshot and after it')
    await restart()
    t.ok(await readsAll() && await qemuReads(b.id, 'vdb', '0x5a', '192k'), 'stopped and started again (the persistent definition is valid): every write there')

    // Deleting the server frees the volume; attached to the other server, it has the latest data.
    await call(cloud.c.servers, 'deleteServer', { id: b.id }, token())
    await eventually(() => serverGone(cloud.c, b.id, token()), 120_000, 'server b deleted')
    const freed = await waitVolume(v.id, 'available')
    t.same(freed.attachments, [], 'no attachment left on the volume')
    await attach(a.id, v.id)
    await waitVolume(v.id, 'in-use')
    t.equal((await blklist(a.id)).vdb, layer2, 'attached to the other running server: its active file')
    t.ok(await qemuReads(a.id, 'vdb', '0xab') && await qemuReads(a.id, 'vdb', '0xef', '64k') && await qemuReads(a.id, 'vdb', '0xcd', '128k') && await qemuReads(a.id, 'vdb', '0x5a', '192k'), 'which reads the latest data')
    await detach(a.id, v.id)
    await waitVolume(v.id, 'available')
    for (const id of [fromSnap.id, fromB.id]) await call(volumes, 'deleteVolume', { id }, token())
    for (const id of [fromSnap.id, fromB.id]) await eventually(() => getVolume(id).then(() => false, (e: { code?: number }) => e.code === status.NOT_FOUND), 60_000, 'volume from a snapshot deleted')

    // This host serves no network exports (no export address): a multiattach volume of its own is attached
    // as its file, as before multiattach volumes were exported (one guest of this host at a time), not refused.
    const types = client(VolumeTypesClient, cloud.s.address)
    t.teardown(() => types.close())
    const shared = await call<VolumeType>(types, 'createVolumeType', { name: 'multiattach', extraSpecs: { multiattach: '<is> True' } }, token())
    const multi = await waitVolume((await call<Volume>(volumes, 'createVolume', { size: 1, name: 'multi', volumeType: shared.id }, token())).id, 'available')
    await attach(a.id, multi.id)
    await waitVolume(multi.id, 'in-use')
    t.equal((await blklist(a.id)).vdb, fileOf(multi.id), 'a multiattach volume on a host with no exports: its file on vdb')
    t.notMatch(await virsh('dumpxml', `instance-${a.id}`), /<shareable\/>/, 'not shareable (a qcow2 file cannot be)')
    await detach(a.id, multi.id)
    await waitVolume(multi.id, 'available')
    await call(volumes, 'deleteVolume', { id: multi.id }, token())

    await call(cloud.c.servers, 'deleteServer', { id: a.id }, token())
    await eventually(() => serverGone(cloud.c, a.id, token()), 120_000, 'server a deleted')
    await call(volumes, 'deleteVolume', { id: v.id }, token())
    await eventually(() => getVolume(v.id).then(() => false, (e: { code?: number }) => e.code === status.NOT_FOUND), 60_000, 'volume deleted')
    t.same((await readdir(volumeDir())).filter((f) => f.includes(v.id)), [], 'no file of the volume left (its active file, layers and state)')
    const domains = await virshDomainNames()
    t.notOk(domains.some((d) => d === `instance-${a.id}` || d === `instance-${b.id}`), 'no domain left')
    t.equal((await cloud.s.controller.db.selectFrom('volume_attachments').selectAll().execute()).length, 0, 'no attachment record left')
  })
}

// The volume driver contract against the file driver on a temp directory, in qcow2 (copy-on-write
// snapshots through backing files) and in raw (copies); after every subtest each file of the
// backend is checked by qemu-img (the reference implementation): `qemu-img check` finds no
// corruption or leak, and `qemu-img info` agrees on the format and on every backing file, which
// must be a snapshot file in the same directory.
import { execFileSync, spawn } from 'node:child_process'
import { X509Certificate } from 'node:crypto'
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, watch, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import t from 'tap'
import { FileVolumeDriver } from '../../../../agent/volume/file.js'
import { NbdExports, qmp } from '../../../../agent/volume/nbd-export.js'
import { convertImage, createImage, readImage, writeImage, type ImageFormat } from '../../../../native/index.js'
import { nbdIo, nbdTls } from '../../../helpers/nbd-tls.js'
import { eventually } from '../../../helpers/agents.js'
import { ensureCa, ensureCertificate } from '../../../../controller/tls/ca.js'
import { volumeDriverContract } from './contract.js'

function qemuImg(args: string[]): string {
  return execFileSync('qemu-img', args, { encoding: 'utf8' })
}

/** qemu-io's commands on a qcow2 file, read-only (it exits 1 when a pattern is not there). */
function qemuIo(file: string, ...commands: string[]): string {
  return execFileSync('qemu-io', ['-r', '-U', '-f', 'qcow2', ...commands.flatMap((c) => ['-c', c]), file], { encoding: 'utf8' })
}

for (const format of ['qcow2', 'raw'] as ImageFormat[]) {
  t.test(`${format} volumes`, async (t) => {
    const dir = mkdtempSync(path.join(tmpdir(), `strato-file-vol-${format}-`))
    const scratch = mkdtempSync(path.join(tmpdir(), 'strato-file-vol-img-'))
    t.teardown(() => {
      rmSync(dir, { recursive: true, force: true })
      rmSync(scratch, { recursive: true, force: true })
    })
    const tls = await nbdTls(path.join(scratch, 'tls'))
    const driver = new FileVolumeDriver({ dir, host: 'node1', format, network: { address: '127.0.0.1', tlsDir: tls.serverDir } })
    await driver.init()
    t.teardown(async () => {
      for (const e of await driver.exports()) await driver.unexport(e.volumeId, e.host)
    })
    const exportsDir = path.join(dir, 'exports')
    const files = () => readdirSync(dir).filter((f) => f !== 'exports')
    const fileOf = (id: string) => driver.volumePath(id)
    volumeDriverContract(t, {
      driver,
      write: (id, offset, data) => writeImage(fileOf(id), offset, data, format),
      read: (id, offset, length) => readImage(fileOf(id), offset, length, format),
      leftovers: async () => [...files(), ...(existsSync(exportsDir) ? readdirSync(exportsDir) : [])],
      image: async (marker, offset) => {
        // A cached base is qcow2, as the agent's image cache keeps every image.
        const file = path.join(scratch, `${marker}.qcow2`)
        await createImage(file, 'qcow2', { size: 64 * 1024 * 1024 })
        await writeImage(file, offset, Buffer.from(marker, 'latin1'), 'qcow2')
        return { path: file, format: 'qcow2' }
      },
      // What QEMU on another host does: qemu-io over NBD with TLS and that host's client certificate.
      network: {
        read: async (e, host, offset, length) => {
          const out = await nbdIo(e, await tls.clientFor(host), `read -v ${offset} ${length}`)
          const hex = out.split('\n').filter((l) => /^[0-9a-f]{8}:/.test(l)).map((l) => l.replace(/^[0-9a-f]+:\s+/, '').split('  ')[0]!.replace(/ /g, ''))
          return Buffer.from(hex.join(''), 'hex')
        },
        write: async (e, host, offset, data) => {
          // qemu-io writes a pattern; one byte at a time spells the data.
          await nbdIo(e, await tls.clientFor(host), ...[...data].map((b, i) => `write -P ${b} ${offset + i} 1`))
        },
        served: async (e, host) => nbdIo(e, await tls.clientFor(host), 'read 0 512').then(() => true, () => false),
        crash: async (volumeId, host) => {
          const rec = JSON.parse(readFileSync(path.join(exportsDir, `${volumeId}.json`), 'utf8')) as { pid: number; hosts: string[] }
          t.ok(rec.hosts.includes(host), `the export is recorded for ${host}`)
          process.kill(rec.pid, 'SIGKILL')
          while (existsSync(`/proc/${rec.pid}`)) await new Promise((r) => setTimeout(r, 20))
          await driver.init()
        },
      },
      check: async () => {
        for (const f of files()) {
          t.notOk(f.endsWith('.part'), `no work file is left: ${f}`)
          const file = path.join(dir, f)
          const info = JSON.parse(qemuImg(['info', '--output=json', '-f', format, file])) as { format: string; 'backing-filename'?: string }
          t.equal(info.format, format, `${f} is ${format} to qemu-img`)
          if (info['backing-filename']) t.match(info['backing-filename'], /^snapshot-[0-9a-f-]{36}_[0-9a-f-]{36}\.qcow2$/, `${f} is backed by a snapshot file beside it`)
          if (format === 'qcow2') {
            const check = JSON.parse(qemuImg(['check', '--output=json', '-f', 'qcow2', file])) as { corruptions?: number; leaks?: number }
            t.equal((check.corruptions ?? 0) + (check.leaks ?? 0), 0, `qemu-img check finds ${f} clean`)
          }
        }
      },
    })
  })
}

t.test('a volume too small for its image is refused, and leaves nothing', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'strato-file-vol-small-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const driver = new FileVolumeDriver({ dir: path.join(dir, 'vols'), host: 'node1' })
  await driver.init()
  const img = path.join(dir, 'big.qcow2')
  await createImage(img, 'qcow2', { size: 2 * 1024 ** 3 })
  await t.rejects(driver.create('00000000-0000-4000-8000-00000000000b', 1, { kind: 'image', path: img, format: 'qcow2' }), { name: 'InvalidArgument' })
  t.same(readdirSync(path.join(dir, 'vols')), [])
})

t.test('deleting a volume with a chain of snapshots copies only the volumes made from them: its own layers go upper first', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'strato-file-vol-chain-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const driver = new FileVolumeDriver({ dir, host: 'node1' })
  await driver.init()
  const id = (n: number) => `00000000-0000-4000-8000-0000000001${String(n).padStart(2, '0')}`
  const [vol, fromOldest, fromMiddle] = [id(1), id(2), id(3)]
  const snaps = [id(11), id(12), id(13)]
  await driver.create(vol, 1, { kind: 'blank' })
  for (const [i, s] of snaps.entries()) {
    await writeImage(driver.volumePath(vol), i * 4096, Buffer.from(`layer ${i}`), 'qcow2')
    await driver.createSnapshot(vol, s)
  }
  await driver.create(fromOldest, 1, { kind: 'snapshot', snapshotId: snaps[0]! })
  await driver.create(fromMiddle, 1, { kind: 'snapshot', snapshotId: snaps[1]! })
  // Every copy is made as a `.part` file renamed into place: the directory shows which files were rewritten.
  const copied = new Set<string>()
  const watcher = watch(dir, (_, name) => {
    if (name?.endsWith('.part')) copied.add(name)
  })
  t.teardown(() => watcher.close())
  await driver.delete(vol)
  await new Promise((r) => setTimeout(r, 100))
  t.same([...copied].sort(), [fromOldest, fromMiddle].map((v) => `.volume-${v}.qcow2.part`).sort(), 'only the two volumes made from its snapshots were flattened; no snapshot file was copied')
  t.same(readdirSync(dir).sort(), [fromOldest, fromMiddle].map((v) => `volume-${v}.qcow2`).sort(), 'nothing of the volume is left')
  for (const [v, layers] of [[fromOldest, 1], [fromMiddle, 2]] as const) {
    t.equal(JSON.parse(qemuImg(['info', '--output=json', driver.volumePath(v)]))['backing-filename'], undefined, `${v} stands alone`)
    for (let i = 0; i < layers; i++) t.same(await readImage(driver.volumePath(v), i * 4096, 7, 'qcow2'), Buffer.from(`layer ${i}`), `${v} keeps layer ${i}`)
  }
})

t.test('network exports: refused without TLS set up; only the certificates of the hosts an export is for get in', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'strato-file-vol-nbd-'))
  const tls = await nbdTls(path.join(dir, 'tls'))
  const plain = new FileVolumeDriver({ dir: path.join(dir, 'plain'), host: 'node1' })
  await plain.init()
  const id = '00000000-0000-4000-8000-00000000000c'
  await plain.create(id, 1, { kind: 'blank' })
  await t.rejects(plain.export(id, 'node2'), { name: 'FailedPrecondition', message: /network export/ }, 'no network settings: refused, saying which')
  const noCerts = new FileVolumeDriver({ dir: path.join(dir, 'plain'), host: 'node1', network: { address: '127.0.0.1', tlsDir: path.join(dir, 'missing') } })
  await t.rejects(noCerts.export(id, 'node2'), { name: 'FailedPrecondition', message: /server-cert\.pem/ }, 'no certificates: refused, naming the files')
  t.same(await noCerts.exports(), [], 'and nothing exported')
  const driver = new FileVolumeDriver({ dir: path.join(dir, 'plain'), host: 'node1', network: { address: '127.0.0.1', tlsDir: tls.serverDir } })
  t.teardown(async () => {
    await driver.delete(id)
    rmSync(dir, { recursive: true, force: true })
  })
  const e = await driver.export(id, 'node2')
  if (e.kind !== 'nbd') throw new Error('not nbd')
  await t.rejects(nbdIo(e, undefined, 'read 0 512'), /TLS/, 'a client without TLS is refused')
  const caOnly = path.join(dir, 'ca-only')
  mkdirSync(caOnly)
  copyFileSync(path.join(tls.clientDir, 'ca-cert.pem'), path.join(caOnly, 'ca-cert.pem'))
  await t.rejects(nbdIo(e, caOnly, 'read 0 512'), 'a TLS client without a client certificate is refused')
  const other = await nbdTls(path.join(dir, 'other-ca'))
  await t.rejects(nbdIo(e, other.clientDir, 'read 0 512'), 'a client certificate of another CA is refused')
  const node2 = await tls.clientFor('node2')
  t.match(await nbdIo(e, node2, 'read 0 512'), /read 512\/512/, 'the certificate of the host it is for (CN=node2) gets in')
  const node3 = await tls.clientFor('node3')
  await t.rejects(nbdIo(e, node3, 'read 0 512'), /TLS|abort/, 'another host\'s certificate of the same CA (CN=node3) is refused')
  await t.rejects(nbdIo(e, tls.clientDir, 'read 0 512'), 'as is one of the CA naming no host')
  // A multiattach volume: node3 attaches it too (the running export lets it in), then detaches (out again).
  t.same(await driver.export(id, 'node3'), e, 'node3 gets the same export')
  t.match(await nbdIo(e, node3, 'read 0 512'), /read 512\/512/, 'and now gets in')
  t.match(await nbdIo(e, node2, 'read 0 512'), /read 512\/512/, 'node2 still does')
  await driver.unexport(id, 'node3')
  await t.rejects(nbdIo(e, node3, 'read 0 512'), 'node3 detached: refused again')
  t.match(await nbdIo(e, node2, 'read 0 512'), /read 512\/512/, 'node2 still gets in')

  // Extending an exported volume: its export's daemon grows the file, and serves the new size.
  t.match(await nbdIo(e, node2, 'write -P 0x6b 0 64k'), /wrote 65536\/65536/)
  const servedBy = pidOf(id)
  t.match(await driver.extend(id, 2), { sizeGb: 2 }, 'an exported volume extends')
  t.match(await nbdIo(e, node2, 'length'), /^2 GiB/m, 'and its export serves the new size (qemu-io length)')
  t.match(await nbdIo(e, node2, 'read -P 0x6b 0 64k', 'write -P 0x6c 1536M 64k', 'read -P 0x6c 1536M 64k'), /read 65536\/65536[\s\S]*wrote 65536\/65536[\s\S]*read 65536\/65536/, 'with the data it had, and writable past the old end')
  // qemu-io exits 1 when the pattern is not there.
  t.match(await nbdIo(e, node2, 'read -P 0x11 0 64k').catch((err: { stdout?: string }) => err.stdout ?? ''), /verification failed/, '(and the check can fail)')
  t.equal(pidOf(id), servedBy, 'by the daemon that served it (not restarted)')

  // An export served by an older agent's daemon (no QMP socket): a second host attaching
  // serves it again with one, on the same address, port and name.
  const oldPid = pidOf(id)
  process.kill(oldPid, 'SIGTERM')
  await waitGone(oldPid)
  const file = path.join(dir, 'plain', `volume-${id}.qcow2`)
  execFileSync('qemu-storage-daemon', [
    '--object', `tls-creds-x509,id=tls0,dir=${tls.serverDir},endpoint=server,verify-peer=on`,
    '--object', JSON.stringify({ 'qom-type': 'authz-list', id: 'authz0', policy: 'deny', rules: [{ match: 'CN=node2', policy: 'allow', format: 'exact' }] }),
    '--blockdev', `driver=file,filename=${file},node-name=file0`, '--blockdev', 'driver=qcow2,file=file0,node-name=vol0',
    '--nbd-server', `addr.type=inet,addr.host=127.0.0.1,addr.port=${e.port},tls-creds=tls0,tls-authz=authz0`,
    '--export', `type=nbd,id=export0,node-name=vol0,name=${e.name},writable=on`,
    '--pidfile', path.join(dir, 'plain', 'exports', `${id}.pid`), '--daemonize',
  ])
  const older = pidOf(id)
  const record = path.join(dir, 'plain', 'exports', `${id}.json`)
  writeFileSync(record, JSON.stringify({ ...JSON.parse(readFileSync(record, 'utf8')), pid: older }), { mode: 0o600 })
  t.not(older, oldPid, 'an export daemon with no QMP socket serves the volume')
  t.match(await nbdIo(e, node2, 'read -P 0x6b 0 64k'), /read 65536\/65536/, 'node2 reads through it')
  t.same(await driver.export(id, 'node3'), { ...e }, 'node3 attaching gets the same export (address, port, name)')
  t.not(pidOf(id), older, 'served by a new daemon')
  t.ok(readFileSync(`/proc/${pidOf(id)}/cmdline`, 'utf8').includes('.qmp'), 'with a QMP socket')
  t.match(await nbdIo(e, node3, 'read -P 0x6b 0 64k'), /read 65536\/65536/, 'node3 gets in')
  t.match(await nbdIo(e, node2, 'read -P 0x6c 1536M 64k'), /read 65536\/65536/, 'and node2 still does')
  await t.rejects(nbdIo(e, tls.clientDir, 'read 0 512'), 'a certificate naming no host is still refused')
  // A snapshot deleted under an exported volume made from it: the export's daemon pulls the chain into
  // the file it has open (QMP block-stream), its client writing on; then the snapshot's file goes.
  const [src, made, snap] = ['00000000-0000-4000-8000-00000000000d', '00000000-0000-4000-8000-00000000000e', '00000000-0000-4000-8000-00000000001d']
  await driver.create(src, 1, { kind: 'blank' })
  await writeImage(driver.volumePath(src), 0, Buffer.alloc(65536, 0x71), 'qcow2')
  await driver.createSnapshot(src, snap)
  await driver.create(made, 1, { kind: 'snapshot', snapshotId: snap })
  const m = await driver.export(made, 'node2')
  if (m.kind !== 'nbd') throw new Error('not nbd')
  t.match(await nbdIo(m, node2, 'write -P 0x72 64k 64k'), /wrote 65536\/65536/)
  const daemon = pidOf(made)
  await driver.deleteSnapshot(src, snap)
  t.notOk(existsSync(driver.snapshotPath(src, snap)), 'the snapshot under an exported volume is deleted')
  t.equal(JSON.parse(qemuImg(['info', '-U', '--output=json', driver.volumePath(made)]))['backing-filename'], undefined, 'the exported volume\'s file stands alone')
  t.equal(pidOf(made), daemon, 'pulled into by the daemon serving it (not restarted)')
  t.match(await nbdIo(m, node2, 'read -P 0x71 0 64k', 'read -P 0x72 64k 64k'), /read 65536\/65536[\s\S]*read 65536\/65536/, 'its client reads the snapshot\'s data and its own')
  t.same(readdirSync(path.join(dir, 'plain')).filter((f) => f.endsWith('.intent')), [], 'no intent left')
  const copySnap = '00000000-0000-4000-8000-00000000001e'
  t.match(await nbdIo(m, node2, 'write -P 0x73 128k 64k'), /wrote 65536\/65536/)
  // An older agent's snapshot of an exported volume was a full copy by its daemon (QMP blockdev-backup); what a
  // crash of that agent in the middle of one leaves in the daemon (QEMU goes on without it): the copy's target
  // node and its job, still running (rate-limited here), into the work file the agent made. The next agent's
  // start (init) cancels and drops them, adopting the daemon.
  const qmpSocket = path.join(dir, 'plain', 'exports', `${made}.qmp`)
  const leftPart = path.join(dir, 'plain', `.${path.basename(driver.snapshotPath(made, '00000000-0000-4000-8000-00000000001f'))}.part`)
  await createImage(leftPart, 'qcow2', { size: 1024 ** 3 })
  await qmp(qmpSocket, [
    { execute: 'blockdev-add', arguments: { driver: 'qcow2', 'node-name': 'copy0-target', file: { driver: 'file', filename: leftPart } } },
    { execute: 'blockdev-backup', arguments: { 'job-id': 'copy0', device: 'vol0', target: 'copy0-target', sync: 'full', 'auto-dismiss': false, speed: 1 } },
  ])
  const leftover = async () => ({
    jobs: (await qmp(qmpSocket, [{ execute: 'query-jobs' }])).map((j) => `${String(j.id)}:${String(j.status)}`),
    nodes: (await qmp(qmpSocket, [{ execute: 'query-named-block-nodes', arguments: { flat: true } }])).map((n) => String(n['node-name'])).filter((n) => n.startsWith('copy0')),
  })
  t.same(await leftover(), { jobs: ['copy0:running'], nodes: ['copy0-target'] }, 'a copy a crash interrupted is left running in the export\'s daemon')
  await driver.init()
  t.same(await leftover(), { jobs: [], nodes: [] }, 'the agent\'s start cancels it and drops its job and target node')
  t.equal(pidOf(made), daemon, 'in the daemon it adopts (not restarted)')
  t.notOk(existsSync(leftPart), 'and its work file is gone')
  // A snapshot of the exported volume is copy-on-write: the export's daemon moves onto a new active file
  // (QMP blockdev-snapshot), its client writing on into it; the old file, frozen under its name, is the snapshot's.
  const frozen = statSync(driver.volumePath(made))
  await driver.createSnapshot(made, copySnap)
  const layer = path.join(dir, 'plain', `volume-${made}.${copySnap}.qcow2`)
  t.equal(await driver.activePath(made), layer, 'the overlay is the volume\'s active file')
  t.equal(JSON.parse(qemuImg(['info', '-U', '--output=json', layer]))['backing-filename'], path.basename(driver.volumePath(made)), 'on the old file')
  t.same([statSync(driver.volumePath(made)).ino, statSync(driver.volumePath(made)).size], [frozen.ino, frozen.size], 'which is the snapshot\'s data, same inode and size: nothing copied')
  t.equal(pidOf(made), daemon, 'moved by the daemon serving it (not restarted)')
  t.match(await nbdIo(m, node2, 'write -P 0x74 128k 64k'), /wrote 65536\/65536/, 'its client writes on')
  t.match(qemuIo(driver.volumePath(made), 'read -P 0x71 0 64k', 'read -P 0x72 64k 64k', 'read -P 0x73 128k 64k'), /(read 65536\/65536[\s\S]*){3}/, 'the snapshot has the data as it was')
  t.match(await nbdIo(m, node2, 'read -P 0x74 128k 64k', 'read -P 0x72 64k 64k'), /(read 65536\/65536[\s\S]*){2}/, 'the volume has the later write, and the earlier data through the chain')
  t.match(qemuIo(layer, 'read -P 0x74 128k 64k'), /read 65536\/65536/, 'which went into the active file')
  // Grown while exported: the daemon resizes the node its export serves now (the overlay).
  await driver.extend(made, 2)
  t.equal(JSON.parse(qemuImg(['info', '-U', '--output=json', layer]))['virtual-size'], 2 * 1024 ** 3, 'extended: the active file grew')
  t.match(await nbdIo(m, node2, 'read -P 0x74 128k 64k'), /read 65536\/65536/, 'and its client reads on')
  t.same(readdirSync(path.join(dir, 'plain')).filter((f) => f.endsWith('.part')), [], 'no part file left')
  t.same(await leftover(), { jobs: [], nodes: [] }, 'nor anything of a copy in the daemon')
  // Exported and attached to a running guest of this host too: a live snapshot would move only one of the
  // two QEMUs off the file it freezes: refused before anything is done.
  const never = async (): Promise<never> => {
    throw new Error('no hypervisor call expected')
  }
  const withGuest = new FileVolumeDriver({ dir: path.join(dir, 'plain'), host: 'node1', network: { address: '127.0.0.1', tlsDir: tls.serverDir }, guests: { snapshot: never, source: () => driver.activePath(made), pull: never, settlePull: never } })
  const refusedSnap = '00000000-0000-4000-8000-000000000020'
  const before = readdirSync(path.join(dir, 'plain')).sort()
  await t.rejects(withGuest.createSnapshot(made, refusedSnap, [{ instanceUuid: '00000000-0000-4000-8000-0000000000ac', device: 'vdb' }]), { name: 'FailedPrecondition', message: /attached to server 00000000-0000-4000-8000-0000000000ac of this host and exported to servers of other hosts.*detach it from all but one server/ }, 'attached here and exported: refused, saying what to do')
  t.same([readdirSync(path.join(dir, 'plain')).sort(), await driver.snapshotInfo(refusedSnap)], [before, undefined], 'nothing changed')
  // The agent dies in the middle of a snapshot of the exported volume: after making the overlay (the
  // export not moved) its start goes back; after the daemon moved (not recorded) it goes forward.
  const stateFile = path.join(dir, 'plain', `volume-${made}.info`)
  const crashAt = async (snapshotId: string, move: boolean) => {
    const overlayFile = path.join(dir, 'plain', `volume-${made}.${snapshotId}.qcow2`)
    const st = JSON.parse(readFileSync(stateFile, 'utf8')) as Record<string, unknown>
    writeFileSync(stateFile, JSON.stringify({ ...st, pending: { snapshotId, overlay: path.basename(overlayFile), exported: true } }), { mode: 0o600 })
    await createImage(overlayFile, 'qcow2', { size: 2 * 1024 ** 3, backingFile: path.basename(layer), backingFormat: 'qcow2' })
    if (move) t.ok(await new NbdExports({ stateDir: exportsDir, address: '127.0.0.1', tlsDir: tls.serverDir }).snapshot(made, layer, 'qcow2', overlayFile), '(the daemon moved)')
    await driver.init()
    return overlayFile
  }
  const exportsDir = path.join(dir, 'plain', 'exports')
  const [backSnap, fwdSnap] = ['00000000-0000-4000-8000-000000000021', '00000000-0000-4000-8000-000000000022']
  const notMoved = await crashAt(backSnap, false)
  t.same([existsSync(notMoved), await driver.activePath(made), await driver.snapshotInfo(backSnap)], [false, layer, undefined], 'not moved: init removes the overlay, the active file as it was')
  const movedTo = await crashAt(fwdSnap, true)
  t.same([await driver.activePath(made), (await driver.snapshotInfo(fwdSnap))?.volumeId, pidOf(made)], [movedTo, made, daemon], 'moved: init records the overlay active and the snapshot taken')
  t.match(await nbdIo(m, node2, 'write -P 0x75 192k 64k'), /wrote 65536\/65536/)
  t.match(qemuIo(movedTo, 'read -P 0x75 192k 64k'), /read 65536\/65536/, 'the client writes into it')
  // Deleted while exported: the older snapshot's file rests under the newer's layer, which is in the
  // daemon's chain: the daemon pulls its chain into the active file (block-stream on the node it serves),
  // then the layer is flattened and the file goes.
  await driver.deleteSnapshot(made, copySnap)
  t.same([existsSync(driver.volumePath(made)), JSON.parse(qemuImg(['info', '-U', '--output=json', layer]))['backing-filename'], JSON.parse(qemuImg(['info', '-U', '--output=json', movedTo]))['backing-filename'], pidOf(made)], [false, undefined, undefined, daemon], 'the snapshot\'s file gone, the layer and the active file standing alone, the same daemon')
  t.match(qemuIo(layer, 'read -P 0x71 0 64k', 'read -P 0x74 128k 64k'), /(read 65536\/65536[\s\S]*){2}/, 'the newer snapshot keeps its data')
  await driver.deleteSnapshot(made, fwdSnap)
  t.match(await nbdIo(m, node2, 'read -P 0x71 0 64k', 'read -P 0x74 128k 64k', 'read -P 0x75 192k 64k'), /(read 65536\/65536[\s\S]*){3}/, 'its client reads every byte')
  // Attached to two running guests of this host over the export (a multiattach volume): neither guest's QEMU
  // has the file open, the export's daemon does, and it moves for them (no hypervisor call).
  const overNbd = new FileVolumeDriver({ dir: path.join(dir, 'plain'), host: 'node1', network: { address: '127.0.0.1', tlsDir: tls.serverDir }, guests: { snapshot: never, source: async () => `nbd://127.0.0.1:${m.port}/${m.name}`, pull: never, settlePull: never } })
  const sharedSnap = '00000000-0000-4000-8000-000000000023'
  const twoGuests = ['ad', 'ae'].map((x) => ({ instanceUuid: `00000000-0000-4000-8000-0000000000${x}`, device: 'vdb' }))
  const beforeShared = await driver.activePath(made)
  t.equal((await overNbd.createSnapshot(made, sharedSnap, twoGuests)).volumeId, made, 'a snapshot of a volume two guests here have over its export is taken')
  t.same([await driver.activePath(made) !== beforeShared, pidOf(made)], [true, daemon], 'by the export\'s daemon, moved onto a new active file')
  t.match(await nbdIo(m, node2, 'write -P 0x76 256k 64k'), /wrote 65536\/65536/)
  t.match(qemuIo(await driver.activePath(made), 'read -P 0x76 256k 64k'), /read 65536\/65536/, 'which the export writes into')
  await overNbd.deleteSnapshot(made, sharedSnap, twoGuests)
  t.equal(await driver.snapshotInfo(sharedSnap), undefined, 'and deleted by the daemon\'s pull, no hypervisor call either')
  await driver.unexport(made, 'node2')
  await driver.delete(made)
  await driver.delete(src)

  // The host's certificate renewed (a new server certificate of the same CA in the TLS directory): the export's
  // daemon loaded the old one, so it is served again with the new one — but not while a client is connected.
  const renewed = await ensureCertificate(await ensureCa(path.join(dir, 'tls', 'ca')), path.join(dir, 'tls', 'issued'), 'server-renewed', { commonName: 'nbd-server', dnsNames: [], ips: ['127.0.0.1'], usage: 'server' })
  for (const [from, to] of [[renewed.keyFile, 'server-key.pem'], [renewed.certFile, 'server-cert.pem']] as const) writeFileSync(path.join(tls.serverDir, to), readFileSync(from), { mode: 0o600 })
  const established = () => execFileSync('ss', ['-Htn', 'state', 'established', `( sport = :${e.port} )`], { encoding: 'utf8' }).trim() !== ''
  // A client that stays connected: qemu-io with the export open, reading its commands from a pipe.
  const held = spawn('qemu-io', ['--object', `tls-creds-x509,id=tls0,dir=${node2},endpoint=client`, '--image-opts', `driver=raw,file.driver=nbd,file.server.type=inet,file.server.host=${e.address},file.server.port=${e.port},file.export=${e.name},file.tls-creds=tls0`], { stdio: ['pipe', 'ignore', 'ignore'] })
  t.teardown(() => void (held.exitCode === null && held.kill()))
  await eventually(established, 30_000, 'the held client to connect')
  const beforeReload = pidOf(id)
  t.same(await driver.reloadTls(), [], 'an export a client is connected to keeps the certificate it loaded')
  t.equal(pidOf(id), beforeReload, '(its daemon not restarted)')
  held.stdin!.end('quit\n')
  await eventually(() => !established(), 30_000, 'the held client to go')
  t.same(await driver.reloadTls(), [id], 'once no client is connected, it is served again')
  t.not(pidOf(id), beforeReload, 'by a new daemon, which loaded the renewed certificate')
  t.equal(JSON.parse(readFileSync(path.join(dir, 'plain', 'exports', `${id}.json`), 'utf8')).tlsCert, new X509Certificate(readFileSync(renewed.certFile)).fingerprint256, 'as its record says')
  t.match(await nbdIo(e, node2, 'read -P 0x6b 0 64k'), /read 65536\/65536/, 'same address, port and name: node2 reads its data')
  t.match(await nbdIo(e, node3, 'read -P 0x6b 0 64k'), /read 65536\/65536/, 'and node3 still gets in')
  t.same(await driver.reloadTls(), [], 'served with the certificate in place: not again')

  await driver.unexport(id, 'node3')
  await driver.unexport(id, 'node2')
  t.same(await driver.exports(), [], 'no export left')
  t.match(qemuImg(['check', file]), /No errors were found/, 'qemu-img check: the grown file is sound')

  function pidOf(volumeId: string): number {
    return Number(readFileSync(path.join(dir, 'plain', 'exports', `${volumeId}.pid`), 'utf8').trim())
  }
})

async function waitGone(pid: number): Promise<void> {
  for (let i = 0; i < 600 && existsSync(`/proc/${pid}`); i++) await new Promise((r) => setTimeout(r, 50))
}

t.test('a snapshot of a volume a running guest has open is copy-on-write: the guest moves onto a new active file, the old one frozen under its name; crashes at each step settle by where the guest\'s disk is', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'strato-file-vol-live-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const guest = '00000000-0000-4000-8000-0000000000ab'
  const [vol, from1, s1, s2, s3, s4, s5] = ['00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-000000000002', '00000000-0000-4000-8000-000000000011', '00000000-0000-4000-8000-000000000012', '00000000-0000-4000-8000-000000000013', '00000000-0000-4000-8000-000000000014', '00000000-0000-4000-8000-000000000015']
  // The hypervisor: a running guest with the file it has open on vdb; a move (libvirt's disk-only
  // snapshot) may fail before or after the disk moved, or the agent may die around it (then nothing of
  // the driver runs on: every call of the dead agent's fails); a pull does what block-stream does.
  const hv = { running: true, disk: '', fail: undefined as 'before' | 'after' | undefined, dies: false, dead: false, calls: [] as string[] }
  const alive = () => {
    if (hv.dead) throw new Error('the agent died')
  }
  const guests = {
    snapshot: async (uuid: string, device: string, overlay: string) => {
      alive()
      hv.calls.push(`snapshot ${uuid} ${device} ${path.basename(overlay)}`)
      if (!hv.running) return false
      if (hv.fail === 'before') throw new Error('virDomainSnapshotCreateXML: refused before the move')
      t.equal(JSON.parse(qemuImg(['info', '-U', '--output=json', overlay]))['backing-filename'], path.basename(hv.disk), 'the overlay rests on the file the disk has open')
      hv.disk = overlay
      if (hv.fail === 'after') throw new Error('virDomainSnapshotCreateXML: failed after the move')
      if (hv.dies) hv.dead = true
      alive()
      return true
    },
    source: async () => {
      alive()
      return hv.disk
    },
    pull: async (uuid: string, device: string) => {
      hv.calls.push(`pull ${uuid} ${device}`)
      if (!hv.running) return false
      await convertImage(hv.disk, `${hv.disk}.pulled`, { srcFormat: 'qcow2', dstFormat: 'qcow2' })
      renameSync(`${hv.disk}.pulled`, hv.disk)
      return true
    },
    settlePull: async () => {},
  }
  let driver = new FileVolumeDriver({ dir, host: 'node1', guests })
  const restart = async () => {
    hv.dead = false
    driver = new FileVolumeDriver({ dir, host: 'node1', guests })
    await driver.init()
  }
  await driver.init()
  await driver.create(vol, 1, { kind: 'blank' })
  hv.disk = driver.volumePath(vol)
  const [a, b, c] = [Buffer.from('before the snapshot'), Buffer.from('after the first snapshot'), Buffer.from('after the second')]
  await writeImage(hv.disk, 0, a, 'qcow2')
  const info = (file: string) => JSON.parse(qemuImg(['info', '-U', '--output=json', file])) as Record<string, unknown>
  const attached = [{ instanceUuid: guest, device: 'vdb' }]
  const first = statSync(driver.volumePath(vol))
  const overlay = (s: string) => path.join(dir, `volume-${vol}.${s}.qcow2`)
  const stateFile = path.join(dir, `volume-${vol}.info`)

  await driver.createSnapshot(vol, s1, attached)
  t.same(hv.calls, [`snapshot ${guest} vdb ${path.basename(overlay(s1))}`], 'the guest moved onto a new overlay; nothing copied')
  t.equal(await driver.activePath(vol), overlay(s1), 'the new overlay is the volume\'s active file')
  t.same(await driver.export(vol, 'node1'), { kind: 'file', path: overlay(s1), format: 'qcow2' }, 'a local attach or a start gets the active file')
  t.equal(statSync(driver.volumePath(vol)).ino, first.ino, 'the snapshot\'s data is the volume\'s old file, same inode')
  t.equal(statSync(driver.volumePath(vol)).size, first.size, 'unchanged in size')
  t.ok(statSync(overlay(s1)).size < 1024 * 1024, `the overlay is small (${statSync(overlay(s1)).size} bytes)`)
  t.notOk(existsSync(driver.snapshotPath(vol, s1)), 'no snapshot file of its own')
  t.same(await driver.snapshotInfo(s1), { id: s1, volumeId: vol, sizeGb: 1 })
  t.equal((statSync(stateFile).mode & 0o777), 0o600, 'the volume\'s state file is private')
  await writeImage(hv.disk, 4096, b, 'qcow2')
  t.same([await readImage(hv.disk, 0, a.length, 'qcow2'), await readImage(hv.disk, 4096, b.length, 'qcow2')], [a, b], 'the guest reads what it wrote before and after')
  t.same(await readImage(driver.volumePath(vol), 4096, b.length, 'qcow2'), Buffer.alloc(b.length), 'the later write went to the volume, not the snapshot')
  await driver.create(from1, 1, { kind: 'snapshot', snapshotId: s1 })
  t.equal(info(driver.volumePath(from1))['backing-filename'], path.basename(driver.volumePath(vol)), 'a volume from the snapshot is an overlay on the frozen file')
  t.same([await readImage(driver.volumePath(from1), 0, a.length, 'qcow2'), await readImage(driver.volumePath(from1), 4096, b.length, 'qcow2')], [a, Buffer.alloc(b.length)], 'with the data of the snapshot only')
  hv.calls = []
  await driver.createSnapshot(vol, s1, attached)
  t.same(hv.calls, [], 'redelivered: done already, nothing moved again')

  // Refused before the move, or failed after it: settled by where the disk is.
  hv.fail = 'before'
  await t.rejects(driver.createSnapshot(vol, s2, attached), /refused before the move/)
  t.same([existsSync(overlay(s2)), await driver.activePath(vol), await driver.snapshotInfo(s2)], [false, overlay(s1), undefined], 'refused: no overlay left, the active file as it was, no snapshot')
  hv.fail = 'after'
  await driver.createSnapshot(vol, s2, attached)
  hv.fail = undefined
  t.same([await driver.activePath(vol), hv.disk, (await driver.snapshotInfo(s2))?.volumeId], [overlay(s2), overlay(s2), vol], 'an error after the disk moved: the snapshot is taken, the overlay active')
  await writeImage(hv.disk, 8192, c, 'qcow2')

  // The agent dies after making the overlay, before the move: its next start takes it back.
  hv.fail = 'before'
  hv.dead = false
  const dieBefore = guests.snapshot
  guests.snapshot = async (...args) => {
    hv.dead = true
    return dieBefore(...args)
  }
  await t.rejects(driver.createSnapshot(vol, s3, attached), /died/)
  guests.snapshot = dieBefore
  hv.fail = undefined
  t.ok(existsSync(overlay(s3)), '(the crash left the overlay)')
  await restart()
  t.same([existsSync(overlay(s3)), await driver.activePath(vol), hv.disk, await driver.snapshotInfo(s3)], [false, overlay(s2), overlay(s2), undefined], 'init: the guest is still on the old file, the overlay goes')
  hv.calls = []
  await driver.createSnapshot(vol, s3, attached)
  t.same([hv.calls.length, await driver.activePath(vol), hv.disk], [1, overlay(s3), overlay(s3)], 'the redelivered cast takes it')

  // Dies after the move, before recording it: init, or the redelivered cast, goes forward.
  hv.dies = true
  await t.rejects(driver.createSnapshot(vol, s4, attached), /died/)
  hv.dies = false
  t.same(JSON.parse(readFileSync(stateFile, 'utf8')).pending?.snapshotId, s4, '(the crash left the move pending)')
  await restart()
  t.same([await driver.activePath(vol), hv.disk, (await driver.snapshotInfo(s4))?.volumeId], [overlay(s4), overlay(s4), vol], 'init: the guest is on the overlay, it is the active file and the snapshot taken')
  hv.dies = true
  await t.rejects(driver.createSnapshot(vol, s5, attached), /died/)
  hv.dies = false
  hv.dead = false
  hv.calls = []
  await driver.createSnapshot(vol, s5, attached)
  t.same([hv.calls, await driver.activePath(vol), (await driver.snapshotInfo(s5))?.volumeId], [[], overlay(s5), vol], 'the redelivered cast (no restart) settles forward, moving nothing again')
  t.same([await readImage(hv.disk, 0, a.length, 'qcow2'), await readImage(hv.disk, 4096, b.length, 'qcow2'), await readImage(hv.disk, 8192, c.length, 'qcow2')], [a, b, c], 'the guest reads every write through the chain')

  // Deletes while the guest runs: the oldest (under a frozen layer the guest has in its chain and a volume
  // made from it): the guest pulls its chain into its active file first, then the layer is flattened.
  hv.calls = []
  await driver.deleteSnapshot(vol, s1, [...attached.map((x) => ({ ...x, volumeId: vol }))])
  t.same(hv.calls, [`pull ${guest} vdb`], 'the guest pulled its chain')
  t.notOk(existsSync(driver.volumePath(vol)), 'the oldest snapshot\'s file is gone')
  t.equal(info(overlay(s1))['backing-filename'], undefined, 'the layer above it stands alone')
  t.same(await readImage(overlay(s1), 4096, b.length, 'qcow2'), b, 'snapshot 2\'s data kept')
  t.same(await readImage(driver.volumePath(from1), 0, a.length, 'qcow2'), a, 'the volume made from the deleted snapshot keeps its data')
  t.equal((await driver.snapshotInfo(s1)), undefined)
  // Then nothing rests on the newest any more (the active file stands alone): it just goes.
  hv.calls = []
  await driver.deleteSnapshot(vol, s5, [...attached.map((x) => ({ ...x, volumeId: vol }))])
  t.same([hv.calls, existsSync(overlay(s4)), await driver.activePath(vol)], [[], false, overlay(s5)], 'no pull, its file gone, the active file kept')
  t.same(await readImage(overlay(s2), 8192, c.length, 'qcow2'), c, 'snapshot 3\'s data as it was')
  // A new live snapshot, deleted: the active file rests on it, the guest pulls it in.
  const [s6, s7] = ['00000000-0000-4000-8000-000000000016', '00000000-0000-4000-8000-000000000017']
  await driver.createSnapshot(vol, s6, attached)
  const d = Buffer.from('after the last snapshot')
  await writeImage(hv.disk, 12288, d, 'qcow2')
  hv.calls = []
  await driver.deleteSnapshot(vol, s6, [...attached.map((x) => ({ ...x, volumeId: vol }))])
  t.same([hv.calls, existsSync(overlay(s5)), await driver.activePath(vol), info(overlay(s6))['backing-filename']], [[`pull ${guest} vdb`], false, overlay(s6), undefined], 'pulled into the active file, the snapshot\'s file gone')
  t.same([await readImage(hv.disk, 0, a.length, 'qcow2'), await readImage(hv.disk, 4096, b.length, 'qcow2'), await readImage(hv.disk, 8192, c.length, 'qcow2'), await readImage(hv.disk, 12288, d.length, 'qcow2')], [a, b, c, d], 'the guest reads every write')

  // A guest that does not run: a detached-like snapshot (the active file renamed, an overlay at its name).
  hv.running = false
  hv.calls = []
  await driver.createSnapshot(vol, s7, attached)
  t.same([hv.calls.length, await driver.activePath(vol), info(overlay(s6))['backing-filename']], [1, overlay(s6), path.basename(driver.snapshotPath(vol, s7))], 'the stopped guest keeps its file name; the data under it became the snapshot')
  await driver.delete(from1)
  await driver.delete(vol)
  t.same(readdirSync(dir), [], 'deleting the volume leaves no file')
})

t.test('deleting a snapshot under files running guests have open: their QEMU pulls it in live; a crash in the middle is settled at init', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'strato-file-vol-pull-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const [g1, g2] = ['00000000-0000-4000-8000-0000000000b1', '00000000-0000-4000-8000-0000000000b2']
  const [vol, copy, s1, s2, s3] = ['00000000-0000-4000-8000-000000000021', '00000000-0000-4000-8000-000000000022', '00000000-0000-4000-8000-000000000031', '00000000-0000-4000-8000-000000000032', '00000000-0000-4000-8000-000000000033']
  let driver: FileVolumeDriver
  // The hypervisor: which guests run and which file each has open; a pull does what block-stream does
  // to the file (every block the chain shows copied in, no backing file left), or fails, or is left running.
  const hv = { running: new Map<string, string>(), fail: false, leaveRunning: false, job: undefined as string | undefined, calls: [] as string[] }
  const pullInto = async (file: string) => {
    await convertImage(file, `${file}.pulled`, { srcFormat: 'qcow2', dstFormat: 'qcow2' })
    renameSync(`${file}.pulled`, file)
  }
  const guests = {
    snapshot: async () => false,
    source: async () => undefined,
    pull: async (uuid: string, device: string) => {
      hv.calls.push(`pull ${uuid} ${device}`)
      const file = hv.running.get(uuid)
      if (!file) return false
      t.ok(readdirSync(dir).some((f) => f.endsWith('.delete.intent')), 'the intent is written before the pull')
      if (hv.fail) throw new Error('the pull of the backing chain of disk vdb ended without merging it: injected')
      if (hv.leaveRunning) {
        hv.job = file
        throw new Error('the agent died during the pull')
      }
      await pullInto(file)
      return true
    },
    settlePull: async (uuid: string, device: string) => {
      hv.calls.push(`settle ${uuid} ${device}`)
      if (hv.job && hv.running.get(uuid) === hv.job) await pullInto(hv.job)
      hv.job = undefined
    },
  }
  driver = new FileVolumeDriver({ dir, host: 'node1', guests })
  await driver.init()
  const backing = (file: string) => JSON.parse(qemuImg(['info', '-U', '--output=json', file]))['backing-filename'] as string | undefined
  const intents = () => readdirSync(dir).filter((f) => f.endsWith('.intent'))
  const [a, b] = [Buffer.from('written before the snapshot'), Buffer.from('written after it')]
  const read = (id: string, at: number, n: number) => readImage(driver.volumePath(id), at, n, 'qcow2')
  await driver.create(vol, 1, { kind: 'blank' })
  await writeImage(driver.volumePath(vol), 0, a, 'qcow2')
  await driver.createSnapshot(vol, s1)
  await writeImage(driver.volumePath(vol), 4096, b, 'qcow2')
  hv.running.set(g1, driver.volumePath(vol))
  const onVol = [{ instanceUuid: g1, device: 'vdb', volumeId: vol }]

  // Its newest snapshot, under the file the running guest writes to: that guest pulls it in.
  await driver.deleteSnapshot(vol, s1, onVol)
  t.same(hv.calls, [`pull ${g1} vdb`], 'the guest that has the volume open pulls the snapshot into it')
  t.notOk(existsSync(driver.snapshotPath(vol, s1)), 'the snapshot\'s file is gone')
  t.equal(backing(driver.volumePath(vol)), undefined, 'the volume\'s file stands alone')
  t.same([await read(vol, 0, a.length), await read(vol, 4096, b.length)], [a, b], 'with the data of before and after the snapshot')
  t.same(intents(), [], 'no intent left')

  // A volume made from a snapshot, open in another running guest, and the volume itself: both pulled.
  await driver.createSnapshot(vol, s2)
  await driver.create(copy, 1, { kind: 'snapshot', snapshotId: s2 })
  hv.running.set(g2, driver.volumePath(copy))
  hv.calls = []
  // Two servers with the volume open: only one may pull: refused, nothing changed.
  const twice = [...onVol, { instanceUuid: g2, device: 'vdc', volumeId: vol }]
  await t.rejects(driver.deleteSnapshot(vol, s2, twice), /attached to 2 server\(s\) of this host.*detach it from all but one/)
  t.same([hv.calls, existsSync(driver.snapshotPath(vol, s2)), intents()], [[], true, []], 'a multi-attached dependent: refused before anything is done')
  // The pull fails: the snapshot stays, with the files resting on it.
  hv.fail = true
  await t.rejects(driver.deleteSnapshot(vol, s2, [...onVol, { instanceUuid: g2, device: 'vdb', volumeId: copy }]), /ended without merging it: injected/)
  t.same([existsSync(driver.snapshotPath(vol, s2)), backing(driver.volumePath(vol)), intents()], [true, path.basename(driver.snapshotPath(vol, s2)), []], 'a failed pull: the snapshot\'s file intact, the volume still rests on it, no intent')
  hv.fail = false
  hv.calls = []
  await driver.deleteSnapshot(vol, s2, [...onVol, { instanceUuid: g2, device: 'vdb', volumeId: copy }])
  t.same(hv.calls.sort(), [`pull ${g1} vdb`, `pull ${g2} vdb`], 'each running guest pulls into the file it has open')
  t.same([backing(driver.volumePath(vol)), backing(driver.volumePath(copy)), existsSync(driver.snapshotPath(vol, s2))], [undefined, undefined, false])
  t.same([await read(copy, 0, a.length), await read(copy, 4096, b.length)], [a, b], 'the volume made from the snapshot keeps its data')

  // A guest that does not run: nothing has the file open, it is flattened here.
  hv.running.delete(g1)
  await driver.createSnapshot(vol, s3)
  hv.calls = []
  await driver.deleteSnapshot(vol, s3, onVol)
  t.same([hv.calls, backing(driver.volumePath(vol)), existsSync(driver.snapshotPath(vol, s3))], [[`pull ${g1} vdb`], undefined, false], 'asked, the stopped guest pulls nothing: flattened here')
  t.same(await read(vol, 4096, b.length), b)

  // Crashes during the pull: a new driver's init waits for the job QEMU still runs, and settles as the headers show.
  hv.running.set(g1, driver.volumePath(vol))
  const restart = async () => {
    driver = new FileVolumeDriver({ dir, host: 'node1', guests })
    await driver.init()
  }
  await driver.createSnapshot(vol, s3)
  hv.leaveRunning = true
  await t.rejects(driver.deleteSnapshot(vol, s3, onVol), /died/)
  hv.leaveRunning = false
  // (what the crash leaves: the rejection above removed the intent; a real crash does not)
  writeFileSync(path.join(dir, `.snapshot-${vol}_${s3}.delete.intent`), JSON.stringify({ volumeId: vol, snapshotId: s3, attached: onVol }))
  hv.calls = []
  await restart()
  t.same([hv.calls, intents(), existsSync(driver.snapshotPath(vol, s3)), backing(driver.volumePath(vol))], [[`settle ${g1} vdb`], [], false, undefined], 'the job QEMU went on with finished: nothing rests on the snapshot, its file is gone')
  t.same(await read(vol, 4096, b.length), b, 'and the volume has its data')

  await driver.createSnapshot(vol, s3)
  writeFileSync(path.join(dir, `.snapshot-${vol}_${s3}.delete.intent`), JSON.stringify({ volumeId: vol, snapshotId: s3, attached: onVol }))
  await restart()
  t.same([intents(), existsSync(driver.snapshotPath(vol, s3)), backing(driver.volumePath(vol))], [[], true, path.basename(driver.snapshotPath(vol, s3))], 'no pull got through (none ran, or it was cancelled): the snapshot stays, the volume rests on it')
  hv.calls = []
  await driver.deleteSnapshot(vol, s3, onVol)
  t.same([hv.calls, existsSync(driver.snapshotPath(vol, s3)), backing(driver.volumePath(vol))], [[`pull ${g1} vdb`], false, undefined], 'the redelivered delete does it')
})

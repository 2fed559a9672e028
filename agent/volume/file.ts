/**
 * Volumes as files of the native engine (Cinder's NFS/“generic file”
 * drivers, on a local directory): `volume-<id>.<format>` per volume, and
 * `snapshot-<volume id>_<snapshot id>.<format>` per snapshot, in one
 * directory of the agent running the volume role. Sparse: a new volume
 * allocates nothing.
 *
 * qcow2 (the default) is copy-on-write: a snapshot freezes the volume's file
 * as the snapshot and gives the volume a new overlay on it, and a volume
 * made from a snapshot is an overlay on the snapshot's file. Deleting a
 * snapshot first flattens every file whose backing file it is (a full copy
 * through the chain, renamed over the dependent), so no data is lost.
 * raw volumes copy instead (sparse copies of the native engine).
 * A volume from an image is converted from the agent's image cache; a clone
 * is a flattened copy of its source.
 *
 * A snapshot of a volume a running guest of this host has open (`attached`)
 * is a copy of the file as it is now, made by the guest's QEMU while the
 * guest writes on (libvirt's push backup, `GuestDisks.copy`); a volume
 * exported to other hosts is copied the same way by its export's daemon.
 * The snapshot's file stands alone; nothing of the guest's chain, the
 * export or the domain definition changes.
 *
 * Deleting a snapshot under a file a running guest of this host has open
 * (the volume's own, or a volume's made from the snapshot) has that guest's
 * QEMU pull the chain into the file live (libvirt's block pull: block-stream),
 * the guest writing on; a file exported to other hosts is pulled into by its
 * export's daemon (QMP block-stream, `nbd-export.ts`). The snapshot's file
 * goes once nothing rests on it.
 * An intent (`.snapshot-<volume>_<snapshot>.delete.intent`) is written
 * before the first pull; one left by a crash is settled at init: a pull QEMU
 * still runs is waited for, and the file goes if the headers show nothing
 * rests on it any more (else it stays, for the redelivered delete).
 *
 * Work writes to `.part` files renamed into place, so a crash leaves either
 * the old state or the new one (and `.part` leftovers, removed at init).
 * Operations run one at a time (they change the shared chains).
 */
import { readdir, readFile, rename, rm, stat, statfs, chmod, mkdir, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { FailedPrecondition, Internal, InvalidArgument, NotFound } from '../../proto/errors.js'
import { convertImage, createImage, imageInfo, resizeImage, type ImageFormat } from '../../native/index.js'
import { PRIVATE_FILE_MODE } from '../disk/guest-dirs.js'
import { NbdExports } from './nbd-export.js'
import { checkId, checkSizeGb, GiB, type AttachedDisk, type ExportRef, type GuestDisks, type SnapshotInfo, type VolumeDriver, type VolumeExport, type VolumeInfo, type VolumeSource, type VolumeStats } from './driver.js'

export interface FileVolumeDriverOptions {
  /** The directory volumes live in. */
  dir: string
  /** This agent's host (exports to it are local files). */
  host: string
  /** @default qcow2 */
  format?: ImageFormat
  /** Reported as `volume_backend_name`. @default 'file' */
  backendName?: string
  /**
   * Network exports to other hosts (NBD over TLS, `nbd-export.ts`): the
   * address they listen on and the NBD server's x509 directory. Absent:
   * exports to other hosts are refused (FailedPrecondition).
   */
  network?: { address: string; tlsDir: string }
  /** This host's guests, for snapshots of volumes they have open. Absent: attached volumes snapshot as if no guest ran. */
  guests?: GuestDisks
}

/** A snapshot delete whose data guests of this host pull into files they have open (written before the first pull). */
interface DeleteIntent {
  volumeId: string
  snapshotId: string
  /** The guests that pull, with the volumes whose files they have open. */
  attached: AttachedDisk[]
  /** The volumes whose export's daemon pulls (they are served to other hosts). */
  exported?: string[]
}

const DELETE_INTENT_FILE = /^\.snapshot-[0-9a-f-]{36}_[0-9a-f-]{36}\.delete\.intent$/

const SNAPSHOT_FILE = /^snapshot-([0-9a-f-]{36})_([0-9a-f-]{36})\.(qcow2|raw)$/

const VOLUME_FILE = /^volume-([0-9a-f-]{36})\.qcow2$/

export class FileVolumeDriver implements VolumeDriver {
  readonly name = 'file'
  readonly dir: string
  readonly format: ImageFormat
  private readonly backendName: string
  private tail: Promise<unknown> = Promise.resolve()
  private readonly nbd: NbdExports | undefined

  constructor(private readonly o: FileVolumeDriverOptions) {
    this.dir = path.resolve(o.dir)
    this.format = o.format ?? 'qcow2'
    this.backendName = o.backendName ?? 'file'
    this.nbd = o.network ? new NbdExports({ stateDir: path.join(this.dir, 'exports'), address: o.network.address, tlsDir: o.network.tlsDir }) : undefined
  }

  /** Runs `fn` after every earlier operation finished. */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.tail.then(fn, fn)
    this.tail = run.catch(() => {})
    return run
  }

  async init(): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 })
    for (const f of await readdir(this.dir)) if (f.endsWith('.part')) await rm(path.join(this.dir, f), { force: true })
    // Snapshot deletes a crash interrupted while guests pulled their data: as far as the files show.
    for (const f of await readdir(this.dir)) if (DELETE_INTENT_FILE.test(f)) await this.settleDelete(path.join(this.dir, f))
    // Exports whose server died with the host (or was killed) are served again where they were.
    await this.nbd?.reserve((id) => this.exportedFile(id))
  }

  /** The file an export of volume `id` serves (undefined: the volume is gone). */
  private async exportedFile(id: string): Promise<{ path: string; format: ImageFormat } | undefined> {
    return (await this.info(id)) ? { path: this.volumePath(id), format: this.format } : undefined
  }

  reloadTls(): Promise<string[]> {
    return this.serial(async () => (await this.nbd?.reloadTls((id) => this.exportedFile(id))) ?? [])
  }

  volumePath(id: string): string {
    return path.join(this.dir, `volume-${checkId(id, 'volume')}.${this.format}`)
  }

  snapshotPath(volumeId: string, snapshotId: string): string {
    return path.join(this.dir, `snapshot-${checkId(volumeId, 'volume')}_${checkId(snapshotId, 'snapshot')}.${this.format}`)
  }

  async create(id: string, sizeGb: number, source: VolumeSource): Promise<VolumeInfo> {
    checkSizeGb(sizeGb)
    if (source.kind === 'volume') return this.clone(id, source.volumeId, sizeGb)
    return this.serial(async () => {
      const existing = await this.info(id)
      if (existing) {
        if (existing.sizeGb !== sizeGb) throw new FailedPrecondition(`volume ${id} exists with ${existing.sizeGb} GiB, not ${sizeGb}`)
        return existing
      }
      const dst = this.volumePath(id)
      await this.made(dst, async (part) => {
        if (source.kind === 'blank') {
          await createImage(part, this.format, { size: sizeGb * GiB })
        } else if (source.kind === 'image') {
          const [img] = await imageInfo(source.path, source.format)
          if (img && img.virtualSize > sizeGb * GiB) throw new InvalidArgument(`the image is ${Math.ceil(img.virtualSize / GiB)} GiB; volume ${id} of ${sizeGb} GiB cannot hold it`, { field: 'size' })
          await convertImage(source.path, part, { srcFormat: source.format, dstFormat: this.format })
          await resizeImage(part, sizeGb * GiB, { format: this.format })
        } else {
          const snap = await this.findSnapshot(source.snapshotId)
          if (!snap) throw new NotFound(`snapshot ${source.snapshotId} not found on this backend`)
          if (sizeGb < snap.sizeGb) throw new InvalidArgument(`volume ${id} would be ${sizeGb} GiB, smaller than snapshot ${source.snapshotId} (${snap.sizeGb} GiB)`, { field: 'size' })
          if (this.format === 'qcow2') {
            await createImage(part, 'qcow2', { size: sizeGb * GiB, backingFile: path.basename(snap.file), backingFormat: 'qcow2' })
          } else {
            await convertImage(snap.file, part, { srcFormat: 'raw', dstFormat: 'raw' })
            await resizeImage(part, sizeGb * GiB, { format: 'raw' })
          }
        }
      })
      return (await this.info(id))!
    })
  }

  async clone(id: string, sourceId: string, sizeGb: number): Promise<VolumeInfo> {
    checkSizeGb(sizeGb)
    return this.serial(async () => {
      const existing = await this.info(id)
      if (existing) return existing
      const src = await this.info(sourceId)
      if (!src) throw new NotFound(`volume ${sourceId} not found on this backend`)
      if (sizeGb < src.sizeGb) throw new InvalidArgument(`volume ${id} would be ${sizeGb} GiB, smaller than its source (${src.sizeGb} GiB)`, { field: 'size' })
      await this.made(this.volumePath(id), async (part) => {
        await convertImage(this.volumePath(sourceId), part, { srcFormat: this.format, dstFormat: this.format })
        if (sizeGb > src.sizeGb) await resizeImage(part, sizeGb * GiB, { format: this.format })
      })
      return (await this.info(id))!
    })
  }

  delete(id: string): Promise<void> {
    return this.serial(async () => {
      const file = this.volumePath(id)
      // Newest snapshot first (the top of the volume's chain): each one deleted then has fewer dependents.
      const chain = (await exists(file)) ? (await imageInfo(file, this.format, { backingChain: true })).map((i) => i.backingFile ?? '') : []
      const snaps = (await this.snapshotsOf(id)).sort((a, b) => rank(chain, a.file) - rank(chain, b.file))
      // No export outlives its volume.
      await this.nbd?.stop(id)
      await rm(file, { force: true })
      for (const s of snaps) await this.removeSnapshot(s.file)
    })
  }

  async extend(id: string, sizeGb: number): Promise<VolumeInfo> {
    checkSizeGb(sizeGb)
    return this.serial(async () => {
      const v = await this.info(id)
      if (!v) throw new NotFound(`volume ${id} not found on this backend`)
      if (sizeGb < v.sizeGb) throw new InvalidArgument(`volume ${id} is ${v.sizeGb} GiB; it cannot shrink to ${sizeGb}`, { field: 'size' })
      // An exported volume's file is open in its export's daemon: that daemon grows it (nothing else may rewrite a qcow2 under QEMU).
      if (sizeGb > v.sizeGb && !(await this.nbd?.grow(id, sizeGb * GiB, this.volumePath(id), this.format))) await resizeImage(this.volumePath(id), sizeGb * GiB, { format: this.format })
      return (await this.info(id))!
    })
  }

  createSnapshot(volumeId: string, snapshotId: string, attached: AttachedDisk[] = []): Promise<SnapshotInfo> {
    return this.serial(async () => {
      const snap = this.snapshotPath(volumeId, snapshotId)
      const vol = this.volumePath(volumeId)
      const [haveSnap, haveVol] = [await exists(snap), await exists(vol)]
      if (haveSnap && haveVol) return (await this.snapshotInfo(snapshotId))!
      const live = this.o.guests && attached.length ? attached : []
      if (this.format === 'qcow2') {
        if (live.length > 1) throw new FailedPrecondition(`volume ${volumeId} is attached to ${live.length} servers; a snapshot of a multi-attached volume is taken only while at most one of them has it`)
        // A running guest has the file open: its QEMU copies it as it is now (a push backup) while the guest
        // writes on, and nothing of its chain or paths changes.
        if (live.length && !haveSnap && haveVol && (await this.copiedLive(live[0]!, snap))) return (await this.snapshotInfo(snapshotId))!
        // Exported over NBD to another host: the export's daemon has the file open and copies it the same way.
        if (!haveSnap && haveVol && (await this.nbd?.served(volumeId)) && (await this.copiedExport(volumeId, snap))) return (await this.snapshotInfo(snapshotId))!
        if (!haveSnap) {
          if (!haveVol) throw new NotFound(`volume ${volumeId} not found on this backend`)
          // Nothing has the file open: its data as it is now becomes the snapshot; the volume writes to a new
          // overlay on it (a crash before the overlay is made leaves the snapshot alone: the redelivered cast makes it).
          await rename(vol, snap)
        }
        const [s] = await imageInfo(snap, 'qcow2')
        await this.made(vol, (part) => createImage(part, 'qcow2', { size: s!.virtualSize, backingFile: path.basename(snap), backingFormat: 'qcow2' }))
      } else {
        if (!haveVol) throw new NotFound(`volume ${volumeId} not found on this backend`)
        if (live.length) throw new FailedPrecondition(`volume ${volumeId} is raw and attached to server ${live[0]!.instanceUuid}: a raw volume's snapshot is a copy of its file, which a running guest would change under it; stop the server (or detach the volume) first`)
        await this.made(snap, (part) => convertImage(vol, part, { srcFormat: 'raw', dstFormat: 'raw' }))
      }
      return (await this.snapshotInfo(snapshotId))!
    })
  }

  /** The snapshot's file made by the running guest's QEMU copying `a`'s disk (false: the guest does not run). */
  private copiedLive(a: AttachedDisk, snap: string): Promise<boolean> {
    return this.copied(snap, (part) => this.o.guests!.copy(a.instanceUuid, a.device, part))
  }

  /** The snapshot's file made by volume `volumeId`'s export daemon copying it (false: not exported). */
  private copiedExport(volumeId: string, snap: string): Promise<boolean> {
    return this.copied(snap, async (part) => {
      const [v] = await imageInfo(this.volumePath(volumeId), 'qcow2')
      await createImage(part, 'qcow2', { size: v!.virtualSize })
      return this.nbd!.copy(volumeId, this.volumePath(volumeId), this.format, part)
    })
  }

  /** `snap` made by `copy` into a part file (false, nothing left: nothing had the volume open to copy it). */
  private async copied(snap: string, copy: (part: string) => Promise<boolean>): Promise<boolean> {
    const part = path.join(this.dir, `.${path.basename(snap)}.part`)
    await rm(part, { force: true })
    try {
      if (!(await copy(part))) {
        await rm(part, { force: true })
        return false
      }
      await chmod(part, PRIVATE_FILE_MODE)
      await rename(part, snap)
      return true
    } catch (err) {
      await rm(part, { force: true })
      throw err
    }
  }

  private async writeIntent(file: string, intent: DeleteIntent): Promise<void> {
    const part = `${file}.part`
    await writeFile(part, JSON.stringify(intent), { mode: PRIVATE_FILE_MODE })
    await rename(part, file)
  }

  deleteSnapshot(volumeId: string, snapshotId: string, attached: AttachedDisk[] = []): Promise<void> {
    return this.serial(async () => {
      const intent = this.deleteIntentPath(volumeId, snapshotId)
      // A cast redelivered after a crash in the middle: settled first, then done (again) if not through.
      if (await exists(intent)) await this.settleDelete(intent)
      await this.removeSnapshot(this.snapshotPath(volumeId, snapshotId), this.o.guests ? attached : [], intent)
    })
  }

  /**
   * Settles a snapshot delete a crash interrupted while guests pulled its
   * data into the files they have open: a pull QEMU still runs is waited
   * for; then the snapshot's file goes if no file rests on it any more (the
   * pulls got through), else it stays for the delete to be done again.
   */
  private async settleDelete(intent: string): Promise<void> {
    const i = JSON.parse(await readFile(intent, 'utf8')) as DeleteIntent
    for (const a of i.attached) await this.o.guests?.settlePull(a.instanceUuid, a.device)
    for (const id of i.exported ?? []) await this.nbd?.settlePull(id)
    const snap = this.snapshotPath(i.volumeId, i.snapshotId)
    if ((await this.dependentsOf(snap)).length === 0) await rm(snap, { force: true })
    await rm(intent, { force: true })
  }

  private deleteIntentPath(volumeId: string, snapshotId: string): string {
    return path.join(this.dir, `.snapshot-${checkId(volumeId, 'volume')}_${checkId(snapshotId, 'snapshot')}.delete.intent`)
  }

  async export(id: string, host: string, o: { network?: boolean } = {}): Promise<VolumeExport> {
    const v = await this.info(id)
    if (!v) throw new NotFound(`volume ${id} not found on this backend`)
    if (host === this.o.host && !o.network) return { kind: 'file', path: this.volumePath(id), format: this.format }
    if (!this.nbd) throw new FailedPrecondition(`volume ${id} lives on host '${this.o.host}' and host '${host}' would need a network export, which this host does not serve (set the agent's volumeExportAddress and volumeExportTlsDir)`)
    // One at a time with the work on volumes: a delete never races an export of the same file.
    const e = await this.serial(async () => {
      if (!(await this.info(id))) throw new NotFound(`volume ${id} not found on this backend`)
      return this.nbd!.serve(id, host, this.volumePath(id), this.format)
    })
    return { kind: 'nbd', address: e.address, port: e.port, name: e.name, format: 'raw' }
  }

  unexport(id: string, host: string): Promise<void> {
    checkId(id, 'volume')
    return this.serial(async () => this.nbd?.stop(id, host))
  }

  async exports(): Promise<ExportRef[]> {
    return (await this.nbd?.refs()) ?? []
  }

  async info(id: string): Promise<VolumeInfo | undefined> {
    const file = this.volumePath(id)
    if (!(await exists(file))) return undefined
    const [i] = await imageInfo(file, this.format)
    return { id, sizeGb: Math.ceil(i!.virtualSize / GiB), format: this.format }
  }

  async snapshotInfo(snapshotId: string): Promise<SnapshotInfo | undefined> {
    const s = await this.findSnapshot(snapshotId)
    return s ? { id: snapshotId, volumeId: s.volumeId, sizeGb: s.sizeGb } : undefined
  }

  async stats(): Promise<VolumeStats> {
    const s = await statfs(this.dir)
    return { backendName: this.backendName, totalGb: Math.floor((s.blocks * s.bsize) / GiB), freeGb: Math.floor((s.bavail * s.bsize) / GiB) }
  }

  /** Makes `dst` by `make(part)` on a `.part` file renamed into place; a failure leaves nothing. */
  private async made(dst: string, make: (part: string) => Promise<void>): Promise<void> {
    const part = path.join(this.dir, `.${path.basename(dst)}.part`)
    try {
      await rm(part, { force: true })
      await make(part)
      await chmod(part, PRIVATE_FILE_MODE)
      await rename(part, dst)
    } catch (err) {
      await rm(part, { force: true })
      throw err
    }
  }

  /**
   * Merges `file` into every file whose backing file it is, then removes it.
   * A dependent a running guest of `attached` has open (the snapshotted
   * volume's file, or a volume's made from the snapshot) is pulled into by
   * that guest's QEMU, live: nothing else may rewrite a file QEMU writes to
   * (the intent, written first, lets a crash be settled). Every other one is
   * flattened here (a full copy read through the chain, renamed over it).
   * Both leave the dependent standing alone, showing every byte it showed.
   */
  private async removeSnapshot(file: string, attached: AttachedDisk[] = [], intent?: string): Promise<void> {
    if (!(await exists(file))) return
    const deps = await this.dependentsOf(file)
    const open = (dep: string) => attached.filter((a) => a.volumeId && this.volumePath(a.volumeId) === dep)
    // The volumes among them whose export's daemon has the file open (served to other hosts).
    const exported = new Map<string, string>()
    for (const dep of deps) {
      const id = VOLUME_FILE.exec(path.basename(dep))?.[1]
      if (id && (await this.nbd?.served(id))) exported.set(dep, id)
    }
    for (const dep of deps) {
      const opened = open(dep).length + (exported.has(dep) ? 1 : 0)
      if (opened > 1) throw new FailedPrecondition(`snapshot file ${path.basename(file)} cannot be merged into ${path.basename(dep)}: ${exported.has(dep) ? 'it is exported to other hosts and' : 'its volume is'} attached to ${open(dep).length} server(s) of this host, and only one QEMU at a time can pull the data into the file it has open; detach it from all but one first`)
    }
    const live = deps.flatMap(open)
    if ((live.length || exported.size) && intent) {
      const m = SNAPSHOT_FILE.exec(path.basename(file))!
      await this.writeIntent(intent, { volumeId: m[1]!, snapshotId: m[2]!, attached: live, exported: [...exported.values()] })
    }
    try {
      for (const dep of deps) {
        const [guest] = open(dep)
        const id = exported.get(dep)
        const pulled = guest ? await this.o.guests!.pull(guest.instanceUuid, guest.device) : id ? await this.nbd!.pull(id, dep, 'qcow2') : false
        if (pulled) {
          const [i] = await imageInfo(dep, 'qcow2')
          if (i?.backingFile) throw new Internal(`${guest ? `server ${guest.instanceUuid} pulled its disk ${guest.device}` : `the export of volume ${id} pulled its backing files`}, but ${path.basename(dep)} still rests on ${i.backingFile} (the block-stream job failed or was cancelled)`)
          continue
        }
        // A full copy read through the chain: the dependent keeps every byte it showed.
        await this.made(dep, (part) => convertImage(dep, part, { srcFormat: 'qcow2', dstFormat: 'qcow2' }))
      }
      await rm(file, { force: true })
    } finally {
      if ((live.length || exported.size) && intent) await rm(intent, { force: true })
    }
  }

  /** The files of this backend whose backing file is `file`. */
  private async dependentsOf(file: string): Promise<string[]> {
    const name = path.basename(file)
    const out = []
    for (const f of await readdir(this.dir)) {
      if (f === name || f.endsWith('.part') || !f.endsWith('.qcow2')) continue
      const dep = path.join(this.dir, f)
      const [i] = await imageInfo(dep, 'qcow2').catch(() => [])
      if (i?.backingFile === name) out.push(dep)
    }
    return out
  }

  private async snapshotsOf(volumeId: string): Promise<Array<{ id: string; file: string }>> {
    const out = []
    for (const f of await readdir(this.dir)) {
      const m = SNAPSHOT_FILE.exec(f)
      if (m && m[1] === volumeId && m[3] === this.format) out.push({ id: m[2]!, file: path.join(this.dir, f) })
    }
    return out
  }

  private async findSnapshot(snapshotId: string): Promise<{ volumeId: string; file: string; sizeGb: number } | undefined> {
    checkId(snapshotId, 'snapshot')
    for (const f of await readdir(this.dir)) {
      const m = SNAPSHOT_FILE.exec(f)
      if (m && m[2] === snapshotId && m[3] === this.format) {
        const file = path.join(this.dir, f)
        const [i] = await imageInfo(file, this.format)
        return { volumeId: m[1]!, file, sizeGb: Math.ceil(i!.virtualSize / GiB) }
      }
    }
    return undefined
  }
}

async function exists(file: string): Promise<boolean> {
  return stat(file).then(() => true, () => false)
}

/** Where `file` is in a backing chain (of base names); not in it: after all. */
function rank(chain: string[], file: string): number {
  const i = chain.indexOf(path.basename(file))
  return i < 0 ? chain.length : i
}

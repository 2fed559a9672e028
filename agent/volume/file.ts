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
 * is copy-on-write too, done as Cinder's remotefs drivers with Nova's
 * assisted snapshots do: the guest's QEMU is moved onto a new, empty overlay
 * with a name of its own, `volume-<id>.<snapshot id>.qcow2`, whose backing
 * file is the file it had (libvirt's disk-only external snapshot of that one
 * disk, `GuestDisks.snapshot`); a volume exported over NBD to other hosts is
 * moved the same way by its export's daemon (QMP blockdev-add of the overlay
 * with backing null, then blockdev-snapshot: the export follows the node,
 * `NbdExports.snapshot`). The old file, frozen, keeps its name and is the
 * snapshot's data. It must keep it: QEMU reopens a frozen image read-only
 * *by its name* (at the snapshot itself and at later block jobs), and an
 * earlier design that put the overlay at the volume's own path had QEMU read
 * the empty overlay for every block not written since (withdrawn).
 * So a volume's active file is not always `volume-<id>.qcow2`: once a live
 * snapshot moved it, `volume-<id>.info` (JSON, 0600, written whole: a synced
 * temporary file renamed over it) says which file is active and which
 * frozen file is each such snapshot's; no file means the first file is
 * active. Everything that names a volume's file asks for the active one
 * (exports to this host's guests and NBD exports, extend, clone, upload,
 * info); the native engine reads through the chain.
 * The steps and what a crash after each leaves, settled at init or by the
 * redelivered cast (both ask libvirt where the guest's disk is, or the
 * export's daemon which node it serves; neither guesses):
 * 1. the move recorded as pending (snapshot, overlay, guest, device) —
 *    no overlay: back (the pending record dropped);
 * 2. the overlay made (a `.part` renamed into place) — the disk still on the
 *    old file (live, or in the definition it starts from): back, the
 *    overlay (nothing wrote to it) removed, the cast takes it again;
 * 3. libvirt moved the disk (live and persistent definition), or the daemon
 *    its export — the disk or export on the overlay, or the guest or daemon
 *    gone (nothing writes the old file any more; what was written is kept):
 *    forward, the overlay active and the old file the snapshot's;
 * 4. recorded (the pending record gone).
 * A guest that does not run (stopped meanwhile) is snapshotted as a detached
 * volume is: its active file becomes `snapshot-…`, a new overlay takes the
 * active file's name (nothing has it open, and the definition names it).
 * A volume both attached to a running guest here and exported is refused
 * (moving one QEMU would leave the other writing into the frozen file).
 *
 * Deleting a snapshot under a file a running guest of this host has open
 * (the volume's active file, or a volume's made from the snapshot) has that
 * guest's QEMU pull the chain into the file live (libvirt's block pull:
 * block-stream), the guest writing on; a file exported to other hosts is
 * pulled into by its export's daemon (QMP block-stream, `nbd-export.ts`).
 * A frozen layer resting on the snapshot (a later live snapshot's) is
 * read-only in the guest's chain and reopened by its name: the guest pulls
 * its whole chain into its active file first (QEMU then has the layer open
 * no more), and the layer is flattened here. The snapshot's file goes once
 * nothing rests on it; deleting a volume deletes every file of its chain
 * that nothing else rests on (what volumes made from its snapshots rest on
 * is flattened into them first).
 * An intent (`.snapshot-<volume>_<snapshot>.delete.intent`) is written
 * before the first pull; one left by a crash is settled at init: a pull QEMU
 * still runs is waited for, and the file goes if the headers show nothing
 * rests on it any more (else it stays, for the redelivered delete).
 *
 * Work writes to `.part` files renamed into place, so a crash leaves either
 * the old state or the new one (and `.part` leftovers, removed at init).
 * Operations run one at a time (they change the shared chains).
 */
import { open, readdir, readFile, rename, rm, stat, statfs, chmod, mkdir, writeFile } from 'node:fs/promises'
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
  /** The snapshot's file (a frozen layer of a volume's chain, or its own; absent: `snapshot-<volume>_<snapshot>`). */
  file?: string
  /** The guests that pull, with the volumes whose files they have open. */
  attached: AttachedDisk[]
  /** The volumes whose export's daemon pulls (they are served to other hosts). */
  exported?: string[]
}

const DELETE_INTENT_FILE = /^\.snapshot-([0-9a-f-]{36})_([0-9a-f-]{36})\.delete\.intent$/

const SNAPSHOT_FILE = /^snapshot-([0-9a-f-]{36})_([0-9a-f-]{36})\.(qcow2|raw)$/

/** A volume's first file, or the overlay a live snapshot made active (`volume-<id>.<snapshot id>.qcow2`). */
const VOLUME_FILE = /^volume-([0-9a-f-]{36})(?:\.[0-9a-f-]{36})?\.qcow2$/

const STATE_FILE = /^volume-([0-9a-f-]{36})\.info$/

/**
 * Which files a volume's chain has, once a live snapshot gave it an active
 * file of a new name (`volume-<id>.info`, as Cinder's remotefs drivers keep;
 * absent: the active file is `volume-<id>.<format>` and no snapshot is a
 * layer of the chain).
 */
interface VolumeState {
  /** The file the volume's data is written to (base name). */
  active: string
  /** Snapshot id → the frozen file (base name) that holds its data: the active file it had when taken. */
  snapshots: Record<string, string>
  /** A live snapshot under way (written before its overlay is made; settled by asking where the guest's disk is). */
  pending?: { snapshotId: string; overlay: string } & ({ instanceUuid: string; device: string } | { exported: true })
}

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
    // Live snapshots a crash interrupted: on the side of the move the guest's disk is.
    for (const f of await readdir(this.dir)) {
      const m = STATE_FILE.exec(f)
      if (m) await this.settleSnapshot(m[1]!)
    }
    // Snapshot deletes a crash interrupted while guests pulled their data: as far as the files show.
    for (const f of await readdir(this.dir)) if (DELETE_INTENT_FILE.test(f)) await this.settleDelete(path.join(this.dir, f))
    // Exports whose server died with the host (or was killed) are served again where they were.
    await this.nbd?.reserve((id) => this.exportedFile(id))
  }

  /** The file an export of volume `id` serves (undefined: the volume is gone). */
  private async exportedFile(id: string): Promise<{ path: string; format: ImageFormat } | undefined> {
    const file = await this.activePath(id)
    return (await this.infoAt(id, file)) ? { path: file, format: this.format } : undefined
  }

  reloadTls(): Promise<string[]> {
    return this.serial(async () => (await this.nbd?.reloadTls((id) => this.exportedFile(id))) ?? [])
  }

  volumePath(id: string): string {
    return path.join(this.dir, `volume-${checkId(id, 'volume')}.${this.format}`)
  }

  /** The file volume `id`'s data is written to: its first file, or the overlay its latest live snapshot made. */
  async activePath(id: string): Promise<string> {
    return path.join(this.dir, (await this.readState(id)).active)
  }

  private statePath(id: string): string {
    return path.join(this.dir, `volume-${checkId(id, 'volume')}.info`)
  }

  private async readState(id: string): Promise<VolumeState> {
    const text = await readFile(this.statePath(id), 'utf8').catch((err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? undefined : Promise.reject(err)))
    return text === undefined ? { active: path.basename(this.volumePath(id)), snapshots: {} } : (JSON.parse(text) as VolumeState)
  }

  /** Written whole or not at all (a synced temporary file renamed over it); the default state is no file. */
  private async writeState(id: string, st: VolumeState): Promise<void> {
    const file = this.statePath(id)
    if (st.active === path.basename(this.volumePath(id)) && !st.pending && Object.keys(st.snapshots).length === 0) {
      await rm(file, { force: true })
      return
    }
    const part = path.join(this.dir, `.${path.basename(file)}.part`)
    const h = await open(part, 'w', PRIVATE_FILE_MODE)
    try {
      await h.writeFile(JSON.stringify(st))
      await h.sync()
    } finally {
      await h.close()
    }
    await rename(part, file)
  }

  /**
   * Settles a live snapshot of volume `id` a crash (or a failed move)
   * interrupted: where the guest's disk is decides. On the new overlay (or
   * the guest gone: nothing writes the old file any more) → forward, the
   * overlay is active and the old file the snapshot's; still on the old file
   * (live, or in the definition it starts from), or no overlay made → back,
   * the overlay removed (nothing wrote to it) and the cast may try again.
   * Returns the volume's state as settled, for the operation that goes on.
   */
  private async settleSnapshot(id: string): Promise<VolumeState> {
    const st = await this.readState(id)
    const p = st.pending
    if (!p) return st
    const overlay = path.join(this.dir, p.overlay)
    const from = path.join(this.dir, st.active)
    // Whether whoever had the file open moved onto the overlay (undefined: it is gone and cannot say).
    let moved: boolean | undefined
    if (!(await exists(overlay))) moved = false
    else if ('exported' in p) moved = await this.nbd?.serves(id, overlay)
    else {
      const source = await this.o.guests?.source(p.instanceUuid, p.device)
      moved = source === undefined ? undefined : path.resolve(source) !== from
    }
    const { pending: _, ...rest } = st
    if (moved === false) await rm(overlay, { force: true })
    const settled = moved === false ? rest : { active: p.overlay, snapshots: { ...st.snapshots, [p.snapshotId]: st.active } }
    await this.writeState(id, settled)
    return settled
  }

  /** Snapshot `snapshotId`'s file: a frozen layer of volume `volumeId`'s chain (a live snapshot's, in its state `st`), else its own. */
  private snapshotFile(volumeId: string, snapshotId: string, st: VolumeState): string {
    const layer = st.snapshots[snapshotId]
    return layer ? path.join(this.dir, layer) : this.snapshotPath(volumeId, snapshotId)
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
      const from = await this.activePath(sourceId)
      const src = await this.infoAt(sourceId, from)
      if (!src) throw new NotFound(`volume ${sourceId} not found on this backend`)
      if (sizeGb < src.sizeGb) throw new InvalidArgument(`volume ${id} would be ${sizeGb} GiB, smaller than its source (${src.sizeGb} GiB)`, { field: 'size' })
      await this.made(this.volumePath(id), async (part) => {
        await convertImage(from, part, { srcFormat: this.format, dstFormat: this.format })
        if (sizeGb > src.sizeGb) await resizeImage(part, sizeGb * GiB, { format: this.format })
      })
      return (await this.info(id))!
    })
  }

  delete(id: string): Promise<void> {
    return this.serial(async () => {
      const st = await this.settleSnapshot(id)
      const file = path.join(this.dir, st.active)
      // Upper layers first: with the volume's file gone, nothing of the volume's own rests on a snapshot
      // when it goes, so only the volumes made from it are flattened.
      const snaps = await this.upperFirst(await this.snapshotsOf(id, st))
      // No export outlives its volume.
      await this.nbd?.stop(id)
      await rm(file, { force: true })
      for (const s of snaps) await this.removeSnapshot(s.file)
      await rm(this.statePath(id), { force: true })
    })
  }

  async extend(id: string, sizeGb: number): Promise<VolumeInfo> {
    checkSizeGb(sizeGb)
    return this.serial(async () => {
      const file = await this.activePath(id)
      const v = await this.infoAt(id, file)
      if (!v) throw new NotFound(`volume ${id} not found on this backend`)
      if (sizeGb < v.sizeGb) throw new InvalidArgument(`volume ${id} is ${v.sizeGb} GiB; it cannot shrink to ${sizeGb}`, { field: 'size' })
      // An exported volume's file is open in its export's daemon: that daemon grows it (nothing else may rewrite a qcow2 under QEMU).
      if (sizeGb > v.sizeGb && !(await this.nbd?.grow(id, sizeGb * GiB, file, this.format))) await resizeImage(file, sizeGb * GiB, { format: this.format })
      return (await this.infoAt(id, file))!
    })
  }

  createSnapshot(volumeId: string, snapshotId: string, attached: AttachedDisk[] = []): Promise<SnapshotInfo> {
    return this.serial(async () => {
      // A live snapshot a crash (or a failed move) left half-way: settled first, then done if it was not.
      const st = await this.settleSnapshot(volumeId)
      const snap = this.snapshotFile(volumeId, snapshotId, st)
      const vol = path.join(this.dir, st.active)
      const [haveSnap, haveVol] = [await exists(snap), await exists(vol)]
      if (haveSnap && haveVol) return (await this.snapshotInfo(snapshotId))!
      const live = await this.fileOpeners(attached)
      if (this.format === 'qcow2') {
        if (live.length > 1) throw new FailedPrecondition(`volume ${volumeId} is attached to ${live.length} servers; a snapshot of a multi-attached volume is taken only while at most one of them has it`)
        // A running guest has the file open: its QEMU moves its writes onto a new overlay (the new active
        // file, a name of its own) and the file, frozen under its name, is the snapshot's.
        if (live.length && !haveSnap && haveVol && (await this.nbd?.served(volumeId))) throw new FailedPrecondition(`volume ${volumeId} is attached to server ${live[0]!.instanceUuid} of this host and exported to servers of other hosts; a snapshot moves one QEMU onto a new file, and the other would write on into the frozen one: detach it from all but one server first`)
        if (live.length && !haveSnap && haveVol && (await this.moved(volumeId, snapshotId, live[0]!, st))) return (await this.snapshotInfo(snapshotId))!
        // Exported over NBD to another host: the export's daemon has the file open and moves onto the overlay the same way.
        if (!haveSnap && haveVol && (await this.nbd?.served(volumeId)) && (await this.moved(volumeId, snapshotId, { exported: true }, st))) return (await this.snapshotInfo(snapshotId))!
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

  /**
   * Snapshot `snapshotId` taken by moving whoever has volume `volumeId`'s
   * file open — the running guest of `by`, or the volume's export daemon —
   * onto a new active file (`volume-<id>.<snapshot>.qcow2`, an empty overlay
   * on the active one), the old active file frozen as the snapshot's data
   * (false, nothing left: the guest does not run, or the export is gone).
   * The pending move is recorded before the overlay is made; whatever ends
   * it (done, refused, a crash) is settled by where the disk or export is.
   * `st`: the volume's state, settled.
   */
  private async moved(volumeId: string, snapshotId: string, by: AttachedDisk | { exported: true }, st: VolumeState): Promise<boolean> {
    const overlay = `volume-${volumeId}.${snapshotId}.qcow2`
    const who = 'exported' in by ? { exported: true as const } : { instanceUuid: by.instanceUuid, device: by.device }
    await this.writeState(volumeId, { ...st, pending: { snapshotId, overlay, ...who } })
    let moved: boolean
    try {
      const [v] = await imageInfo(path.join(this.dir, st.active), 'qcow2')
      await this.made(path.join(this.dir, overlay), (part) => createImage(part, 'qcow2', { size: v!.virtualSize, backingFile: st.active, backingFormat: 'qcow2' }))
      const file = path.join(this.dir, overlay)
      moved = 'exported' in by ? await this.nbd!.snapshot(volumeId, path.join(this.dir, st.active), this.format, file) : await this.o.guests!.snapshot(by.instanceUuid, by.device, file)
    } catch (err) {
      // Refused, or failed after libvirt moved the disk: the guest's disk says which.
      if ((await this.settleSnapshot(volumeId)).snapshots[snapshotId]) return true
      throw err
    }
    if (!moved) {
      await rm(path.join(this.dir, overlay), { force: true })
      await this.writeState(volumeId, st)
      return false
    }
    await this.writeState(volumeId, { active: overlay, snapshots: { ...st.snapshots, [snapshotId]: st.active } })
    return true
  }

  /**
   * The guests among `attached` whose QEMU has a volume's file open: not
   * those attached over its network export (a multiattach volume's, or
   * the agent's forced network path), whose export's daemon has it open
   * instead and moves or pulls for them. A guest gone stays (it cannot say).
   */
  private async fileOpeners(attached: AttachedDisk[]): Promise<AttachedDisk[]> {
    const out: AttachedDisk[] = []
    for (const a of this.o.guests ? attached : []) {
      const source = await this.o.guests!.source(a.instanceUuid, a.device)
      if (!source?.startsWith('nbd://')) out.push(a)
    }
    return out
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
      await this.removeSnapshot(this.snapshotFile(volumeId, snapshotId, await this.readState(volumeId)), await this.fileOpeners(attached), intent)
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
    const snap = i.file ? path.join(this.dir, i.file) : this.snapshotPath(i.volumeId, i.snapshotId)
    if ((await this.dependentsOf(snap)).length === 0) await this.removed(snap)
    await rm(intent, { force: true })
  }

  private deleteIntentPath(volumeId: string, snapshotId: string): string {
    return path.join(this.dir, `.snapshot-${checkId(volumeId, 'volume')}_${checkId(snapshotId, 'snapshot')}.delete.intent`)
  }

  get networkExports(): boolean {
    return this.nbd !== undefined
  }

  async export(id: string, host: string, o: { network?: boolean } = {}): Promise<VolumeExport> {
    const v = await this.info(id)
    if (!v) throw new NotFound(`volume ${id} not found on this backend`)
    // In turn with the work on volumes: never the file a live snapshot is freezing.
    if (host === this.o.host && !o.network) return this.serial(async () => ({ kind: 'file', path: await this.activePath(id), format: this.format }))
    if (!this.nbd) throw new FailedPrecondition(`volume ${id} lives on host '${this.o.host}' and host '${host}' would need a network export, which this host does not serve (set the agent's volumeExportAddress and volumeExportTlsDir)`)
    // One at a time with the work on volumes: a delete never races an export of the same file.
    const e = await this.serial(async () => {
      const file = await this.activePath(id)
      if (!(await this.infoAt(id, file))) throw new NotFound(`volume ${id} not found on this backend`)
      return this.nbd!.serve(id, host, file, this.format)
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
    return this.infoAt(id, await this.activePath(id))
  }

  /** Volume `id`'s info, read from its active file `file` (undefined: no such file). */
  private async infoAt(id: string, file: string): Promise<VolumeInfo | undefined> {
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
   * volume's active file, or a volume's made from the snapshot) is pulled
   * into by that guest's QEMU, live: nothing else may rewrite a file QEMU
   * writes to (the intent, written first, lets a crash be settled). A
   * dependent that is a frozen layer of such a guest's chain (a later live
   * snapshot's) is read-only in its QEMU, and QEMU reopens it by name: the
   * guest pulls its whole chain into its active file first, so that no QEMU
   * has the layer open, then it is flattened here. Every other one is
   * flattened here (a full copy read through the chain, renamed over it).
   * Each leaves the dependent showing every byte it showed.
   */
  private async removeSnapshot(file: string, attached: AttachedDisk[] = [], intent?: string): Promise<void> {
    if (!(await exists(file))) return
    const deps = await this.dependentsOf(file)
    // Whose each dependent is (a volume's active file or a frozen layer of its chain), who has it open.
    const owners = new Map<string, { id: string; active: string; guests: AttachedDisk[]; exported: boolean }>()
    for (const dep of deps) {
      const id = VOLUME_FILE.exec(path.basename(dep))?.[1]
      if (!id) continue
      const active = await this.activePath(id)
      // A frozen layer is open in QEMU only while it is in the chain of the volume's active file.
      const open = active === dep || ((await exists(active)) && (await imageInfo(active, 'qcow2', { backingChain: true })).some((i) => i.backingFile === path.basename(dep)))
      const guests = open ? attached.filter((a) => a.volumeId === id) : []
      const exported = open && Boolean(await this.nbd?.served(id))
      const opened = guests.length + (exported ? 1 : 0)
      if (opened > 1) throw new FailedPrecondition(`snapshot file ${path.basename(file)} cannot be merged into ${path.basename(dep)}: ${exported ? 'its volume is exported to other hosts and' : 'its volume is'} attached to ${guests.length} server(s) of this host, and only one QEMU at a time can pull the data into the file it has open; detach it from all but one first`)
      owners.set(dep, { id, active, guests, exported })
    }
    const live = [...owners.values()].flatMap((o) => o.guests)
    const exported = [...owners.values()].filter((o) => o.exported).map((o) => o.id)
    const intended = (live.length > 0 || exported.length > 0) && intent !== undefined
    if (intended) {
      const m = SNAPSHOT_FILE.exec(path.basename(file))
      const owner = m ? { volumeId: m[1]!, snapshotId: m[2]! } : intentNames(intent)
      await this.writeIntent(intent, { ...owner, file: path.basename(file), attached: live, exported })
    }
    try {
      for (const dep of deps) {
        const o = owners.get(dep)
        const [guest] = o?.guests ?? []
        const pulled = guest ? await this.o.guests!.pull(guest.instanceUuid, guest.device) : o?.exported ? await this.nbd!.pull(o.id, o.active, 'qcow2') : false
        if (pulled) {
          const [i] = await imageInfo(o!.active, 'qcow2')
          if (i?.backingFile) throw new Internal(`${guest ? `server ${guest.instanceUuid} pulled its disk ${guest.device}` : `the export of volume ${o!.id} pulled its backing files`}, but ${path.basename(o!.active)} still rests on ${i.backingFile} (the block-stream job failed or was cancelled)`)
          // The active file stands alone: no QEMU has a layer under it open any more.
          if (o!.active === dep) continue
        }
        // A full copy read through the chain: the dependent keeps every byte it showed.
        await this.made(dep, (part) => convertImage(dep, part, { srcFormat: 'qcow2', dstFormat: 'qcow2' }))
      }
      await this.removed(file)
    } finally {
      if (intended) await rm(intent!, { force: true })
    }
  }

  /** Removes a snapshot's file, and a frozen layer's record in its volume's state. */
  private async removed(file: string): Promise<void> {
    await rm(file, { force: true })
    const id = VOLUME_FILE.exec(path.basename(file))?.[1]
    if (!id) return
    const st = await this.readState(id)
    const snapshots = Object.fromEntries(Object.entries(st.snapshots).filter(([, f]) => f !== path.basename(file)))
    if (Object.keys(snapshots).length !== Object.keys(st.snapshots).length) await this.writeState(id, { ...st, snapshots })
  }

  /** `snaps` in an order where no file comes after the file it rests on (else in the order given). */
  private async upperFirst<T extends { file: string }>(snaps: T[]): Promise<T[]> {
    const backing = new Map<string, string | undefined>()
    for (const s of snaps) backing.set(path.basename(s.file), (await exists(s.file)) && this.format === 'qcow2' ? (await imageInfo(s.file, 'qcow2'))[0]?.backingFile : undefined)
    const left = [...snaps]
    const out: T[] = []
    while (left.length) {
      const i = Math.max(0, left.findIndex((s) => !left.some((o) => backing.get(path.basename(o.file)) === path.basename(s.file))))
      out.push(...left.splice(i, 1))
    }
    return out
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

  /** Volume `volumeId`'s snapshots and their files (their own, or frozen layers of its chain in its state `st`). */
  private async snapshotsOf(volumeId: string, st: VolumeState): Promise<Array<{ id: string; file: string }>> {
    const out = []
    for (const f of await readdir(this.dir)) {
      const m = SNAPSHOT_FILE.exec(f)
      if (m && m[1] === volumeId && m[3] === this.format) out.push({ id: m[2]!, file: path.join(this.dir, f) })
    }
    for (const [id, f] of Object.entries(st.snapshots)) out.push({ id, file: path.join(this.dir, f) })
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
      // A live snapshot's data: a frozen layer of its volume's chain.
      const v = STATE_FILE.exec(f)
      const layer = v ? (await this.readState(v[1]!)).snapshots[snapshotId] : undefined
      if (v && layer && (await exists(path.join(this.dir, layer)))) {
        const [i] = await imageInfo(path.join(this.dir, layer), this.format)
        return { volumeId: v[1]!, file: path.join(this.dir, layer), sizeGb: Math.ceil(i!.virtualSize / GiB) }
      }
    }
    return undefined
  }
}

async function exists(file: string): Promise<boolean> {
  return stat(file).then(() => true, () => false)
}

/** The volume and snapshot a delete intent's name gives. */
function intentNames(intent: string): { volumeId: string; snapshotId: string } {
  const m = DELETE_INTENT_FILE.exec(path.basename(intent))!
  return { volumeId: m[1]!, snapshotId: m[2]! }
}

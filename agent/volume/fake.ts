/**
 * An in-memory volume backend for fast tests: it keeps volumes, snapshots,
 * exports and (sparse) data honestly — a snapshot is a copy of its volume's
 * data at that moment, a volume from a snapshot starts with it — counts
 * capacity, and fails on request (`failNext`). An image source is read as
 * raw bytes (a qcow2 one is taken as blank: the fake parses no qcow2).
 */
import { readFile } from 'node:fs/promises'
import { FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted, errorFromCode } from '../../proto/errors.js'
import { checkId, checkSizeGb, GiB, type AttachedDisk, type ExportRef, type SnapshotInfo, type VolumeDriver, type VolumeExport, type VolumeInfo, type VolumeSource, type VolumeStats } from './driver.js'

type Data = Map<number, Buffer>

interface FakeVolume {
  sizeGb: number
  data: Data
  /** Network exports: host → port. */
  exports: Map<string, number>
}

interface FakeSnapshot {
  volumeId: string
  sizeGb: number
  data: Data
}

export interface FakeVolumeDriverOptions {
  /** @default 1000 */
  totalGb?: number
  /** @default 'fake' */
  backendName?: string
  /** The host the backend is on (exports to it are files unless the network path is asked). @default 'node1' */
  host?: string
}

export type FakeVolumeOp = 'create' | 'clone' | 'delete' | 'extend' | 'createSnapshot' | 'deleteSnapshot'

export class FakeVolumeDriver implements VolumeDriver {
  readonly name = 'fake'
  readonly networkExports = true
  readonly volumes = new Map<string, FakeVolume>()
  readonly snapshots = new Map<string, FakeSnapshot>()
  /** The attachments each deleted snapshot's delete was given (the guests that would pull it live: tests). */
  readonly deletedWith = new Map<string, AttachedDisk[]>()
  private readonly failures = new Map<FakeVolumeOp, { code: string; message: string }>()
  private readonly totalGb: number
  private readonly backendName: string
  readonly host: string
  private nextPort = 10_809

  constructor(o: FakeVolumeDriverOptions = {}) {
    this.host = o.host ?? 'node1'
    this.totalGb = o.totalGb ?? 1000
    this.backendName = o.backendName ?? 'fake'
  }

  /** The next call of `op` fails with this error code (a Strato code: INTERNAL, RESOURCE_EXHAUSTED, …). */
  failNext(op: FakeVolumeOp, code = 'INTERNAL', message = `injected failure of ${op}`): void {
    this.failures.set(op, { code, message })
  }

  /** Forgets failures asked for and not yet used. */
  clearFailures(): void {
    this.failures.clear()
  }

  private injected(op: FakeVolumeOp): void {
    const f = this.failures.get(op)
    if (!f) return
    this.failures.delete(op)
    throw errorFromCode(f.code, f.message)
  }

  async init(): Promise<void> {}

  private usedGb(): number {
    let n = 0
    for (const v of this.volumes.values()) n += v.sizeGb
    return n
  }

  private room(sizeGb: number): void {
    if (this.usedGb() + sizeGb > this.totalGb) throw new ResourceExhausted(`the fake backend has ${this.totalGb - this.usedGb()} GiB free; ${sizeGb} GiB do not fit`)
  }

  async create(id: string, sizeGb: number, source: VolumeSource): Promise<VolumeInfo> {
    checkId(id, 'volume')
    checkSizeGb(sizeGb)
    this.injected('create')
    const existing = this.volumes.get(id)
    if (existing) {
      if (existing.sizeGb !== sizeGb) throw new FailedPrecondition(`volume ${id} exists with ${existing.sizeGb} GiB, not ${sizeGb}`)
      return this.infoOf(id, existing)
    }
    let data: Data = new Map()
    if (source.kind === 'snapshot') {
      const s = this.snapshots.get(checkId(source.snapshotId, 'snapshot'))
      if (!s) throw new NotFound(`snapshot ${source.snapshotId} not found on this backend`)
      if (sizeGb < s.sizeGb) throw new InvalidArgument(`volume ${id} would be ${sizeGb} GiB, smaller than snapshot ${source.snapshotId} (${s.sizeGb} GiB)`, { field: 'size' })
      data = new Map(s.data)
    } else if (source.kind === 'volume') {
      return this.clone(id, source.volumeId, sizeGb)
    } else if (source.kind === 'image' && source.format === 'raw') {
      // A raw image's bytes are the guest's; a qcow2 one is taken as blank (the fake parses no qcow2).
      const bytes = await readFile(source.path)
      if (bytes.length > sizeGb * GiB) throw new InvalidArgument(`the image is larger than volume ${id} (${sizeGb} GiB)`, { field: 'size' })
      data = new Map([[0, bytes]])
    }
    this.room(sizeGb)
    const v = { sizeGb, data, exports: new Map<string, number>() }
    this.volumes.set(id, v)
    return this.infoOf(id, v)
  }

  async clone(id: string, sourceId: string, sizeGb: number): Promise<VolumeInfo> {
    checkId(id, 'volume')
    checkSizeGb(sizeGb)
    this.injected('clone')
    const existing = this.volumes.get(id)
    if (existing) return this.infoOf(id, existing)
    const src = this.volumes.get(checkId(sourceId, 'volume'))
    if (!src) throw new NotFound(`volume ${sourceId} not found on this backend`)
    if (sizeGb < src.sizeGb) throw new InvalidArgument(`volume ${id} would be ${sizeGb} GiB, smaller than its source (${src.sizeGb} GiB)`, { field: 'size' })
    this.room(sizeGb)
    const v = { sizeGb, data: new Map(src.data), exports: new Map<string, number>() }
    this.volumes.set(id, v)
    return this.infoOf(id, v)
  }

  async delete(id: string): Promise<void> {
    checkId(id, 'volume')
    this.injected('delete')
    for (const [sid, s] of this.snapshots) if (s.volumeId === id) this.snapshots.delete(sid)
    this.volumes.delete(id)
  }

  async extend(id: string, sizeGb: number): Promise<VolumeInfo> {
    checkSizeGb(sizeGb)
    this.injected('extend')
    const v = this.get(id)
    if (sizeGb < v.sizeGb) throw new InvalidArgument(`volume ${id} is ${v.sizeGb} GiB; it cannot shrink to ${sizeGb}`, { field: 'size' })
    this.room(sizeGb - v.sizeGb)
    v.sizeGb = sizeGb
    return this.infoOf(id, v)
  }

  async createSnapshot(volumeId: string, snapshotId: string, _attached: AttachedDisk[] = []): Promise<SnapshotInfo> {
    checkId(snapshotId, 'snapshot')
    this.injected('createSnapshot')
    const existing = this.snapshots.get(snapshotId)
    if (existing) return { id: snapshotId, volumeId: existing.volumeId, sizeGb: existing.sizeGb }
    const v = this.get(volumeId)
    this.snapshots.set(snapshotId, { volumeId, sizeGb: v.sizeGb, data: new Map(v.data) })
    return { id: snapshotId, volumeId, sizeGb: v.sizeGb }
  }

  async deleteSnapshot(_volumeId: string, snapshotId: string, attached: AttachedDisk[] = []): Promise<void> {
    checkId(snapshotId, 'snapshot')
    this.injected('deleteSnapshot')
    // Volumes made from it hold their own copy of its data: nothing to flatten (nor pull).
    if (this.snapshots.delete(snapshotId)) this.deletedWith.set(snapshotId, attached)
  }

  async export(id: string, host: string, o: { network?: boolean } = {}): Promise<VolumeExport> {
    const v = this.get(id)
    // An absolute path, as a real export gives (nothing is there: the fake hypervisor reads no file).
    if (host === this.host && !o.network) return { kind: 'file', path: `/fake-volumes/${id}`, format: 'raw' }
    const port = v.exports.get(host) ?? this.nextPort++
    v.exports.set(host, port)
    return { kind: 'nbd', address: '127.0.0.1', port, name: `volume-${id}`, format: 'raw' }
  }

  async unexport(id: string, host: string): Promise<void> {
    this.volumes.get(checkId(id, 'volume'))?.exports.delete(host)
  }

  async exports(): Promise<ExportRef[]> {
    return [...this.volumes].flatMap(([volumeId, v]) => [...v.exports.keys()].map((host) => ({ volumeId, host })))
  }

  async info(id: string): Promise<VolumeInfo | undefined> {
    const v = this.volumes.get(id)
    return v ? this.infoOf(id, v) : undefined
  }

  async snapshotInfo(snapshotId: string): Promise<SnapshotInfo | undefined> {
    const s = this.snapshots.get(snapshotId)
    return s ? { id: snapshotId, volumeId: s.volumeId, sizeGb: s.sizeGb } : undefined
  }

  async stats(): Promise<VolumeStats> {
    return { backendName: this.backendName, totalGb: this.totalGb, freeGb: this.totalGb - this.usedGb() }
  }

  /** Writes bytes into a volume (what a guest would do). */
  write(id: string, offset: number, bytes: Buffer): void {
    const v = this.get(id)
    if (offset + bytes.length > v.sizeGb * GiB) throw new InvalidArgument(`write past the end of volume ${id}`)
    v.data.set(offset, Buffer.from(bytes))
  }

  /** Reads bytes of a volume (zeros where nothing was written). */
  read(id: string, offset: number, length: number): Buffer {
    const v = this.get(id)
    const out = Buffer.alloc(length)
    for (const [at, b] of v.data) {
      const from = Math.max(at, offset)
      const to = Math.min(at + b.length, offset + length)
      if (from < to) b.copy(out, from - offset, from - at, to - at)
    }
    return out
  }

  private get(id: string): FakeVolume {
    const v = this.volumes.get(checkId(id, 'volume'))
    if (!v) throw new NotFound(`volume ${id} not found on this backend`)
    return v
  }

  private infoOf(id: string, v: FakeVolume): VolumeInfo {
    return { id, sizeGb: v.sizeGb, format: 'raw' }
  }
}

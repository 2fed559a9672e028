/**
 * The native image engine (sparse files, qcow2) — the one file that declares
 * the addon's exports and converts its errors into Strato's error classes.
 *
 * Every operation runs on a libuv worker thread and returns a promise. Long
 * operations (convert, compare, commit, sparseCopy) accept a progress callback
 * and a {@link CancelToken}. A native failure rejects with one of the closed
 * error classes from `proto/errors.ts`; its `cause` carries the native `kind`
 * (`corrupt`, `unsupported`, `cancelled`, `io`, ...), which the CLI uses to pick
 * qemu-img's exit codes.
 */
import { createRequire } from 'node:module'
import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { errorFromCode, Internal, type StratoError } from '../proto/errors.js'

export type ImageFormat = 'raw' | 'qcow2'
export type CompressionType = 'zlib' | 'zstd'

/** Options for creating a qcow2 (or raw) image. */
export interface CreateOptions {
  /** Virtual size in bytes; 0 or absent with a backing file means "the backing file's size". */
  size?: number
  /** 512 B .. 2 MiB, power of two. @default 65536 */
  clusterSize?: number
  /** qcow2 version: 3 (compat=1.1) or 2 (compat=0.10). @default 3 */
  version?: 2 | 3
  /** @default 'zlib' */
  compressionType?: CompressionType
  /** 1..64, power of two. @default 16 */
  refcountBits?: number
  /** Backing file name as stored in the image (relative names resolve against the image's directory). */
  backingFile?: string
  /** Required with backingFile: the backing file is never probed. */
  backingFormat?: ImageFormat
}

export interface ImageInfo {
  format: ImageFormat
  virtualSize: number
  /** Bytes allocated on disk. */
  actualSize: number
  /** Apparent file size. */
  fileSize: number
  clusterSize?: number
  version?: number
  refcountBits?: number
  compressionType?: CompressionType
  corrupt?: boolean
  dirty?: boolean
  lazyRefcounts?: boolean
  extendedL2?: boolean
  snapshots?: number
  incompatibleFeatures?: number
  backingFile?: string
  backingFormat?: string
  dataFile?: string
}

export interface InfoOptions {
  /** Open an image with an external data file (dangerous for untrusted images). */
  allowDataFile?: boolean
  /** Return the info of every image in the backing chain, top first. */
  backingChain?: boolean
}

export interface ConvertOptions extends CreateOptions {
  /** Source format; probed (qcow2 magic, else raw) when absent. Always pass it for untrusted input. */
  srcFormat?: ImageFormat
  /** @default 'raw' */
  dstFormat?: ImageFormat
  /** Compress data clusters (qcow2 target, `-c`). */
  compress?: boolean
  /** Worker threads. @default number of CPUs */
  threads?: number
  /** Zero runs at least this long are not written (`-S`); 0 writes everything. @default 4096 */
  minSparse?: number
  /** Compression level (zlib 1-9, zstd 1-19). @default 1 */
  level?: number
  allowDataFile?: boolean
}

export interface MapEntry {
  start: number
  length: number
  depth: number
  present: boolean
  zero: boolean
  data: boolean
  offset?: number
}

export interface CheckResult {
  corruptions: number
  leaks: number
  checkErrors: number
  corruptionsFixed: number
  leaksFixed: number
  imageEndOffset: number
  totalClusters: number
  allocatedClusters: number
  fragmentedClusters: number
  compressedClusters: number
  /** A repair ran and the image was checked again; the counts are the second check's. */
  repaired: boolean
  /** Per-cluster diagnostics, qemu-img style (one per line). */
  log: string
}

export interface InspectResult {
  /** Detected by content: raw qcow2 vmdk vhd vhdx vdi iso qed qcow. */
  format: string
  virtualSize: number
  safe: boolean
  /** Why the image is unsafe ("; "-separated); empty when safe. */
  reasons: string
}

export interface Extent {
  offset: number
  length: number
  data: boolean
}

export type ProgressFn = (done: number, total: number) => void

/** Cancels a running operation; the operation rejects with FailedPrecondition (kind `cancelled`). */
export interface CancelToken {
  cancel(): void
  readonly cancelled: boolean
}

interface Addon {
  CancelToken: new () => CancelToken
  info(path: string, fmt: ImageFormat | null, opts: InfoOptions): Promise<ImageInfo[]>
  create(path: string, fmt: ImageFormat, opts: CreateOptions): Promise<void>
  createSync(path: string, fmt: ImageFormat, opts: CreateOptions): void
  convert(src: string, dst: string, opts: ConvertOptions, onProgress?: ProgressFn, cancel?: CancelToken): Promise<void>
  compare(a: string, fa: ImageFormat | null, b: string, fb: ImageFormat | null, strict: boolean,
    onProgress?: ProgressFn, cancel?: CancelToken): Promise<{ identical: boolean; offset?: number }>
  map(path: string, fmt: ImageFormat | null): Promise<MapEntry[]>
  resize(path: string, fmt: ImageFormat | null, size: number, shrink: boolean): Promise<void>
  rebase(path: string, backing: string, backingFmt: string): Promise<void>
  commit(path: string, fmt: ImageFormat | null, keep: boolean, onProgress?: ProgressFn, cancel?: CancelToken): Promise<void>
  check(path: string, repair: '' | 'leaks' | 'all'): Promise<CheckResult>
  inspect(path: string): Promise<InspectResult>
  read(path: string, fmt: ImageFormat | null, offset: number, length: number): Promise<Buffer>
  write(path: string, fmt: ImageFormat | null, offset: number, data: Buffer | number): Promise<void>
  extents(path: string): Promise<Extent[]>
  punchHole(path: string, offset: number, length: number): Promise<void>
  sparseCopy(src: string, dst: string, onProgress?: ProgressFn, cancel?: CancelToken): Promise<void>
  fileSizes(path: string): Promise<{ apparent: number; allocated: number }>
  ImageSink: (new (path: string, direct: boolean) => NativeSink) & { Batch: new (buffers: Uint8Array[]) => NativeBatch }
  ImageSource: new (path: string, direct: boolean) => NativeSource
}

interface NativeSource {
  readonly direct: boolean
  read(buffer: Uint8Array, room: number, max: number): Promise<[number, number]>
  close(): void
}

interface NativeBatch {
  readonly brand?: 'SinkBatch'
}

interface NativeSink {
  readonly direct: boolean
  update(lane: 0 | 1 | 2, batch: NativeBatch): Promise<void>
  finish(): Promise<SinkResult>
  close(): void
}

/** What a finished {@link FileSink} wrote. */
export interface SinkResult {
  size: number
  md5: string
  sha512: string
}

function findAddon(): string {
  let dir = dirname(fileURLToPath(import.meta.url))
  for (;;) {
    if (existsSync(join(dir, 'package.json'))) return join(dir, 'native', 'build', 'Release', 'strato_img.node')
    const up = dirname(dir)
    if (up === dir) throw new Internal('strato_img addon not found: no package.json above ' + fileURLToPath(import.meta.url))
    dir = up
  }
}

let cached: Addon | undefined
function addon(): Addon {
  if (cached) return cached
  const path = findAddon()
  if (!existsSync(path)) throw new Internal(`native addon ${path} is not built; run npm run build:native`)
  cached = createRequire(import.meta.url)(path) as Addon
  return cached
}

/** The native failure reason, for callers that need more than the error class. */
export type NativeErrorKind =
  | 'invalid' | 'notfound' | 'corrupt' | 'unsupported' | 'precondition' | 'cancelled'
  | 'nomem' | 'exists' | 'perm' | 'io' | 'internal'

/** Returns the native kind of an error thrown by this module, if any. */
export function nativeKind(err: unknown): NativeErrorKind | undefined {
  if (err instanceof Error && err.cause && typeof err.cause === 'object' && 'kind' in err.cause) {
    return (err.cause as { kind: NativeErrorKind }).kind
  }
  return undefined
}

function convertError(err: unknown): StratoError {
  if (err instanceof Error && typeof (err as { code?: unknown }).code === 'string') {
    const e = err as Error & { code: string; kind?: string }
    return errorFromCode(e.code, e.message, { cause: { kind: e.kind ?? 'internal', native: e } })
  }
  if (err instanceof Error) return new Internal(err.message, { cause: { kind: 'internal', native: err } })
  return new Internal(String(err))
}

async function call<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn()
  } catch (err) {
    throw convertError(err)
  }
}

export function newCancelToken(): CancelToken {
  return new (addon().CancelToken)()
}

/** Info of the image (top first; with backingChain, one entry per layer). */
export async function imageInfo(path: string, format?: ImageFormat, opts: InfoOptions = {}): Promise<ImageInfo[]> {
  return call(() => addon().info(path, format ?? null, opts))
}

export async function createImage(path: string, format: ImageFormat, opts: CreateOptions): Promise<void> {
  return call(() => addon().create(path, format, opts))
}

/** Synchronous create: an overlay takes well under a millisecond, so no thread hop is needed. */
export function createImageSync(path: string, format: ImageFormat, opts: CreateOptions): void {
  try {
    addon().createSync(path, format, opts)
  } catch (err) {
    throw convertError(err)
  }
}

/** qemu-img convert. Zero runs are never written; the raw target is sparse. */
export async function convertImage(src: string, dst: string, opts: ConvertOptions = {},
  onProgress?: ProgressFn, cancel?: CancelToken): Promise<void> {
  return call(() => addon().convert(src, dst, opts, onProgress, cancel))
}

/** qemu-img compare: identical, or the first differing offset (512-byte aligned). */
export async function compareImages(a: string, b: string, opts: { formatA?: ImageFormat; formatB?: ImageFormat; strict?: boolean } = {},
  onProgress?: ProgressFn, cancel?: CancelToken): Promise<{ identical: boolean; offset?: number }> {
  return call(() => addon().compare(a, opts.formatA ?? null, b, opts.formatB ?? null, opts.strict ?? false, onProgress, cancel))
}

export async function mapImage(path: string, format?: ImageFormat): Promise<MapEntry[]> {
  return call(() => addon().map(path, format ?? null))
}

/** Grows an image; shrinking needs `shrink` and an unallocated tail. */
export async function resizeImage(path: string, size: number, opts: { format?: ImageFormat; shrink?: boolean } = {}): Promise<void> {
  return call(() => addon().resize(path, opts.format ?? null, size, opts.shrink ?? false))
}

/** qemu-img rebase -u: rewrites the backing file name/format only (empty name removes it). */
export async function rebaseUnsafe(path: string, backing: string, backingFormat?: ImageFormat): Promise<void> {
  return call(() => addon().rebase(path, backing, backingFormat ?? ''))
}

/** Writes the overlay's data into its backing file; empties the overlay unless keep. */
export async function commitImage(path: string, opts: { format?: ImageFormat; keep?: boolean } = {},
  onProgress?: ProgressFn, cancel?: CancelToken): Promise<void> {
  return call(() => addon().commit(path, opts.format ?? null, opts.keep ?? false, onProgress, cancel))
}

/** qemu-img check: rebuilds refcounts in memory and compares; optionally repairs. */
export async function checkImage(path: string, repair: '' | 'leaks' | 'all' = ''): Promise<CheckResult> {
  return call(() => addon().check(path, repair))
}

/** Safety verdict for an untrusted file (format inspector). Never opens another file. */
export async function inspectImage(path: string): Promise<InspectResult> {
  return call(() => addon().inspect(path))
}

/** Reads guest data (through the backing chain). */
export async function readImage(path: string, offset: number, length: number, format?: ImageFormat): Promise<Buffer> {
  return call(() => addon().read(path, format ?? null, offset, length))
}

/** Writes guest data into an image (qcow2: allocating; raw: in place). */
export async function writeImage(path: string, offset: number, data: Buffer, format?: ImageFormat): Promise<void> {
  return call(() => addon().write(path, format ?? null, offset, data))
}

/** Makes a guest range read as zeros. */
export async function writeZeroes(path: string, offset: number, length: number, format?: ImageFormat): Promise<void> {
  return call(() => addon().write(path, format ?? null, offset, length))
}

/** Data and hole extents of a file (SEEK_DATA/SEEK_HOLE). */
export async function sparseExtents(path: string): Promise<Extent[]> {
  return call(() => addon().extents(path))
}

export async function punchHole(path: string, offset: number, length: number): Promise<void> {
  return call(() => addon().punchHole(path, offset, length))
}

/** Copies a file without allocating zero runs. */
export async function sparseCopy(src: string, dst: string, onProgress?: ProgressFn, cancel?: CancelToken): Promise<void> {
  return call(() => addon().sparseCopy(src, dst, onProgress, cancel))
}

export async function fileSizes(path: string): Promise<{ apparent: number; allocated: number }> {
  return call(() => addon().fileSizes(path))
}

/**
 * A new file written front to back with its MD5 and SHA-512 computed on the
 * way (an image upload). Each batch goes through three lanes on worker
 * threads — MD5, SHA-512, write — that run independently, so several batches
 * may be in flight. With `direct` the file
 * is written with O_DIRECT where the filesystem allows it. All-zero 64 KiB
 * blocks become holes. A batch's buffers must not change until its write
 * settles. The data is durable once finish() resolves.
 */
export class FileSink {
  private readonly native: NativeSink
  private readonly lanes: Array<Promise<void>> = [Promise.resolve(), Promise.resolve(), Promise.resolve()]

  constructor(readonly path: string, opts: { direct?: boolean } = {}) {
    try {
      this.native = new (addon().ImageSink)(path, opts.direct ?? true)
    } catch (err) {
      throw convertError(err)
    }
  }

  /** True while writes bypass the page cache. */
  get direct(): boolean {
    return this.native.direct
  }

  /**
   * Queues a batch; settles when every lane is done with it, failed or not, so the caller may then reuse the
   * buffers (a failure fails every later batch too).
   */
  write(buffers: Uint8Array[]): Promise<void> {
    let batch: NativeBatch
    try {
      batch = new (addon().ImageSink.Batch)(buffers)
    } catch (err) {
      return Promise.reject(convertError(err))
    }
    const lanes = ([0, 1, 2] as const).map((lane) => (this.lanes[lane] = this.lanes[lane]!.then(() => call(() => this.native.update(lane, batch)))))
    return Promise.allSettled(lanes).then((results) => {
      for (const r of results) if (r.status === 'rejected') throw r.reason
    })
  }

  /** After the queued batches: sets the size, syncs; then the digests. */
  async finish(): Promise<SinkResult> {
    await Promise.all(this.lanes)
    return call(() => this.native.finish())
  }

  /** Waits for queued batches (ignoring their failures) and closes the file without finishing; the caller removes it. */
  async close(): Promise<void> {
    await Promise.allSettled(this.lanes)
    this.native.close()
  }
}

/**
 * A file read front to back (an image download), with O_DIRECT where the
 * filesystem allows it. read() puts the next bytes into the caller's buffer at
 * the first aligned offset at or after `room` (so a frame header fits in
 * front) and returns where they are; reusing a few buffers means nothing is
 * allocated per chunk. One read at a time.
 */
export class FileSource {
  private readonly native: NativeSource

  constructor(readonly path: string, opts: { direct?: boolean } = {}) {
    try {
      this.native = new (addon().ImageSource)(path, opts.direct ?? true)
    } catch (err) {
      throw convertError(err)
    }
  }

  /** True while reads bypass the page cache. */
  get direct(): boolean {
    return this.native.direct
  }

  /**
   * Reads up to `max` bytes into `buffer` at offset >= `room`; length 0 at the
   * end of the file. The buffer needs `room` + `max` + 4096 bytes to be sure
   * of a full read.
   */
  async read(buffer: Uint8Array, room: number, max: number): Promise<{ offset: number; length: number }> {
    const [offset, length] = await call(() => this.native.read(buffer, room, max))
    return { offset, length }
  }

  close(): void {
    this.native.close()
  }
}

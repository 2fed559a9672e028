/**
 * The image file store: one file per image under a directory. Uploads are
 * written to `<id>.partial` by the native sink (sparse: all-zero blocks are
 * never written; O_DIRECT where the filesystem allows; MD5 and SHA-512 on
 * worker threads as the data arrives), synced, and renamed into place only
 * when complete, so a failed upload leaves nothing behind.
 */
import { chmodSync, mkdirSync } from 'node:fs'
import { open, rename, rm, stat } from 'node:fs/promises'
import path from 'node:path'
import { FileSink, FileSource } from '../../native/index.js'

/** Bytes handed to the native sink at a time (one batch buffer), and how many such batches may wait. */
const BATCH = 8 * 1024 * 1024
const MAX_QUEUED = 2

/**
 * Received upload data all uploads together may hold (batches being built or
 * written): what one upload alone uses at most, so one upload runs as fast as
 * before; concurrent ones share it, and one that finds it spent stops reading
 * until some is written, so its sender is held by HTTP/2 flow control instead
 * of buffered (issue 15: 50 parallel uploads held ~40 MB each).
 */
export const DEFAULT_UPLOAD_BUDGET = BATCH * (MAX_QUEUED + 1)

/** A count of bytes shared by uploads; waiters are served in order. */
export class ByteBudget {
  private used = 0
  private readonly waiting: Array<{ n: number; wake: () => void }> = []

  constructor(readonly limit: number) {}

  /** True when nothing is held. */
  get idle(): boolean {
    return this.used === 0
  }

  /** Takes `n` bytes if they are free now (or if nothing is held, so one piece over the limit still goes). */
  tryTake(n: number): boolean {
    if (this.waiting.length > 0 || (this.used > 0 && this.used + n > this.limit)) return false
    this.used += n
    return true
  }

  async take(n: number): Promise<void> {
    if (this.tryTake(n)) return
    await new Promise<void>((wake) => this.waiting.push({ n, wake }))
  }

  release(n: number): void {
    this.used -= n
    while (this.waiting.length > 0) {
      const w = this.waiting[0]!
      if (this.used > 0 && this.used + w.n > this.limit) break
      this.waiting.shift()
      this.used += w.n
      w.wake()
    }
  }
}

/**
 * The batch buffers uploads fill, taken from the budget a whole buffer at a
 * time and reused while uploads run (dropped once none is held, for the GC).
 * Received data is copied into them at once instead of being kept in the
 * buffers it arrived in: those are Node's, one per socket read or TLS record
 * (16–64 KiB), and held for the ~24 MiB a batch pipeline keeps, they outlived
 * young-generation collections, so V8 marked the whole heap to free them, and
 * new ones kept arriving in freshly faulted-in memory. Measured on the upload's
 * event loop (bench:catalog, per GiB, TLS): ~65,000 page faults before,
 * ~40,000 with the copy, and less CPU though the copy is one more pass.
 */
export class BatchBuffers {
  private readonly free: Buffer[] = []

  constructor(private readonly budget: ByteBudget, readonly size = BATCH) {}

  /** A buffer now, if the budget has room. */
  tryTake(): Buffer | undefined {
    return this.budget.tryTake(this.size) ? this.pop() : undefined
  }

  /** A buffer once the budget has room (waiters in order). */
  async take(): Promise<Buffer> {
    await this.budget.take(this.size)
    return this.pop()
  }

  /** Gives a buffer back (its bytes to the budget); the caller no longer uses it. */
  give(buf: Buffer): void {
    this.budget.release(this.size)
    if (this.budget.idle) this.free.length = 0
    else this.free.push(buf)
  }

  private pop(): Buffer {
    return this.free.pop() ?? Buffer.allocUnsafeSlow(this.size)
  }
}

export interface StoredData {
  size: number
  md5: string
  sha512: string
  /** Where the data is until commit(). */
  partialPath: string
}

export class ImageStore {
  private readonly batches: BatchBuffers

  constructor(readonly dir: string, budget = new ByteBudget(DEFAULT_UPLOAD_BUDGET)) {
    this.batches = new BatchBuffers(budget)
    // Private images live here: the controller's alone (an older version made it 0750).
    mkdirSync(dir, { recursive: true, mode: 0o700 })
    chmodSync(dir, 0o700)
  }

  path(id: string): string {
    return path.join(this.dir, id)
  }

  /**
   * Writes the chunks (groups of buffers, in order) to a partial file. `beforeWrite(total)` may throw to stop
   * (quota); any error removes the partial file.
   */
  async receive(id: string, chunks: AsyncIterable<Buffer[]>, beforeWrite: (totalSoFar: number) => void): Promise<StoredData> {
    const partialPath = `${this.path(id)}.partial`
    const sink = new FileSink(partialPath)
    chmodSync(partialPath, 0o600) // the native sink creates it 0640 (less the umask)
    // Batches are hashed and written on worker threads while the next ones
    // arrive; at most MAX_QUEUED wait, then the sender is held back.
    const queued: Array<Promise<void>> = []
    let batch: Buffer | undefined
    let fill = 0
    let pos = 0
    const flush = () => {
      const buf = batch!
      queued.push(sink.write([buf.subarray(0, fill)]).finally(() => this.batches.give(buf)))
      batch = undefined
      fill = 0
    }
    try {
      for await (const pieces of chunks) {
        let n = 0
        for (const p of pieces) n += p.length
        if (n === 0) continue
        beforeWrite(pos + n)
        pos += n
        for (const p of pieces) {
          for (let off = 0; off < p.length; ) {
            // A full batch was handed on: only then is a new one taken, so a waiting upload holds none (no deadlock on partial batches).
            batch ??= this.batches.tryTake() ?? (await this.batches.take())
            const k = p.copy(batch, fill, off)
            off += k
            fill += k
            if (fill === batch.length) flush()
          }
        }
        if (queued.length >= MAX_QUEUED) await queued.shift()
      }
      if (batch) flush()
      await Promise.all(queued)
      const done = await sink.finish()
      await sink.close()
      return { size: done.size, md5: done.md5, sha512: done.sha512, partialPath }
    } catch (err) {
      if (batch) this.batches.give(batch)
      batch = undefined
      for (const q of queued) q.catch(() => undefined)
      await sink.close()
      await rm(partialPath, { force: true })
      throw err
    }
  }

  /** Renames the synced data into place, and syncs the directory so the rename survives a crash too. */
  async commit(id: string, data: StoredData): Promise<void> {
    await rename(data.partialPath, this.path(id))
    const dir = await open(this.dir, 'r')
    try {
      await dir.sync()
    } finally {
      await dir.close()
    }
  }

  async discard(data: StoredData): Promise<void> {
    await rm(data.partialPath, { force: true })
  }

  async remove(id: string): Promise<void> {
    await rm(this.path(id), { force: true })
    await rm(`${this.path(id)}.partial`, { force: true })
  }

  async allocatedBytes(id: string): Promise<number> {
    const st = await stat(this.path(id))
    return st.blocks * 512
  }

  /** The image's data, for reading front to back (O_DIRECT where the filesystem allows). */
  open(id: string): FileSource {
    return new FileSource(this.path(id))
  }
}

/** Reads a source to its end in chunks of up to `chunkSize`, each in a new Buffer; closes it. */
export async function* chunksOf(source: FileSource, chunkSize = 1024 * 1024): AsyncGenerator<Buffer> {
  try {
    for (;;) {
      const buf = Buffer.allocUnsafeSlow(chunkSize + 4096)
      const { offset, length } = await source.read(buf, 0, chunkSize)
      if (length === 0) return
      yield buf.subarray(offset, offset + length)
    }
  } finally {
    source.close()
  }
}

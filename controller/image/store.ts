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

/** Bytes handed to the native sink at a time, and how many such batches may wait. */
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

export interface StoredData {
  size: number
  md5: string
  sha512: string
  /** Where the data is until commit(). */
  partialPath: string
}

export class ImageStore {
  constructor(readonly dir: string, private readonly budget = new ByteBudget(DEFAULT_UPLOAD_BUDGET)) {
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
    let batch: Buffer[] = []
    let batchBytes = 0
    let pos = 0
    // Every byte held is taken from the shared budget, and given back once written.
    const flush = () => {
      const bytes = batchBytes
      queued.push(sink.write(batch).finally(() => this.budget.release(bytes)))
      batch = []
      batchBytes = 0
    }
    try {
      for await (const pieces of chunks) {
        let n = 0
        for (const p of pieces) n += p.length
        if (n === 0) continue
        beforeWrite(pos + n)
        if (!this.budget.tryTake(n)) {
          // Write what is held (so the budget cannot deadlock on partial batches), then wait: no reading meanwhile.
          if (batch.length) flush()
          await this.budget.take(n)
        }
        pos += n
        batch.push(...pieces)
        batchBytes += n
        if (batchBytes >= BATCH) flush()
        if (queued.length >= MAX_QUEUED) await queued.shift()
      }
      if (batch.length) flush()
      await Promise.all(queued)
      const done = await sink.finish()
      await sink.close()
      return { size: done.size, md5: done.md5, sha512: done.sha512, partialPath }
    } catch (err) {
      this.budget.release(batchBytes)
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

/**
 * The image file store: one file per image under a directory. Uploads are
 * written to `<id>.partial`, sparse (all-zero blocks are skipped, never
 * written), hashed as they arrive, and renamed into place only when complete,
 * so a failed upload leaves nothing behind.
 */
import { createReadStream, mkdirSync } from 'node:fs'
import { open, rename, rm, stat } from 'node:fs/promises'
import path from 'node:path'
import { ParallelHasher } from './hasher.js'

const BLOCK = 64 * 1024
const ZERO = Buffer.alloc(BLOCK)

export interface StoredData {
  size: number
  md5: string
  sha512: string
  /** Where the data is until commit(). */
  partialPath: string
}

export class ImageStore {
  constructor(readonly dir: string) {
    mkdirSync(dir, { recursive: true, mode: 0o750 })
  }

  path(id: string): string {
    return path.join(this.dir, id)
  }

  /**
   * Writes the chunks to a partial file. `beforeWrite(total)` may throw to stop
   * (quota); any error removes the partial file.
   */
  async receive(id: string, chunks: AsyncIterable<Buffer>, beforeWrite: (totalSoFar: number) => void): Promise<StoredData> {
    const partialPath = `${this.path(id)}.partial`
    const fh = await open(partialPath, 'w', 0o640)
    const hasher = new ParallelHasher(['md5', 'sha512'])
    let pos = 0
    let digests: Record<string, string>
    try {
      for await (const chunk of chunks) {
        if (chunk.length === 0) continue
        beforeWrite(pos + chunk.length)
        // Hashing (on worker threads) and writing proceed together.
        await Promise.all([hasher.update(chunk), writeSparse(fh, chunk, pos)])
        pos += chunk.length
      }
      await fh.truncate(pos)
      await fh.sync()
      digests = await hasher.digest()
    } catch (err) {
      await hasher.close()
      await fh.close().catch(() => undefined)
      await rm(partialPath, { force: true })
      throw err
    }
    await fh.close()
    return { size: pos, md5: digests.md5!, sha512: digests.sha512!, partialPath }
  }

  async commit(id: string, data: StoredData): Promise<void> {
    await rename(data.partialPath, this.path(id))
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

  read(id: string, chunkSize = 1024 * 1024): AsyncIterable<Buffer> {
    return createReadStream(this.path(id), { highWaterMark: chunkSize })
  }
}

/** Writes runs of non-zero 64 KiB blocks; zero blocks become holes. */
async function writeSparse(fh: import('node:fs/promises').FileHandle, chunk: Buffer, at: number): Promise<void> {
  let runStart = -1
  for (let off = 0; off < chunk.length; off += BLOCK) {
    const end = Math.min(off + BLOCK, chunk.length)
    const zero = chunk.subarray(off, end).equals(end - off === BLOCK ? ZERO : ZERO.subarray(0, end - off))
    if (zero) {
      if (runStart >= 0) {
        await fh.write(chunk, runStart, off - runStart, at + runStart)
        runStart = -1
      }
    } else if (runStart < 0) {
      runStart = off
    }
  }
  if (runStart >= 0) await fh.write(chunk, runStart, chunk.length - runStart, at + runStart)
}

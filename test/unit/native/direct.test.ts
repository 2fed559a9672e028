/**
 * FileSink and FileSource (native/src/direct.c, native/addon/direct.cc): the
 * upload and download data paths. What the sink writes reads back byte for
 * byte, its digests equal node:crypto's, all-zero blocks stay holes, and both
 * work with O_DIRECT (ext4 here) and through the page cache (asked for, or
 * where a filesystem refuses O_DIRECT), and on tmpfs.
 */
import { createHash, randomBytes } from 'node:crypto'
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import t from 'tap'
import { FileSink, FileSource } from '../../../native/index.js'
import { NotFound } from '../../../proto/errors.js'

const MiB = 1024 * 1024
const disk = mkdtempSync(path.join(tmpdir(), 'strato-direct-'))
const shm = existsSync('/dev/shm') ? mkdtempSync('/dev/shm/strato-direct-') : undefined
t.teardown(() => {
  rmSync(disk, { recursive: true, force: true })
  if (shm) rmSync(shm, { recursive: true, force: true })
})

/** Data with random, all-zero and text regions, split into uneven chunks. */
function sample(size: number): { data: Buffer; chunks: Buffer[] } {
  const data = Buffer.alloc(size)
  for (let off = 0; off < size; off += 192 * 1024) {
    const kind = (off / (192 * 1024)) % 3
    const end = Math.min(off + 192 * 1024, size)
    if (kind === 0) randomBytes(end - off).copy(data, off)
    else if (kind === 2) data.fill('strato ', off, end)
  }
  const chunks: Buffer[] = []
  const sizes = [1, 4095, 5, 65536, 100_000, 3 * MiB + 7, 17]
  for (let off = 0, i = 0; off < size; i++) {
    const n = Math.min(sizes[i % sizes.length]!, size - off)
    chunks.push(data.subarray(off, off + n))
    off += n
  }
  return { data, chunks }
}

async function writeAll(file: string, chunks: Buffer[], batch: number, direct = true): Promise<{ size: number; md5: string; sha512: string; direct: boolean }> {
  const sink = new FileSink(file, { direct })
  const pending: Array<Promise<void>> = []
  for (let i = 0; i < chunks.length; i += batch) pending.push(sink.write(chunks.slice(i, i + batch)))
  await Promise.all(pending)
  const r = await sink.finish()
  const bypassed = sink.direct
  await sink.close()
  return { ...r, direct: bypassed }
}

async function readAll(file: string, room: number, max: number, direct = true): Promise<{ data: Buffer; direct: boolean }> {
  const src = new FileSource(file, { direct })
  const parts: Buffer[] = []
  const buf = Buffer.allocUnsafeSlow(room + max + 4096)
  for (;;) {
    const { offset, length } = await src.read(buf, room, max)
    if (length === 0) break
    if (offset < room) throw new Error(`data at ${offset}, inside the room of ${room}`)
    parts.push(Buffer.from(buf.subarray(offset, offset + length)))
  }
  const bypassed = src.direct
  src.close()
  return { data: Buffer.concat(parts), direct: bypassed }
}

for (const [where, dir, direct] of [['the disk, O_DIRECT', disk, true], ['the disk, page cache', disk, false], ['tmpfs', shm, undefined]] as const) {
  t.test(`sink and source on ${where}`, { skip: dir ? false : 'no /dev/shm' }, async (t) => {
    for (const size of [0, 1, 4095, 4096, 65537, 8 * MiB + 13]) {
      const { data, chunks } = sample(size)
      const file = path.join(dir!, `img-${size}-${direct}`)
      const r = await writeAll(file, chunks, 3, direct ?? true)
      t.equal(r.size, size, `${size} bytes: size`)
      t.equal(r.md5, createHash('md5').update(data).digest('hex'), `${size} bytes: MD5`)
      t.equal(r.sha512, createHash('sha512').update(data).digest('hex'), `${size} bytes: SHA-512`)
      t.equal(statSync(file).size, size, `${size} bytes: file size`)
      t.ok(readFileSync(file).equals(data), `${size} bytes: the file holds the data`)
      const back = await readAll(file, 16, MiB, direct ?? true)
      t.ok(back.data.equals(data), `${size} bytes: read back through the source`)
      if (direct !== undefined) {
        t.equal(r.direct, direct, `${size} bytes: the sink ${direct ? 'bypasses' : 'uses'} the page cache`)
        t.equal(back.direct, direct, `${size} bytes: so does the source`)
      }
    }
  })
}

t.test('all-zero 64 KiB blocks are holes; the allocation is the data', async (t) => {
  const data = Buffer.alloc(16 * MiB)
  randomBytes(64 * 1024).copy(data, 3 * MiB)
  data.fill(1, 10 * MiB, 10 * MiB + 1)
  const file = path.join(disk, 'sparse')
  const r = await writeAll(file, [data.subarray(0, 5 * MiB), data.subarray(5 * MiB)], 1)
  t.equal(r.size, 16 * MiB)
  const st = statSync(file)
  t.equal(st.size, 16 * MiB)
  t.ok(st.blocks * 512 <= 2 * 64 * 1024, `two 64 KiB blocks allocated, not 16 MiB (${st.blocks * 512} bytes)`)
  t.ok(readFileSync(file).equals(data))
})

t.test('a source reads into aligned places of buffers with room in front', async (t) => {
  const data = randomBytes(3 * MiB + 100)
  const file = path.join(disk, 'aligned')
  writeFileSync(file, data)
  for (const room of [0, 11, 16, 4096]) {
    const back = await readAll(file, room, MiB)
    t.ok(back.data.equals(data), `room ${room}`)
  }
  const src = new FileSource(file)
  await t.rejects(src.read(Buffer.alloc(100), 16, MiB), /no aligned room/, 'a buffer too small for one aligned block is refused')
  src.close()
})

t.test('one job per lane; use after close; missing files', async (t) => {
  const sink = new FileSink(path.join(disk, 'busy'))
  const a = sink.write([Buffer.alloc(MiB, 1)])
  const b = sink.write([Buffer.alloc(MiB, 2)]) // queued behind a, not refused
  await Promise.all([a, b])
  const r = await sink.finish()
  t.equal(r.size, 2 * MiB)
  await sink.close()
  await t.rejects(sink.write([Buffer.alloc(1)]), /closed/, 'a closed sink takes no more data')
  t.throws(() => new FileSource(path.join(disk, 'nope')), NotFound, 'a missing file is NotFound')
  t.throws(() => new FileSink(path.join(disk, 'no-dir', 'x')), NotFound, 'a missing directory is NotFound')
})

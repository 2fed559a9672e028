/**
 * Native engine, without qemu-img: sparse-file primitives, error mapping to
 * Strato's error classes, progress and cancellation, malformed inputs.
 */
import t from 'tap'
import { closeSync, existsSync, openSync, writeSync, ftruncateSync, readFileSync, writeFileSync } from 'node:fs'
import {
  convertImage, createImage, fileSizes, imageInfo, inspectImage, nativeKind, newCancelToken, punchHole, readImage,
  sparseCopy, sparseExtents, writeImage, checkImage,
} from '../../../native/index.js'
import { FailedPrecondition, InvalidArgument, NotFound } from '../../../proto/errors.js'
import { poke, prng, randomBytes, tempDir, u32, u64 } from '../../fixtures/images.js'

const tmp = tempDir()
t.teardown(tmp.cleanup)
const MiB = 1024 * 1024

function sparseFile(name: string, size: number, writes: Array<[number, Buffer]>): string {
  const p = tmp.path(name)
  const fd = openSync(p, 'w')
  ftruncateSync(fd, size)
  for (const [off, b] of writes) writeSync(fd, b, 0, b.length, off)
  closeSync(fd)
  return p
}

t.test('extents, punch hole, allocated vs apparent size', async (t) => {
  const p = sparseFile('ext.raw', 8 * MiB, [[1 * MiB, Buffer.alloc(64 * 1024, 1)], [5 * MiB, Buffer.alloc(128 * 1024, 2)]])
  const ex = await sparseExtents(p)
  t.same(ex.filter((e) => e.data).map((e) => [e.offset, e.length]), [[1 * MiB, 64 * 1024], [5 * MiB, 128 * 1024]])
  t.equal(ex.reduce((a, e) => a + e.length, 0), 8 * MiB, 'extents cover the file')
  let s = await fileSizes(p)
  t.equal(s.apparent, 8 * MiB)
  t.equal(s.allocated, 192 * 1024)
  await punchHole(p, 5 * MiB, 128 * 1024)
  s = await fileSizes(p)
  t.equal(s.allocated, 64 * 1024)
  t.same((await sparseExtents(p)).filter((e) => e.data).length, 1)
})

t.test('sparse copy never allocates zero runs', async (t) => {
  const rand = prng(9)
  const data = randomBytes(rand, 100000)
  const p = sparseFile('copy-src.raw', 16 * MiB, [[0, Buffer.alloc(4 * MiB)], [7 * MiB + 3, data]])
  const q = tmp.path('copy-dst.raw')
  let last = 0
  await sparseCopy(p, q, (done, total) => { last = done; t.ok(done <= total) })
  t.equal(last, 16 * MiB, 'progress reaches the total')
  t.ok(readFileSync(p).equals(readFileSync(q)), 'same content')
  const s = await fileSizes(q)
  t.ok(s.allocated <= 192 * 1024, `only data allocated (${s.allocated})`)
})

t.test('errors become Strato error classes', async (t) => {
  await t.rejects(imageInfo(tmp.path('missing.qcow2')), NotFound)
  const bad = tmp.path('bad-version.qcow2')
  writeFileSync(bad, Buffer.concat([u32(0x514649fb), u32(3), Buffer.alloc(504)]))
  poke(bad, 4, u32(3))
  poke(bad, 20, u32(40)) // cluster bits out of range
  const err = await imageInfo(bad, 'qcow2').catch((e: unknown) => e)
  t.type(err, FailedPrecondition)
  t.equal(nativeKind(err), 'corrupt')
  t.match((err as Error).message, /cluster size/)
  await t.rejects(createImage(tmp.path('x.qcow2'), 'qcow2', { size: MiB, clusterSize: 1000 }), InvalidArgument)
  await t.rejects(createImage(tmp.path('y.qcow2'), 'qcow2', { size: MiB, backingFile: 'a.raw' }), InvalidArgument)
  await t.rejects(convertImage(tmp.path('missing.raw'), tmp.path('out.raw')), NotFound)
  // a target that is the source or one of its backing files is refused, not truncated
  const base = tmp.path('keep-base.qcow2')
  await createImage(base, 'qcow2', { size: MiB })
  await writeImage(base, 0, Buffer.from('precious'))
  const over = tmp.path('keep-over.qcow2')
  await createImage(over, 'qcow2', { backingFile: 'keep-base.qcow2', backingFormat: 'qcow2' })
  await t.rejects(convertImage(over, base, { dstFormat: 'qcow2' }), { name: 'InvalidArgument', message: /backing file of the source/ })
  await t.rejects(convertImage(over, tmp.path('./keep-over.qcow2'), { dstFormat: 'qcow2' }), { message: /same file|the source image/ })
  t.equal((await readImage(over, 0, 8)).toString(), 'precious')
  const dir = await inspectImage(tmp.dir).catch((e: unknown) => e)
  t.type(dir, InvalidArgument)
})

t.test('malformed qcow2 tables give clear errors, never crashes', async (t) => {
  const img = tmp.path('mal.qcow2')
  await createImage(img, 'qcow2', { size: 4 * MiB })
  await writeImage(img, 0, Buffer.alloc(70000, 5))
  const l1 = Number(readFileSync(img).readBigUInt64BE(40))
  const good = readFileSync(img)
  // L2 offset not aligned
  poke(img, l1, u64((1n << 63n) | 0x10200n))
  await t.rejects(readImage(img, 0, 512), { name: 'FailedPrecondition', message: /not cluster-aligned/ })
  // L2 beyond the end of the file
  writeFileSync(img, good)
  poke(img, l1, u64((1n << 63n) | 0x7fff0000n))
  await t.rejects(readImage(img, 0, 512), { message: /beyond the end of the file/ })
  // L1 table beyond the end of the file
  writeFileSync(img, good)
  poke(img, 40, u64(0x40000000n))
  await t.rejects(imageInfo(img), { message: /L1 table lies beyond/ })
  // huge L1 size
  writeFileSync(img, good)
  poke(img, 36, u32(0x7fffffff))
  await t.rejects(imageInfo(img), { message: /L1 table too large|L1 table lies beyond/ })
  // unknown incompatible feature, named from the feature table when present
  writeFileSync(img, good)
  poke(img, 72, u64(1n << 9n))
  await t.rejects(imageInfo(img), { name: 'FailedPrecondition', message: /incompatible features/ })
  // compression type without the feature bit
  writeFileSync(img, good)
  poke(img, 104, Buffer.from([1]))
  await t.rejects(imageInfo(img), { message: /compression type/ })
  // header extension longer than the header cluster
  writeFileSync(img, good)
  poke(img, 112, Buffer.concat([u32(0x12345678), u32(0x7fffffff)]))
  await t.rejects(imageInfo(img), { message: /header extension/ })
  // a backing chain that loops is cut off
  writeFileSync(img, good)
  const loop = tmp.path('loop.qcow2')
  await createImage(loop, 'qcow2', { size: MiB, backingFile: 'loop.qcow2', backingFormat: 'qcow2' })
  await t.rejects(readImage(loop, 0, 512), { message: /backing chain deeper/ })
  t.equal((await checkImage(img)).corruptions, 0)
})

t.test('convert reports progress and can be cancelled', async (t) => {
  const rand = prng(4)
  const writes: Array<[number, Buffer]> = []
  for (let i = 0; i < 32; i++) writes.push([i * 4 * MiB, randomBytes(rand, 1 * MiB)])
  const src = sparseFile('cancel-src.raw', 128 * MiB, writes)
  const dst = tmp.path('cancel-dst.qcow2')
  const token = newCancelToken()
  token.cancel()
  const err = await convertImage(src, dst, { dstFormat: 'qcow2', compress: true }, undefined, token).catch((e: unknown) => e)
  t.type(err, FailedPrecondition)
  t.equal(nativeKind(err), 'cancelled')
  t.notOk(existsSync(dst), 'partial output removed')
  const seen: number[] = []
  await convertImage(src, dst, { dstFormat: 'qcow2' }, (d) => seen.push(d))
  t.equal(seen[seen.length - 1], 128 * MiB)
  t.ok(seen.every((v, i) => i === 0 || v >= (seen[i - 1] ?? 0)), 'monotonic')
  const back = await readImage(dst, 4 * MiB, 16)
  t.ok(back.equals((writes[1] as [number, Buffer])[1].subarray(0, 16)))
})

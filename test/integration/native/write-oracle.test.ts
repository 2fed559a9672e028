/**
 * Every image Strato writes passes `qemu-img check` cleanly and compares equal
 * to its source with `qemu-img compare` (qemu-img 7.2 is the oracle).
 */
import t from 'tap'
import type { TestContext } from '../../helpers/tap.js'
import {
  commitImage, convertImage, createImage, createImageSync, imageInfo, readImage, resizeImage, rebaseUnsafe,
  writeImage, writeZeroes, fileSizes,
} from '../../../native/index.js'
import { makeRawImage, qemuImg, qemuImgOk, tempDir, randomBytes, prng } from '../../fixtures/images.js'

const tmp = tempDir()
t.teardown(tmp.cleanup)
const SIZE = 24 * 1024 * 1024 + 4096 * 3 + 512 // not cluster-aligned on purpose
const src = tmp.path('src.raw')
makeRawImage(src, SIZE, { seed: 7, count: 30, maxSegment: 300 * 1024 })

function qemuClean(t: TestContext, file: string): void {
  const r = qemuImg('check', '--output=json', file)
  t.equal(r.code, 0, `qemu-img check ${file} exit 0 (${r.stderr.trim()})`)
  const j = JSON.parse(r.stdout) as Record<string, number>
  t.notOk(j['corruptions'], 'no corruptions')
  t.notOk(j['leaks'], 'no leaks')
}
function qemuSame(t: TestContext, a: string, b: string, fa = 'raw', fb = 'qcow2'): void {
  const r = qemuImg('compare', '-f', fa, '-F', fb, a, b)
  t.equal(r.code, 0, `qemu-img compare ${a} ${b}: ${r.stdout.trim()} ${r.stderr.trim()}`)
}

const variants: Array<{ name: string; opts: Parameters<typeof convertImage>[2] }> = [
  { name: 'v3-64k', opts: {} },
  { name: 'v3-512', opts: { clusterSize: 512 } },
  { name: 'v3-4k', opts: { clusterSize: 4096 } },
  { name: 'v3-2m', opts: { clusterSize: 2 * 1024 * 1024 } },
  { name: 'v2-64k', opts: { version: 2 } },
  { name: 'zlib-64k', opts: { compress: true } },
  { name: 'zlib-4k', opts: { compress: true, clusterSize: 4096 } },
  { name: 'zstd-64k', opts: { compress: true, compressionType: 'zstd' } },
  { name: 'zlib-v2', opts: { compress: true, version: 2 } },
  { name: 'zstd-2m', opts: { compress: true, compressionType: 'zstd', clusterSize: 2 * 1024 * 1024 } },
  { name: 'refcount1', opts: { refcountBits: 1, clusterSize: 4096 } },
  { name: 'refcount8-zlib', opts: { refcountBits: 8, compress: true, clusterSize: 1024 } },
  { name: 'refcount64', opts: { refcountBits: 64 } },
  { name: 'refcount1-zstd-512', opts: { refcountBits: 1, compress: true, compressionType: 'zstd', clusterSize: 512 } },
  { name: 'zlib-512', opts: { compress: true, clusterSize: 512 } },
]

for (const v of variants) {
  t.test(`raw -> qcow2 ${v.name}`, async (t) => {
    const out = tmp.path(`${v.name}.qcow2`)
    await convertImage(src, out, { srcFormat: 'raw', dstFormat: 'qcow2', ...v.opts })
    qemuClean(t, out)
    const fsz = await fileSizes(out)
    t.ok(fsz.allocated <= fsz.apparent + 65536, `no blocks left allocated past the end (${fsz.allocated} vs ${fsz.apparent})`)
    qemuSame(t, src, out)
    const info = JSON.parse(qemuImgOk('info', '--output=json', out)) as { 'virtual-size': number; 'cluster-size': number; 'format-specific': { data: { compat: string; 'compression-type': string } } }
    t.equal(info['virtual-size'], SIZE)
    t.equal(info['cluster-size'], v.opts?.clusterSize ?? 65536)
    t.equal(info['format-specific'].data.compat, v.opts?.version === 2 ? '0.10' : '1.1')
    t.equal(info['format-specific'].data['compression-type'], v.opts?.compressionType ?? 'zlib')
    // and back to raw, sparse
    const back = tmp.path(`${v.name}.raw`)
    await convertImage(out, back, { srcFormat: 'qcow2', dstFormat: 'raw' })
    qemuSame(t, src, back, 'raw', 'raw')
    const s = await fileSizes(back)
    t.equal(s.apparent, SIZE)
    t.ok(s.allocated < SIZE / 2, 'raw output is sparse')
  })
}

t.test('zero runs are never written; explicit zeros do not allocate', async (t) => {
  const z = tmp.path('zeros.raw')
  const fd = await import('node:fs').then((fs) => fs.openSync(z, 'w'))
  const fs = await import('node:fs')
  fs.writeSync(fd, Buffer.alloc(4 << 20), 0, 4 << 20, 0) // 4 MiB of explicit zeros
  fs.writeSync(fd, Buffer.from('x'), 0, 1, 5 << 20)
  fs.closeSync(fd)
  const out = tmp.path('zeros.qcow2')
  await convertImage(z, out, { dstFormat: 'qcow2' })
  const info = JSON.parse(qemuImgOk('check', '--output=json', out)) as { 'allocated-clusters': number }
  t.equal(info['allocated-clusters'], 1, 'only the cluster with data is allocated')
  const raw = tmp.path('zeros-out.raw')
  await convertImage(z, raw, {})
  const s = await fileSizes(raw)
  t.ok(s.allocated <= 64 * 1024, `raw copy allocates ${s.allocated} bytes`)
  qemuSame(t, z, raw, 'raw', 'raw')
})

t.test('qcow2 -> qcow2, recompress and -B backing output', async (t) => {
  const a = tmp.path('v3-64k.qcow2')
  const b = tmp.path('recomp.qcow2')
  await convertImage(a, b, { srcFormat: 'qcow2', dstFormat: 'qcow2', compress: true, compressionType: 'zstd', clusterSize: 16384 })
  qemuClean(t, b)
  qemuSame(t, src, b)
  // overlay with changes, then convert only the top layer against the same backing file
  const ov = tmp.path('ov.qcow2')
  await createImage(ov, 'qcow2', { backingFile: 'v3-64k.qcow2', backingFormat: 'qcow2' })
  await writeImage(ov, 1000, Buffer.from('overlay-data'))
  await writeZeroes(ov, 2 << 20, 1 << 20)
  const flat = tmp.path('ov-flat.raw')
  await convertImage(ov, flat, {})
  const top = tmp.path('ov-top.qcow2')
  await convertImage(ov, top, { dstFormat: 'qcow2', backingFile: 'v3-64k.qcow2', backingFormat: 'qcow2' })
  qemuClean(t, top)
  qemuSame(t, flat, top)
  const topv2 = tmp.path('ov-top2.qcow2')
  await convertImage(ov, topv2, { dstFormat: 'qcow2', version: 2, backingFile: 'v3-64k.qcow2', backingFormat: 'qcow2' })
  qemuClean(t, topv2)
  qemuSame(t, flat, topv2)
  const alloc = JSON.parse(qemuImgOk('check', '--output=json', top)) as { 'allocated-clusters': number }
  t.ok(alloc['allocated-clusters'] <= 2, 'only the top layer was copied')
})

t.test('create, overlay chain, writes, resize, rebase, commit', async (t) => {
  const base = tmp.path('base.qcow2')
  await createImage(base, 'qcow2', { size: 8 << 20 })
  qemuClean(t, base)
  const q = JSON.parse(qemuImgOk('info', '--output=json', base)) as { 'virtual-size': number }
  t.equal(q['virtual-size'], 8 << 20)
  const rand = prng(3)
  const blob = randomBytes(rand, 300000)
  await writeImage(base, 12345, blob)
  const mid = tmp.path('mid.qcow2')
  createImageSync(mid, 'qcow2', { backingFile: 'base.qcow2', backingFormat: 'qcow2' })
  const top = tmp.path('top.qcow2')
  createImageSync(top, 'qcow2', { backingFile: mid, backingFormat: 'qcow2', clusterSize: 4096 })
  await writeImage(mid, 100000, Buffer.from('middle layer'))
  await writeImage(top, 4096 * 3 + 7, Buffer.from('top layer'))
  for (const f of [base, mid, top]) qemuClean(t, f)
  const viaQemu = tmp.path('top-qemu.raw')
  qemuImgOk('convert', '-O', 'raw', top, viaQemu)
  const viaUs = tmp.path('top-us.raw')
  await convertImage(top, viaUs, {})
  qemuSame(t, viaQemu, viaUs, 'raw', 'raw')
  const got = await readImage(top, 12345, blob.length)
  t.ok(got.subarray(0, 100000 - 12345).equals(blob.subarray(0, 100000 - 12345)), 'read falls through the chain')
  // resize
  await resizeImage(top, 16 << 20)
  qemuClean(t, top)
  t.equal((await imageInfo(top))[0]?.virtualSize, 16 << 20)
  await t.rejects(resizeImage(top, 1 << 20), { name: 'InvalidArgument' }, 'shrink needs --shrink')
  await writeImage(top, 15 << 20, Buffer.from('tail data'))
  await t.rejects(resizeImage(top, 1 << 20, { shrink: true }), { name: 'FailedPrecondition' }, 'allocated tail')
  await writeZeroes(top, 15 << 20, 65536)
  await resizeImage(top, 15 << 20, { shrink: true })
  t.equal((await imageInfo(top))[0]?.virtualSize, 15 << 20)
  // a big grow needs a bigger L1 table
  const small = tmp.path('small.qcow2')
  await createImage(small, 'qcow2', { size: 1 << 20, clusterSize: 512 })
  await writeImage(small, 0, Buffer.from('hello'))
  await resizeImage(small, 64 << 20)
  qemuClean(t, small)
  t.equal((await readImage(small, 0, 5)).toString(), 'hello')
  // rebase -u
  await rebaseUnsafe(top, 'mid.qcow2', 'qcow2')
  const ti = JSON.parse(qemuImgOk('info', '--output=json', top)) as { 'backing-filename': string; 'backing-filename-format': string }
  t.equal(ti['backing-filename'], 'mid.qcow2')
  t.equal(ti['backing-filename-format'], 'qcow2')
  qemuClean(t, top)
  // commit top into mid: content of the chain unchanged, top emptied
  const before = tmp.path('before.raw')
  await convertImage(top, before, {})
  await commitImage(top)
  qemuClean(t, top)
  qemuClean(t, mid)
  const afterMid = tmp.path('after-mid.raw')
  qemuImgOk('convert', '-O', 'raw', mid, afterMid)
  const r = qemuImg('compare', '-f', 'raw', '-F', 'raw', before, afterMid)
  t.equal(r.code, 0, `commit wrote the top layer into its backing file: ${r.stdout}`)
  const m = JSON.parse(qemuImgOk('map', '--output=json', top)) as Array<{ depth: number; data: boolean }>
  t.ok(m.every((e) => e.depth > 0 || !e.data), 'top is empty after commit')
})

t.test('v2 zero writes and raw targets', async (t) => {
  const v2 = tmp.path('v2.qcow2')
  await createImage(v2, 'qcow2', { size: 4 << 20, version: 2 })
  await writeImage(v2, 0, Buffer.alloc(200000, 0xab))
  await writeZeroes(v2, 65536, 65536)
  await writeZeroes(v2, 100, 1000)
  qemuClean(t, v2)
  const r = await readImage(v2, 0, 200000)
  const want = Buffer.alloc(200000, 0xab)
  want.fill(0, 65536, 131072)
  want.fill(0, 100, 1100)
  t.ok(r.equals(want), 'v2 zero writes read back')
  const raw = tmp.path('created.raw')
  await createImage(raw, 'raw', { size: 1 << 20 })
  t.equal((await fileSizes(raw)).apparent, 1 << 20)
})

t.test('raw -> raw with -S 0 copies every byte (copy_file_range)', async (t) => {
  const out = tmp.path('full.raw')
  await convertImage(src, out, { srcFormat: 'raw', dstFormat: 'raw', minSparse: 0 })
  qemuSame(t, src, out, 'raw', 'raw')
  const sz = await fileSizes(out)
  t.equal(sz.apparent, SIZE)
  t.ok(sz.allocated >= SIZE, 'fully allocated')
  const q = tmp.path('full.qcow2')
  await convertImage(src, q, { srcFormat: 'raw', dstFormat: 'qcow2', minSparse: 0 })
  qemuClean(t, q)
  qemuSame(t, src, q)
  const back = tmp.path('full-back.raw')
  await convertImage(q, back, { srcFormat: 'qcow2', dstFormat: 'raw', minSparse: 0 })
  qemuSame(t, src, back, 'raw', 'raw')
})

t.test('unknown header extensions survive a header rewrite', async (t) => {
  const img = tmp.path('ext.qcow2')
  qemuImgOk('create', '-q', '-f', 'qcow2', img, '4M')
  const fs = await import('node:fs')
  const buf = fs.readFileSync(img)
  // find the end-of-extensions marker after the 112-byte header and insert an unknown extension there
  let off = 112
  while (buf.readUInt32BE(off) !== 0) off += 8 + Math.ceil(buf.readUInt32BE(off + 4) / 8) * 8
  const ext = Buffer.alloc(24)
  ext.writeUInt32BE(0x5354524f, 0) // 'STRO'
  ext.writeUInt32BE(11, 4)
  ext.write('hello-world', 8, 'latin1')
  const fd = fs.openSync(img, 'r+')
  fs.writeSync(fd, ext, 0, 24, off)
  fs.writeSync(fd, Buffer.alloc(8), 0, 8, off + 24)
  fs.closeSync(fd)
  t.equal(qemuImg('check', img).code, 0, 'qemu ignores it')
  await resizeImage(img, 8 << 20)
  await rebaseUnsafe(img, 'base.qcow2', 'qcow2')
  const after = fs.readFileSync(img).subarray(0, 65536)
  t.ok(after.includes(Buffer.from('hello-world')), 'extension data preserved')
  t.ok(after.includes(Buffer.from([0x53, 0x54, 0x52, 0x4f, 0, 0, 0, 11])), 'extension header preserved')
  const info = JSON.parse(qemuImgOk('info', '--output=json', img)) as { 'virtual-size': number; 'backing-filename': string }
  t.equal(info['virtual-size'], 8 << 20)
  t.equal(info['backing-filename'], 'base.qcow2')
  await rebaseUnsafe(img, '')
  t.equal(qemuImg('check', img).code, 0)
  t.notOk((JSON.parse(qemuImgOk('info', '--output=json', img)) as Record<string, unknown>)['backing-filename'], 'backing removed')
})

t.test('refcount table growth (512-byte clusters, > 8 MiB of data)', async (t) => {
  const big = tmp.path('dense.raw')
  const rand = prng(99)
  const fs = await import('node:fs')
  fs.writeFileSync(big, randomBytes(rand, 12 << 20))
  const out = tmp.path('dense-512.qcow2')
  await convertImage(big, out, { srcFormat: 'raw', dstFormat: 'qcow2', clusterSize: 512 })
  qemuClean(t, out)
  qemuSame(t, big, out)
  // and growing it further through the general write path
  await resizeImage(out, 20 << 20)
  await writeImage(out, 13 << 20, randomBytes(rand, 3 << 20))
  qemuClean(t, out)
  const h = fs.readFileSync(out).subarray(0, 64)
  t.ok(h.readUInt32BE(56) > 1, `refcount table grew to ${h.readUInt32BE(56)} clusters`)
})

t.test('huge sparse images stay cheap (1 PiB qcow2, 8 TiB raw)', async (t) => {
  const PiB = 2 ** 50
  const huge = tmp.path('huge.qcow2')
  await createImage(huge, 'qcow2', { size: PiB })
  await writeImage(huge, PiB - 65536, Buffer.from('at the very end'))
  await writeImage(huge, 12345, Buffer.from('at the start'))
  const t0 = Date.now()
  const copy = tmp.path('huge-copy.qcow2')
  await convertImage(huge, copy, { srcFormat: 'qcow2', dstFormat: 'qcow2' })
  qemuClean(t, copy)
  // (qemu-img compare needs ~10 s on an empty petabyte; the engine's compare skips unallocated ranges)
  const { compareImages } = await import('../../../native/index.js')
  t.ok((await compareImages(huge, copy)).identical, 'compare equal')
  t.equal((await readImage(copy, PiB - 65536, 15)).toString(), 'at the very end')
  const m = await (await import('../../../native/index.js')).mapImage(copy)
  t.equal(m.filter((e) => e.data).length, 2, 'two data extents')
  t.ok(Date.now() - t0 < 120_000, `fast: no full scan of the petabyte (${Date.now() - t0} ms)`)
  const tb8 = tmp.path('big.qcow2')
  await createImage(tb8, 'qcow2', { size: 8 * 2 ** 40 })
  await writeImage(tb8, 2 ** 42, Buffer.from('middle'))
  const raw = tmp.path('big.raw')
  await convertImage(tb8, raw, { srcFormat: 'qcow2', dstFormat: 'raw' })
  const s = await fileSizes(raw)
  t.equal(s.apparent, 8 * 2 ** 40)
  t.ok(s.allocated <= 1 << 20, 'sparse')
  t.equal((await readImage(raw, 2 ** 42, 6, 'raw')).toString(), 'middle')
})

/**
 * `strato-img check` agrees with `qemu-img check` on images damaged on
 * purpose (same leak/corruption counts, same exit codes), and `-r all`
 * repairs them so that qemu-img finds them clean with unchanged content.
 */
import t from 'tap'
import { copyFileSync } from 'node:fs'
import { checkImage, convertImage, writeImage, imageInfo } from '../../../native/index.js'
import { firstL2Entry, makeRawImage, peek, poke, qcow2Header, qemuImg, qemuImgOk, run, stratoImg, tempDir, u64 } from '../../fixtures/images.js'

const tmp = tempDir()
t.teardown(tmp.cleanup)
const src = tmp.path('src.raw')
makeRawImage(src, 8 << 20, { seed: 5, count: 12 })
const good = tmp.path('good.qcow2')
qemuImgOk('convert', '-f', 'raw', '-O', 'qcow2', src, good)

function refcountAt(path: string, cluster: number): number {
  const h = qcow2Header(path)
  const blk = Number(peek(path, h.rtOffset, 8).readBigUInt64BE())
  return blk + cluster * 2
}

type Damage = (p: string) => void
const damages: Array<[string, Damage, number]> = [
  ['cleared L2 entry (leak)', (p) => poke(p, firstL2Entry(p).at, u64(0n)), 3],
  ['zeroed data refcount (corruption)', (p) => {
    const e = firstL2Entry(p)
    const cl = Number(e.value & 0x00fffffffffffe00n) >> 16
    poke(p, refcountAt(p, cl), Buffer.from([0, 0]))
  }, 2],
  ['refcount 2 on a data cluster', (p) => {
    const e = firstL2Entry(p)
    const cl = Number(e.value & 0x00fffffffffffe00n) >> 16
    poke(p, refcountAt(p, cl), Buffer.from([0, 2]))
  }, 2],
  ['COPIED cleared on an L2 entry', (p) => {
    const e = firstL2Entry(p)
    poke(p, e.at, u64(e.value & ~(1n << 63n)))
  }, 2],
  ['COPIED cleared on an L1 entry', (p) => {
    const h = qcow2Header(p)
    const v = peek(p, h.l1Offset, 8).readBigUInt64BE()
    poke(p, h.l1Offset, u64(v & ~(1n << 63n)))
  }, 2],
  ['refcount for a cluster past the end of the file (ignored by both)', (p) => {
    poke(p, refcountAt(p, 400), Buffer.from([0, 1]))
  }, 0],
  ['dangling refcount inside the file (leak)', (p) => {
    // the L1 table lives in one cluster of which only 8 bytes are used: mark the
    // cluster after the last one as used, then extend the file over it
    const h = qcow2Header(p)
    const size = Number(run('stat', ['-c', '%s', p]).stdout.trim())
    const cl = Math.ceil(size / 65536)
    void h
    poke(p, refcountAt(p, cl), Buffer.from([0, 1]))
    poke(p, cl * 65536 + 65535, Buffer.from([0]))
  }, 3],
  ['two L2 entries share a data cluster', (p) => {
    const e = firstL2Entry(p)
    poke(p, e.at + 8 * 100, u64(e.value)) // entry 100 of the same table points at the same cluster
  }, 2],
  ['unaligned L2 table offset in the L1 table', (p) => {
    const h = qcow2Header(p)
    const v = peek(p, h.l1Offset, 8).readBigUInt64BE()
    poke(p, h.l1Offset, u64(v + 512n))
  }, 2],
  ['refcount block outside the image', (p) => {
    const h = qcow2Header(p)
    poke(p, h.rtOffset + 8, u64(0x7fff0000n))
  }, 2],
  ['unaligned data cluster offset', (p) => {
    const e = firstL2Entry(p)
    poke(p, e.at, u64(e.value + 512n))
  }, 2],
  ['corrupt bit only', (p) => {
    const b = peek(p, 72, 8)
    b[7] = (b[7] ?? 0) | 2
    poke(p, 72, b)
  }, 0],
]

for (const [name, damage, code] of damages) {
  t.test(name, async (t) => {
    const img = tmp.path(name.replace(/\W+/g, '-') + '.qcow2')
    copyFileSync(good, img)
    damage(img)
    const q = qemuImg('check', '--output=json', img)
    t.equal(q.code, code, `qemu-img check exit ${code}`)
    const qj = JSON.parse(q.stdout) as Record<string, number>
    const ours = await checkImage(img)
    t.equal(ours.corruptions, qj['corruptions'] ?? 0, 'same corruption count')
    t.equal(ours.leaks, qj['leaks'] ?? 0, 'same leak count')
    t.equal(ours.imageEndOffset, qj['image-end-offset'], 'same image end offset')
    t.equal(ours.allocatedClusters, qj['allocated-clusters'], 'same allocated clusters')
    // the CLI gives the same exit code
    const cli = stratoImg('check', img)
    t.equal(cli.code, code, `strato-img check exit ${code}`)
    // repair everything, then qemu-img agrees it is clean and the content is intact
    const fixed = await checkImage(img, 'all')
    t.equal(fixed.corruptions + fixed.leaks, 0, 'clean after -r all')
    const after = qemuImg('check', img)
    t.equal(after.code, 0, `qemu-img check after repair: ${after.stdout} ${after.stderr}`)
    const cmp = qemuImg('compare', '-f', 'raw', '-F', 'qcow2', src, img)
    // repairs that must drop a broken entry lose that entry's data, as with qemu-img
    if (!/^(cleared|unaligned|two L2)/.test(name)) t.equal(cmp.code, 0, 'content unchanged')
    t.notOk((await imageInfo(img))[0]?.corrupt, 'corrupt bit cleared')
  })
}

t.test('-r leaks repairs leaks only', async (t) => {
  const img = tmp.path('leaks-only.qcow2')
  copyFileSync(good, img)
  poke(img, firstL2Entry(img).at, u64(0n))
  const r = await checkImage(img, 'leaks')
  t.ok(r.repaired)
  t.equal(r.leaksFixed, 1)
  t.equal(r.leaks, 0)
  t.equal(qemuImg('check', img).code, 0)
})

t.test('a corrupt image cannot be opened for writing', async (t) => {
  const img = tmp.path('corrupt-w.qcow2')
  copyFileSync(good, img)
  const b = peek(img, 72, 8)
  b[7] = (b[7] ?? 0) | 2
  poke(img, 72, b)
  await t.rejects(writeImage(img, 0, Buffer.from('x')), { name: 'FailedPrecondition', message: /corrupt/ })
  // but it can be read
  const out = tmp.path('corrupt-read.raw')
  await convertImage(img, out, {})
  t.equal(qemuImg('compare', '-f', 'raw', '-F', 'raw', src, out).code, 0)
})

t.test('raw images have no check (exit 63)', async (t) => {
  const cli = stratoImg('check', '-f', 'raw', src)
  t.equal(cli.code, 63)
  t.equal(qemuImg('check', '-f', 'raw', src).code, 63)
})

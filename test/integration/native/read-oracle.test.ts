/**
 * Strato reads every qcow2 variant qemu-img writes with identical content:
 * v2/v3, each cluster size, refcount_bits 1-64, zlib and zstd, zero clusters,
 * backing chains and preallocation=metadata. qemu-img is the oracle.
 */
import t from 'tap'
import type { TestContext } from '../../helpers/tap.js'
import { compareImages, convertImage, imageInfo, mapImage, readImage, checkImage } from '../../../native/index.js'
import { makeRawImage, qemuImg, qemuImgOk, qemuIo, tempDir } from '../../fixtures/images.js'

const tmp = tempDir()
t.teardown(tmp.cleanup)
const SIZE = 12 * 1024 * 1024 + 1536
const src = tmp.path('src.raw')
makeRawImage(src, SIZE, { seed: 11, count: 24, maxSegment: 200 * 1024 })

async function readsLikeQemu(t: TestContext, img: string, name: string): Promise<void> {
  const ours = tmp.path(`${name}.ours.raw`)
  await convertImage(img, ours, { srcFormat: 'qcow2' })
  const theirs = tmp.path(`${name}.qemu.raw`)
  qemuImgOk('convert', '-f', 'qcow2', '-O', 'raw', img, theirs)
  const r = qemuImg('compare', '-f', 'raw', '-F', 'raw', '-s', theirs, ours)
  t.equal(r.code, 0, `${name}: our read equals qemu's (${r.stdout.trim()})`)
  const c = await compareImages(img, theirs, { formatA: 'qcow2', formatB: 'raw' })
  t.ok(c.identical, `${name}: compare via engine`)
  const chk = await checkImage(img)
  t.equal(chk.corruptions + chk.leaks, 0, `${name}: our check finds it clean`)
  const q = JSON.parse(qemuImgOk('check', '--output=json', img)) as Record<string, number>
  t.equal(chk.allocatedClusters, q['allocated-clusters'], `${name}: allocated clusters`)
  t.equal(chk.fragmentedClusters, q['fragmented-clusters'] ?? 0, `${name}: fragmented clusters`)
  t.equal(chk.compressedClusters, q['compressed-clusters'] ?? 0, `${name}: compressed clusters`)
  t.equal(chk.imageEndOffset, q['image-end-offset'], `${name}: image end offset`)
}

const cases: Array<[string, string[]]> = [
  ['v3-64k', []],
  ['v2', ['-o', 'compat=0.10']],
  ['cs512', ['-o', 'cluster_size=512']],
  ['cs1k', ['-o', 'cluster_size=1024']],
  ['cs4k', ['-o', 'cluster_size=4096']],
  ['cs32k', ['-o', 'cluster_size=32768']],
  ['cs256k', ['-o', 'cluster_size=262144']],
  ['cs2m', ['-o', 'cluster_size=2097152']],
  ['zlib', ['-c']],
  ['zlib-4k', ['-c', '-o', 'cluster_size=4096']],
  ['zlib-v2', ['-c', '-o', 'compat=0.10']],
  ['zstd', ['-c', '-o', 'compression_type=zstd']],
  ['zstd-2m', ['-c', '-o', 'compression_type=zstd,cluster_size=2097152']],
  ['prealloc-meta', ['-o', 'preallocation=metadata']],
]
for (const bits of [1, 2, 4, 8, 16, 32, 64]) cases.push([`refcount${bits}`, ['-o', `refcount_bits=${bits}`]])

for (const [name, args] of cases) {
  t.test(`qemu ${name}`, async (t) => {
    const img = tmp.path(`${name}.qcow2`)
    qemuImgOk('convert', '-f', 'raw', '-O', 'qcow2', ...args, src, img)
    await readsLikeQemu(t, img, name)
    const info = (await imageInfo(img))[0]!
    const q = JSON.parse(qemuImgOk('info', '--output=json', img)) as { 'virtual-size': number; 'cluster-size': number; 'format-specific': { data: { 'refcount-bits': number; 'compression-type': string } } }
    t.equal(info.virtualSize, q['virtual-size'])
    t.equal(info.clusterSize, q['cluster-size'])
    t.equal(info.refcountBits, q['format-specific'].data['refcount-bits'])
    t.equal(info.compressionType, q['format-specific'].data['compression-type'])
  })
}

t.test('zero clusters, discards and a 3-deep backing chain', async (t) => {
  const base = tmp.path('chain-base.qcow2')
  qemuImgOk('convert', '-f', 'raw', '-O', 'qcow2', src, base)
  const mid = tmp.path('chain-mid.qcow2')
  qemuImgOk('create', '-q', '-f', 'qcow2', '-b', 'chain-base.qcow2', '-F', 'qcow2', '-o', 'cluster_size=4096', mid)
  qemuIo(mid, 'qcow2', 'write -P 0x5a 1M 300k', 'write -z 2M 1M', 'write -z 33k 7k')
  const top = tmp.path('chain-top.qcow2')
  qemuImgOk('create', '-q', '-f', 'qcow2', '-b', mid, '-F', 'qcow2', top)
  qemuIo(top, 'qcow2', 'write -P 0x33 1500k 100k', 'write -z 5M 128k', 'discard 6M 64k', 'write -c -P 0x77 8M 64k')
  await readsLikeQemu(t, top, 'chain')
  const chain = await imageInfo(top, 'qcow2', { backingChain: true })
  t.equal(chain.length, 3, 'three layers')
  const b = await readImage(top, 1500 * 1024, 4)
  t.same([...b], [0x33, 0x33, 0x33, 0x33])
  // map agrees with qemu-img map on data/zero coverage
  const ours = await mapImage(top)
  const theirs = JSON.parse(qemuImgOk('map', '--output=json', top)) as Array<{ start: number; length: number; data: boolean; zero: boolean; depth: number }>
  const dataAt = (m: Array<{ start: number; length: number; data: boolean; zero: boolean }>, off: number) => {
    const e = m.find((x) => x.start <= off && off < x.start + x.length)
    return e ? `${e.data}/${e.zero}` : 'none'
  }
  for (let off = 0; off < SIZE; off += 64 * 1024) t.equal(dataAt(ours, off), dataAt(theirs, off), `map at ${off}`, { diagnostic: false })
  // v2 overlay on raw backing
  const raw = tmp.path('chain.raw')
  qemuImgOk('convert', '-O', 'raw', top, raw)
  const v2 = tmp.path('v2-over-raw.qcow2')
  qemuImgOk('create', '-q', '-f', 'qcow2', '-o', 'compat=0.10', '-b', 'chain.raw', '-F', 'raw', v2)
  qemuIo(v2, 'qcow2', 'write -P 0x11 0 1k', 'write -z 64k 64k')
  await readsLikeQemu(t, v2, 'v2-over-raw')
})

t.test('internal snapshots: read the active layer, check counts them', async (t) => {
  const img = tmp.path('snap.qcow2')
  qemuImgOk('create', '-q', '-f', 'qcow2', img, '4M')
  qemuIo(img, 'qcow2', 'write -P 1 0 1M')
  qemuImgOk('snapshot', '-c', 'one', img)
  qemuIo(img, 'qcow2', 'write -P 2 512k 1M')
  qemuImgOk('snapshot', '-c', 'two', img)
  qemuIo(img, 'qcow2', 'write -P 3 3M 64k')
  await readsLikeQemu(t, img, 'snapshots')
  t.equal((await imageInfo(img))[0]?.snapshots, 2)
})

t.test('map output matches qemu-img map for a plain image', async (t) => {
  const img = tmp.path('v3-64k.qcow2')
  const ours = await mapImage(img, 'qcow2')
  const theirs = JSON.parse(qemuImgOk('map', '--output=json', img)) as unknown[]
  t.same(ours, theirs)
})

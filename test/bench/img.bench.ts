/**
 * npm run bench:img — Strato's native engine vs qemu-img on the same files.
 *
 * Builds a 4 GiB sparse raw image with ~1.2 GiB of scattered data (random,
 * text-like and explicit zeros), then times, for both tools:
 * raw→qcow2, qcow2→raw, raw→qcow2 -c (zlib), raw→qcow2 -c zstd,
 * and overlay creation. Prints seconds and ratios (qemu / strato: >1 means
 * Strato is faster). Outputs are checked with qemu-img compare.
 *
 * Env: BENCH_SIZE_GIB (default 4), BENCH_DATA_GIB (default 1.2), BENCH_DIR.
 */
import { spawnSync } from 'node:child_process'
import { closeSync, ftruncateSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomFillSync } from 'node:crypto'
import { convertImage, createImageSync } from '../../native/index.js'

const GiB = 1024 ** 3
const MiB = 1024 ** 2
const size = Math.round(Number(process.env['BENCH_SIZE_GIB'] ?? 4) * GiB)
const dataBytes = Math.round(Number(process.env['BENCH_DATA_GIB'] ?? 1.2) * GiB)
const dir = mkdtempSync(join(process.env['BENCH_DIR'] ?? tmpdir(), 'strato-bench-'))
process.on('exit', () => rmSync(dir, { recursive: true, force: true }))
process.on('SIGINT', () => process.exit(130))

function textBlock(n: number, seed: number): Buffer {
  const words = ['the', 'cloud', 'image', 'server', 'kernel', 'boot', 'disk', 'network', 'volume', 'flavor', 'and',
    'of', 'to', 'strato', 'qcow2', 'cluster', 'compute', 'host', 'nova', 'glance', 'keystone', 'neutron']
  let x = seed
  const parts: string[] = []
  let len = 0
  while (len < n) {
    x = (x * 1103515245 + 12345) >>> 0
    const w = words[x % words.length] as string
    const s = (x >>> 8) % 13 === 0 ? `${w} ${x % 1000}\n` : w + ' '
    parts.push(s)
    len += s.length
  }
  return Buffer.from(parts.join('').slice(0, n))
}

function buildSource(path: string): void {
  const fd = openSync(path, 'w')
  ftruncateSync(fd, size)
  const seg = 4 * MiB
  const nseg = Math.ceil(dataBytes / seg)
  const stride = Math.floor(size / nseg)
  const text = textBlock(seg, 7)
  const rnd = Buffer.allocUnsafe(seg)
  const zeros = Buffer.alloc(seg)
  for (let i = 0; i < nseg; i++) {
    // scattered, not aligned to clusters
    const off = i * stride + ((i * 7919 * 512 + 333) % (stride - seg))
    const kind = i % 5
    let buf: Buffer
    if (kind < 2) { randomFillSync(rnd); buf = rnd }
    else if (kind < 4) { buf = Buffer.concat([text.subarray(i % 4096), text.subarray(0, i % 4096)]) }
    else buf = zeros
    writeSync(fd, buf, 0, seg, off)
  }
  closeSync(fd)
}

function sh(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`)
}

function sync(): void {
  spawnSync('sync')
}

/** Best of `runs` (default BENCH_RUNS or 3); `reset` runs before each (untimed), then a sync. */
async function time(fn: () => Promise<void> | void, reset?: () => void): Promise<number> {
  const runs = Number(process.env['BENCH_RUNS'] ?? 3)
  let best = Infinity
  for (let i = 0; i < runs; i++) {
    reset?.()
    sync()
    const t0 = process.hrtime.bigint()
    await fn()
    const dt = Number(process.hrtime.bigint() - t0) / 1e9
    if (process.env['BENCH_VERBOSE']) console.log(`  run ${i}: ${dt.toFixed(3)} s`)
    best = Math.min(best, dt)
  }
  return best
}

function same(a: string, fa: string, b: string, fb: string): void {
  const r = spawnSync('qemu-img', ['compare', '-f', fa, '-F', fb, a, b], { encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`outputs differ: ${a} ${b}: ${r.stdout} ${r.stderr}`)
}

interface Row { name: string; qemu: number; strato: number; target: number }
const rows: Row[] = []

async function main(): Promise<void> {
  const src = join(dir, 'src.raw')
  console.log(`building ${size / GiB} GiB raw with ~${(dataBytes / GiB).toFixed(2)} GiB scattered data in ${dir} ...`)
  buildSource(src)
  const qcowQ = join(dir, 'q.qcow2')
  const qcowS = join(dir, 's.qcow2')
  const rawQ = join(dir, 'q.raw')
  const rawS = join(dir, 's.raw')

  // raw -> qcow2
  const t1q = await time(() => sh('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', src, qcowQ]), () => rmSync(qcowQ, { force: true }))
  const t1s = await time(() => convertImage(src, qcowS, { srcFormat: 'raw', dstFormat: 'qcow2' }), () => rmSync(qcowS, { force: true }))
  same(src, 'raw', qcowS, 'qcow2')
  rows.push({ name: 'raw→qcow2', qemu: t1q, strato: t1s, target: 1.3 })

  // qcow2 -> raw (each tool from the same source: qemu's qcow2)
  const t2q = await time(() => sh('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', qcowQ, rawQ]), () => rmSync(rawQ, { force: true }))
  rmSync(rawQ, { force: true })
  const t2s = await time(() => convertImage(qcowQ, rawS, { srcFormat: 'qcow2', dstFormat: 'raw' }), () => rmSync(rawS, { force: true }))
  same(src, 'raw', rawS, 'raw')
  rmSync(rawS, { force: true })
  rmSync(qcowQ, { force: true })
  rmSync(qcowS, { force: true })
  rows.push({ name: 'qcow2→raw', qemu: t2q, strato: t2s, target: 1.3 })

  // -c zlib
  const t3q = await time(() => sh('qemu-img', ['convert', '-c', '-f', 'raw', '-O', 'qcow2', src, qcowQ]), () => rmSync(qcowQ, { force: true }))
  const t3s = await time(() => convertImage(src, qcowS, { srcFormat: 'raw', dstFormat: 'qcow2', compress: true }), () => rmSync(qcowS, { force: true }))
  same(src, 'raw', qcowS, 'qcow2')
  const szQ3 = Number(spawnSync('stat', ['-c', '%s', qcowQ], { encoding: 'utf8' }).stdout)
  const szS3 = Number(spawnSync('stat', ['-c', '%s', qcowS], { encoding: 'utf8' }).stdout)
  rmSync(qcowQ, { force: true })
  rmSync(qcowS, { force: true })
  rows.push({ name: '-c zlib', qemu: t3q, strato: t3s, target: 1.8 })

  // -c zstd
  const t4q = await time(() => sh('qemu-img', ['convert', '-c', '-o', 'compression_type=zstd', '-f', 'raw', '-O', 'qcow2', src, qcowQ]), () => rmSync(qcowQ, { force: true }))
  const t4s = await time(() => convertImage(src, qcowS, { srcFormat: 'raw', dstFormat: 'qcow2', compress: true, compressionType: 'zstd' }), () => rmSync(qcowS, { force: true }))
  same(src, 'raw', qcowS, 'qcow2')
  const szQ4 = Number(spawnSync('stat', ['-c', '%s', qcowQ], { encoding: 'utf8' }).stdout)
  const szS4 = Number(spawnSync('stat', ['-c', '%s', qcowS], { encoding: 'utf8' }).stdout)
  rmSync(qcowQ, { force: true })
  rmSync(qcowS, { force: true })
  rows.push({ name: '-c zstd', qemu: t4q, strato: t4s, target: 1.0 })

  // overlay creation
  const base = join(dir, 'base.qcow2')
  sh('qemu-img', ['create', '-f', 'qcow2', base, '4G'])
  const N = 200
  const tq = await time(() => {
    for (let i = 0; i < 20; i++) rmSync(join(dir, `oq${i}.qcow2`), { force: true })
    for (let i = 0; i < 20; i++) sh('qemu-img', ['create', '-f', 'qcow2', '-b', base, '-F', 'qcow2', join(dir, `oq${i}.qcow2`)])
  })
  const ts = await time(() => {
    for (let i = 0; i < N; i++) createImageSync(join(dir, `os${i}.qcow2`), 'qcow2', { backingFile: base, backingFormat: 'qcow2' })
  })
  const perQ = tq / 20
  const perS = ts / N

  console.log('')
  console.log('operation      qemu-img (s)  strato (s)  ratio   target  ok')
  for (const r of rows) {
    const ratio = r.qemu / r.strato
    console.log(`${r.name.padEnd(14)} ${r.qemu.toFixed(3).padStart(12)} ${r.strato.toFixed(3).padStart(11)} ${ratio.toFixed(2).padStart(6)}x ${('≥' + r.target + 'x').padStart(7)}  ${ratio >= r.target ? 'yes' : 'NO'}`)
  }
  console.log(`overlay create  qemu-img ${(perQ * 1000).toFixed(2)} ms/process, strato ${(perS * 1000).toFixed(3)} ms in-process (target <1 ms: ${perS < 0.001 ? 'yes' : 'NO'})`)
  console.log(`compressed sizes: zlib qemu ${(szQ3 / MiB).toFixed(0)} MiB vs strato ${(szS3 / MiB).toFixed(0)} MiB; zstd qemu ${(szQ4 / MiB).toFixed(0)} MiB vs strato ${(szS4 / MiB).toFixed(0)} MiB`)
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err)
  process.exitCode = 1
})

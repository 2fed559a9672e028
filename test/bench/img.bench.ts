/**
 * npm run bench:img — the `strato-img` command against `qemu-img`, both run
 * the way a user runs them: as processes started from a shell.
 *
 * strato-img is this checkout's bin (native/build/strato-img, the command
 * `npm run setup` puts on PATH: a native front that runs convert on the
 * engine and execs the Node CLI, dist/cli/strato-img.js, for the rest),
 * never an in-process call, npx or tsx. Start-up is reported on its own:
 * `strato-img --version` (which goes through Node) and `node -e 0`.
 *
 * Source: a deterministic sparse raw (default 4 GiB virtual, ~1.2 GiB of data
 * in 4 MiB segments at unaligned offsets: 2/5 pseudo-random (AES-CTR of a
 * fixed key), 2/5 text-like, 1/5 explicit zeros). For each operation —
 * raw→qcow2, qcow2→raw (from a qcow2 qemu-img made), `-c` zlib, `-c` zstd —
 * the two tools alternate (which goes first alternates too); before each run
 * the previous output is removed, `sync` runs and, with BENCH_CACHE=cold, the
 * page cache is dropped (`echo 3 > /proc/sys/vm/drop_caches`); warm (the
 * default) leaves the source in the page cache for both. Figures: median of
 * BENCH_RUNS (default 5) wall-clock times and min–max, user+sys CPU medians.
 * Every output is checked against the source with `qemu-img compare` and
 * strato's qcow2 outputs with `qemu-img check`, so a fast wrong convert fails.
 *
 * Last, overlay creation as the agent does it (in-process, no process start)
 * against a `qemu-img create -b` process, per overlay.
 *
 * Env: BENCH_SIZE_GIB (4), BENCH_DATA_GIB (1.2), BENCH_RUNS (5), BENCH_CACHE
 * (warm|cold), BENCH_DIR (a directory on the filesystem to measure; default
 * the OS temp dir), BENCH_OPS (comma-separated subset: raw2qcow2,qcow22raw,zlib,zstd),
 * BENCH_VERBOSE=1 (every run).
 */
import { spawnSync } from 'node:child_process'
import { createCipheriv } from 'node:crypto'
import {
  accessSync, closeSync, constants, existsSync, ftruncateSync, mkdtempSync, openSync, realpathSync, rmSync, statSync,
  writeFileSync, writeSync,
} from 'node:fs'
import { cpus, tmpdir } from 'node:os'
import { delimiter, dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createImageSync } from '../../native/index.js'

const GiB = 1024 ** 3
const MiB = 1024 ** 2
const size = Math.round(Number(process.env['BENCH_SIZE_GIB'] ?? 4) * GiB)
const dataBytes = Math.round(Number(process.env['BENCH_DATA_GIB'] ?? 1.2) * GiB)
const runs = Math.max(1, Number(process.env['BENCH_RUNS'] ?? 5))
const cache = process.env['BENCH_CACHE'] === 'cold' ? 'cold' : 'warm'
const verbose = !!process.env['BENCH_VERBOSE']
const ops = new Set((process.env['BENCH_OPS'] ?? 'raw2qcow2,qcow22raw,zlib,zstd').split(','))
const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..')
const dir = mkdtempSync(join(process.env['BENCH_DIR'] ?? tmpdir(), 'strato-bench-'))
process.on('exit', () => rmSync(dir, { recursive: true, force: true }))
process.on('SIGINT', () => process.exit(130))

/** The strato-img command: PATH's when it is this checkout's, else the bin by absolute path. */
function stratoImgBin(): { path: string; via: string } {
  const own = join(root, 'native', 'build', 'strato-img')
  if (!existsSync(own)) throw new Error(`${own} is missing: run npm run setup`)
  accessSync(own, constants.X_OK)
  for (const d of (process.env['PATH'] ?? '').split(delimiter)) {
    const p = join(d, 'strato-img')
    if (d && existsSync(p) && realpathSync(p) === realpathSync(own)) return { path: p, via: 'PATH' }
  }
  return { path: own, via: 'absolute path (PATH has no strato-img of this checkout)' }
}

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

/** Same bytes on every run and machine: AES-CTR of zeros under a fixed key for the "random" parts. */
function buildSource(path: string): void {
  const fd = openSync(path, 'w')
  ftruncateSync(fd, size)
  const seg = 4 * MiB
  const nseg = Math.ceil(dataBytes / seg)
  const stride = Math.floor(size / nseg)
  if (stride <= seg) throw new Error('BENCH_DATA_GIB must be well below BENCH_SIZE_GIB')
  const text = textBlock(seg, 7)
  const zeros = Buffer.alloc(seg)
  const key = Buffer.alloc(16, 7)
  for (let i = 0; i < nseg; i++) {
    // scattered, not aligned to clusters
    const off = i * stride + ((i * 7919 * 512 + 333) % (stride - seg))
    const kind = i % 5
    let buf: Buffer
    if (kind < 2) {
      const iv = Buffer.alloc(16)
      iv.writeUInt32BE(i, 0)
      buf = createCipheriv('aes-128-ctr', key, iv).update(zeros)
    } else if (kind < 4) buf = Buffer.concat([text.subarray(i % 4096), text.subarray(0, i % 4096)])
    else buf = zeros
    writeSync(fd, buf, 0, seg, off)
  }
  closeSync(fd)
}

interface Sample { wall: number; cpu: number }

/** Runs a command as a process, timed from spawn to exit; CPU (user+sys) from GNU time. */
function timed(cmd: string, args: string[]): Sample {
  const t0 = process.hrtime.bigint()
  const r = spawnSync('/usr/bin/time', ['-f', 'TIME %U %S', cmd, ...args], { encoding: 'utf8', stdio: ['ignore', 'ignore', 'pipe'] })
  const wall = Number(process.hrtime.bigint() - t0) / 1e9
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr}`)
  const m = /TIME ([\d.]+) ([\d.]+)\s*$/.exec(r.stderr)
  return { wall, cpu: m ? Number(m[1]) + Number(m[2]) : NaN }
}

function run(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} (exit ${r.status}): ${r.stdout}${r.stderr}`)
  return r.stdout
}

function settle(): void {
  spawnSync('sync')
  if (cache === 'cold') writeFileSync('/proc/sys/vm/drop_caches', '3\n')
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const n = s.length
  return n % 2 ? (s[(n - 1) / 2] as number) : ((s[n / 2 - 1] as number) + (s[n / 2] as number)) / 2
}

interface Stats { med: number; min: number; max: number; cpu: number }
function stats(xs: Sample[]): Stats {
  const w = xs.map((x) => x.wall)
  return { med: median(w), min: Math.min(...w), max: Math.max(...w), cpu: median(xs.map((x) => x.cpu)) }
}

interface Op {
  key: string
  name: string
  target: number
  src: string
  srcFmt: 'raw' | 'qcow2'
  outFmt: 'raw' | 'qcow2'
  args: string[] // between `convert` and the file names, the same for both tools
}

interface Row { op: Op; strato: Stats; qemu: Stats; sizeS: number; sizeQ: number }

function bench(op: Op, strato: string): Row {
  const outS = join(dir, `out-strato.${op.outFmt}`)
  const outQ = join(dir, `out-qemu.${op.outFmt}`)
  const tools = [
    { name: 'strato', cmd: strato, out: outS, samples: [] as Sample[] },
    { name: 'qemu', cmd: 'qemu-img', out: outQ, samples: [] as Sample[] },
  ]
  for (let i = 0; i < runs; i++) {
    const order = i % 2 === 0 ? tools : [...tools].reverse()
    for (const t of order) {
      rmSync(t.out, { force: true })
      settle()
      const s = timed(t.cmd, ['convert', ...op.args, '-f', op.srcFmt, '-O', op.outFmt, op.src, t.out])
      t.samples.push(s)
      if (verbose) console.log(`  ${op.name} ${t.name} run ${i}: ${s.wall.toFixed(3)} s (cpu ${s.cpu.toFixed(2)} s)`)
    }
  }
  // A fast but wrong convert must not pass: both outputs equal the source, strato's qcow2 is consistent.
  for (const t of tools) run('qemu-img', ['compare', '-f', op.srcFmt, '-F', op.outFmt, op.src, t.out])
  if (op.outFmt === 'qcow2') {
    run('qemu-img', ['check', '-f', 'qcow2', outS])
    if (op.args.includes('-c')) {
      const info = JSON.parse(run('qemu-img', ['info', '--output=json', outS])) as { 'format-specific'?: { data?: { 'compression-type'?: string } } }
      const want = op.args.includes('compression_type=zstd') ? 'zstd' : 'zlib'
      const got = info['format-specific']?.data?.['compression-type']
      if (got !== want) throw new Error(`${op.name}: strato wrote compression type ${got}, not ${want}`)
    }
  }
  const row = { op, strato: stats(tools[0]!.samples), qemu: stats(tools[1]!.samples), sizeS: statSync(outS).blocks * 512, sizeQ: statSync(outQ).blocks * 512 }
  rmSync(outS, { force: true })
  rmSync(outQ, { force: true })
  return row
}

function startup(cmd: string, args: string[]): Stats {
  const xs: Sample[] = []
  for (let i = 0; i < Math.max(runs, 9); i++) xs.push(timed(cmd, args))
  return stats(xs)
}

function main(): void {
  const bin = stratoImgBin()
  const kvm = existsSync('/dev/kvm')
  const qemuVersion = run('qemu-img', ['--version']).split('\n')[0]
  console.log(`strato-img: ${bin.path} (via ${bin.via}); ${qemuVersion}; node ${process.version}`)
  console.log(`${cpus().length} CPUs, KVM ${kvm ? 'present' : 'absent (TCG)'}; cache ${cache}; ${runs} runs each, alternating`)
  const src = join(dir, 'src.raw')
  console.log(`building ${(size / GiB).toFixed(2)} GiB raw with ~${(dataBytes / GiB).toFixed(2)} GiB scattered data in ${dir} ...`)
  buildSource(src)
  const srcQcow = join(dir, 'src.qcow2')
  run('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', src, srcQcow])

  const all: Op[] = [
    { key: 'raw2qcow2', name: 'convert raw → qcow2', target: 1.3, src, srcFmt: 'raw', outFmt: 'qcow2', args: [] },
    { key: 'qcow22raw', name: 'convert qcow2 → raw', target: 1.3, src: srcQcow, srcFmt: 'qcow2', outFmt: 'raw', args: [] },
    { key: 'zlib', name: 'convert `-c` (zlib)', target: 1.8, src, srcFmt: 'raw', outFmt: 'qcow2', args: ['-c'] },
    { key: 'zstd', name: 'convert `-c -o compression_type=zstd`', target: 1.0, src, srcFmt: 'raw', outFmt: 'qcow2', args: ['-c', '-o', 'compression_type=zstd'] },
  ]
  const rows: Row[] = []
  for (const op of all) if (ops.has(op.key)) rows.push(bench(op, bin.path))

  // Overlays: the agent creates them in-process (createImageSync); qemu-img needs a process each.
  const base = join(dir, 'base.qcow2')
  run('qemu-img', ['create', '-f', 'qcow2', base, '4G'])
  const nq = 20
  const ns = 500
  const tq0 = process.hrtime.bigint()
  for (let i = 0; i < nq; i++) run('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', join(dir, `oq${i}.qcow2`)])
  const perQ = Number(process.hrtime.bigint() - tq0) / 1e6 / nq
  const ts0 = process.hrtime.bigint()
  for (let i = 0; i < ns; i++) createImageSync(join(dir, `os${i}.qcow2`), 'qcow2', { backingFile: base, backingFormat: 'qcow2' })
  const perS = Number(process.hrtime.bigint() - ts0) / 1e6 / ns
  run('qemu-img', ['check', '-q', join(dir, `os${ns - 1}.qcow2`)])

  const nodeStart = startup('node', ['-e', '0'])
  const stratoStart = startup(bin.path, ['--version'])
  const qemuStart = startup('qemu-img', ['--version'])

  const f = (s: Stats) => `${s.med.toFixed(3)} s (${s.min.toFixed(3)}–${s.max.toFixed(3)})`
  console.log('')
  console.log(`| operation | strato-img | qemu-img | qemu / strato | target | met |`)
  console.log(`|---|---|---|---|---|---|`)
  for (const r of rows) {
    const ratio = r.qemu.med / r.strato.med
    console.log(`| ${r.op.name} | ${f(r.strato)} | ${f(r.qemu)} | **${ratio.toFixed(2)}×** | ≥ ${r.op.target}× | ${ratio >= r.op.target ? 'yes' : 'no'} |`)
  }
  console.log('')
  console.log('CPU (user+sys, median): ' + rows.map((r) => `${r.op.key} strato ${r.strato.cpu.toFixed(2)} s / qemu ${r.qemu.cpu.toFixed(2)} s`).join('; '))
  const comp = rows.filter((r) => r.op.args.includes('-c'))
  if (comp.length) console.log('compressed output on disk: ' + comp.map((r) => `${r.op.key} strato ${(r.sizeS / MiB).toFixed(0)} MiB / qemu ${(r.sizeQ / MiB).toFixed(0)} MiB`).join('; '))
  console.log(`start-up (median of ${Math.max(runs, 9)}): \`node -e 0\` ${f(nodeStart)}, \`strato-img --version\` ${f(stratoStart)}, \`qemu-img --version\` ${f(qemuStart)}`)
  console.log(`overlay create: strato in-process ${perS.toFixed(3)} ms each (target < 1 ms: ${perS < 1 ? 'yes' : 'no'}), \`qemu-img create -b\` process ${perQ.toFixed(1)} ms each`)
  console.log(`all outputs verified with qemu-img compare (and check for strato's qcow2)`)
}

try {
  main()
} catch (err) {
  console.error(err instanceof Error ? err.message : err)
  process.exitCode = 1
}

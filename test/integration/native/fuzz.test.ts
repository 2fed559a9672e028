/**
 * Runs the libFuzzer harness for the header/table parsers (native/fuzz/)
 * from seeds built here with qemu-img. Fails on any crash, leak, timeout or
 * out-of-memory report. In `npm test`: a fixed-seed quick set (FUZZ_RUNS
 * inputs, default 1500, FUZZ_SEED 1), the same inputs every run. The long
 * run is `npm run test:fuzz` (FUZZ_SECONDS, default there 600, a fresh random
 * seed each time).
 */
import t from 'tap'
import { spawn } from 'node:child_process'
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { qemuImgOk, qemuIo, tempDir } from '../../fixtures/images.js'

const harness = join(process.cwd(), 'native', 'build', 'fuzz_qcow2')
const seconds = Number(process.env['FUZZ_SECONDS'] ?? 0)
const runs = Number(process.env['FUZZ_RUNS'] ?? 1500)
const seed = Number(process.env['FUZZ_SEED'] ?? 1)
const budget = seconds > 0 ? [`-max_total_time=${seconds}`] : [`-runs=${runs}`, `-seed=${seed}`]
const what = seconds > 0 ? `in ${seconds}s` : `of ${runs} (seed ${seed})`

t.test('fuzz the qcow2/inspect parsers', { skip: existsSync(harness) ? false : 'fuzz harness not built (clang libFuzzer runtime missing)' }, async (t) => {
  const tmp = tempDir('strato-fuzz-')
  t.teardown(tmp.cleanup)
  const seeds = tmp.path('seeds')
  const corpus = tmp.path('corpus')
  mkdirSync(seeds)
  mkdirSync(corpus)
  const raw = join(seeds, 'data.raw')
  writeFileSync(raw, Buffer.concat([Buffer.from('strato '.repeat(300)), Buffer.alloc(3000), Buffer.alloc(2048, 7)]))
  const variants = ['cluster_size=512', 'cluster_size=512,compat=0.10', 'cluster_size=1024,refcount_bits=1',
    'cluster_size=512,refcount_bits=64', 'cluster_size=4096,compression_type=zstd', 'cluster_size=512,refcount_bits=8']
  variants.forEach((o, i) => qemuImgOk('convert', '-f', 'raw', '-O', 'qcow2', '-o', o, raw, join(seeds, `v${i}.qcow2`)))
  qemuImgOk('convert', '-c', '-f', 'raw', '-O', 'qcow2', '-o', 'cluster_size=512', raw, join(seeds, 'zlib.qcow2'))
  const ov = join(seeds, 'overlay.qcow2')
  qemuImgOk('create', '-q', '-f', 'qcow2', '-o', 'cluster_size=512', '-b', 'data.raw', '-F', 'raw', ov)
  qemuIo(ov, 'qcow2', 'write -z 512 512', 'write -P 3 2k 1k')
  const snap = join(seeds, 'snap.qcow2')
  qemuImgOk('create', '-q', '-f', 'qcow2', '-o', 'cluster_size=512', snap, '64k')
  qemuIo(snap, 'qcow2', 'write -P 1 0 4k')
  qemuImgOk('snapshot', '-c', 's1', snap)
  qemuIo(snap, 'qcow2', 'write -P 2 1k 4k')
  qemuImgOk('create', '-q', '-f', 'vmdk', join(seeds, 'v.vmdk'), '1M')
  qemuImgOk('create', '-q', '-f', 'vpc', join(seeds, 'v.vhd'), '1M')
  qemuImgOk('create', '-q', '-f', 'vdi', join(seeds, 'v.vdi'), '1M')

  const args = [...budget, '-max_len=65536', '-rss_limit_mb=2048', '-timeout=20',
    `-artifact_prefix=${tmp.dir}/`, '-print_final_stats=1', corpus, seeds]
  const out: string[] = []
  const code = await new Promise<number>((resolve, reject) => {
    const p = spawn(harness, args, { cwd: tmp.dir, stdio: ['ignore', 'pipe', 'pipe'] })
    p.stdout.on('data', (d: Buffer) => out.push(d.toString()))
    p.stderr.on('data', (d: Buffer) => out.push(d.toString()))
    p.on('error', reject)
    p.on('exit', (c) => resolve(c ?? -1))
  })
  const log = out.join('')
  const executed = /stat::number_of_executed_units:\s*(\d+)/.exec(log)?.[1]
  const artifacts = readdirSync(tmp.dir).filter((f) => /^(crash|leak|timeout|oom|slow-unit)-/.test(f))
  t.equal(code, 0, 'fuzzer exits 0', code === 0 ? {} : { log: log.slice(-4000) })
  t.same(artifacts, [], 'no crash/leak/timeout/oom artifacts')
  t.ok(Number(executed) > 100, `executed ${executed} inputs ${what}`)
})

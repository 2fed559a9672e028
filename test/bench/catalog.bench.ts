/**
 * npm run bench:catalog — image upload and download throughput over loopback
 * gRPC for a 1 GiB image, with the server computing MD5 + SHA-512 and the
 * native inspector checking the format, and the client verifying the MD5 of
 * what it downloads. The client is Debian's grpcio (C core) in its own process,
 * so the figure is the server's. The controller runs in this process with the
 * V8 flags `npm start` gives it (--single-threaded-gc, see cli/stack/start.sh).
 * The listener speaks TLS (the controller's default, verified against its CA);
 * BENCH_TLS=off measures the plaintext loopback listener instead.
 *
 * Each direction runs in a client process of its own, so the CPU of each is
 * accounted separately: the client's (its own process_time), and the
 * controller's per thread (/proc/self/task: the event loop, and the others —
 * the libuv pool where the native sink hashes and writes, V8's helpers) and
 * the event loop's minor page faults. For looking closer: BENCH_PERF_DIR (a
 * system-wide `perf record` of each direction; BENCH_PERF_ARGS to change what
 * it records), BENCH_CPU_PROF_DIR (V8 CPU profiles of each direction),
 * BENCH_UPLOAD_ONLY=1, BENCH_JSON=1 (the figures as one JSON line).
 * BENCH_CLIENT picks the client: grpcio (the default), cli (the `strato` CLI,
 * grpc-js, both ways) or agent (grpcio uploads; the agent's image cache
 * downloads, grpc-js, as a host fetches an image it boots). Every client
 * verifies what it downloads in its own process, never on the controller's.
 * Target (issue 5): ≥ 400 MB/s each way. Not a test.
 *
 * Then the same over REST (issue 18: `PUT`/`GET /image/v2/images/{id}/file`,
 * the path the OpenStack clients take), with Debian's curl as the client in
 * its own process, a new image of the same file, and MD5s checked on both
 * sides (md5sum reads what curl downloads, as the gRPC client hashes its own).
 * BENCH_REST=off skips it.
 */
import { execFile, spawn } from 'node:child_process'
import { once } from 'node:events'
import inspector from 'node:inspector'
import { promisify } from 'node:util'
import { createHash, randomBytes } from 'node:crypto'
import { mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync, writeSync, closeSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { startController } from '../helpers/controller.js'
import { call, client } from '../helpers/grpc.js'
import { ImagesClient, type Image } from '../../proto/gen/strato/image/v1/image.js'

const SIZE = Number(process.env.BENCH_IMAGE_MIB ?? 1024) * 1024 * 1024
const dir = mkdtempSync(path.join(tmpdir(), 'strato-bench-catalog-'))
const file = path.join(dir, 'image.raw')
// Incompressible data with some text-like and zero regions, like a real disk.
const md5 = createHash('md5')
const fd = openSync(file, 'w')
const block = 4 * 1024 * 1024
for (let off = 0, i = 0; off < SIZE; off += block, i++) {
  const buf = i % 8 === 7 ? Buffer.alloc(block) : i % 8 === 6 ? Buffer.from('the quick brown fox jumps over the lazy dog\n'.repeat(block / 44 + 1)).subarray(0, block) : randomBytes(block)
  md5.update(buf)
  writeSync(fd, buf)
}
closeSync(fd)
const expected = md5.digest('hex')

/** CPU seconds (user + system) and minor page faults of each of this process's threads, by thread id. */
function threadCpu(): Map<number, { cpu: number; faults: number }> {
  const tick = 100 // USER_HZ on Linux
  const out = new Map<number, { cpu: number; faults: number }>()
  for (const tid of readdirSync('/proc/self/task')) {
    try {
      const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8')
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      out.set(Number(tid), { cpu: (Number(f[11]) + Number(f[12])) / tick, faults: Number(f[7]) })
    } catch {
      // the thread ended meanwhile
    }
  }
  return out
}

/**
 * The controller's CPU between two snapshots: the event loop (main thread), and the other threads busiest first;
 * and the event loop's minor page faults (first touches of fresh memory: ~µs each on a paravirtualised guest).
 */
function cpuSince(before: ReturnType<typeof threadCpu>): { total: number; main: number; others: number[]; mainFaults: number } {
  const after = threadCpu()
  let main = 0
  let mainFaults = 0
  const others: number[] = []
  for (const [tid, s] of after) {
    const d = s.cpu - (before.get(tid)?.cpu ?? 0)
    if (tid === process.pid) {
      main = d
      mainFaults = s.faults - (before.get(tid)?.faults ?? 0)
    } else if (d >= 0.01) others.push(d)
  }
  others.sort((a, b) => b - a)
  return { total: main + others.reduce((a, b) => a + b, 0), main, others, mainFaults }
}

const tls = process.env.BENCH_TLS !== 'off'
const s = await startController({ tls: { mode: tls ? 'on' : 'off' } })
const images = client(ImagesClient, s.address, s.credentials)
const img = await call<Image>(images, 'createImage', { name: 'bench', diskFormat: 'raw', containerFormat: 'bare' }, s.adminToken)

type ClientOut = { uploadMs?: number; downloadMs?: number; md5?: string; uploadCpuS?: number; downloadCpuS?: number }
const runPython = (mode: 'upload' | 'download') =>
  new Promise<ClientOut>((resolve, reject) =>
    execFile('/usr/bin/python3', [path.join(import.meta.dirname, 'image_client.py'), s.address, s.adminToken, img.id, file, s.caFile ?? '', mode], { maxBuffer: 1 << 20 }, (err, stdout, stderr) =>
      err ? reject(new Error(stderr || err.message)) : resolve(JSON.parse(stdout) as ClientOut)),
  )

// BENCH_CLIENT=cli: the `strato` CLI (grpc-js) as a user runs it, `node dist/cli/strato.js` with the admin openrc:
// `image create --file` (a new image) and `image save --file`; its CPU from /usr/bin/time.
// BENCH_CLI_BIN: another build of it (e.g. an older one, for comparing).
const cliBin = process.env.BENCH_CLI_BIN ?? path.join(import.meta.dirname, '../../dist/cli/strato.js')
let cliImage = ''
async function runCli(mode: 'upload' | 'download'): Promise<ClientOut> {
  const out = path.join(dir, 'saved.raw')
  const args = mode === 'upload'
    ? ['image', 'create', '--disk-format', 'raw', '--container-format', 'bare', '--file', file, '-f', 'json', 'bench-cli']
    : ['image', 'save', '--file', out, cliImage]
  const env = { ...process.env, ...s.openrc, ...(s.caFile ? { OS_CACERT: s.caFile } : {}) }
  const t = performance.now()
  const stderr = await new Promise<string>((resolve, reject) =>
    execFile('/usr/bin/time', ['-f', 'cpu %U %S', process.execPath, cliBin, ...args], { env, maxBuffer: 1 << 20 }, (err, stdout, stderr) => {
      if (err) return reject(new Error(stderr || err.message))
      if (mode === 'upload') cliImage = (JSON.parse(stdout) as { id: string }).id
      resolve(stderr)
    }))
  const ms = performance.now() - t
  const [, u, sy] = /cpu ([\d.]+) ([\d.]+)/.exec(stderr)!
  const cpu = Number(u) + Number(sy)
  if (mode === 'upload') return { uploadMs: ms, uploadCpuS: cpu }
  // md5sum in a process of its own: hashing here would put the client's work on the controller's event loop
  // (reading 1 GiB into a fresh buffer alone is ~260,000 page faults), as grpcio hashes in its own process.
  const md5 = (await promisify(execFile)('md5sum', [out])).stdout.split(' ')[0]
  rmSync(out, { force: true })
  return { downloadMs: ms, downloadCpuS: cpu, md5 }
}

// BENCH_CLIENT=agent: the upload by grpcio as above, the download by the agent's own path in a process of its
// own (agent-image-client.ts: ImageCache over GrpcImageSource, grpc-js), into a fresh cache directory.
const agentClient = path.join(import.meta.dirname, 'agent-image-client.ts')
const runAgent = async (mode: 'upload' | 'download'): Promise<ClientOut> => {
  if (mode === 'upload') return runPython(mode)
  const cacheDir = path.join(dir, 'agent-cache')
  try {
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', agentClient, s.address, s.adminToken, img.id, cacheDir, s.caFile ?? ''], { maxBuffer: 1 << 20 })
    return JSON.parse(stdout) as ClientOut
  } finally {
    rmSync(cacheDir, { recursive: true, force: true })
  }
}
const clientKind = process.env.BENCH_CLIENT ?? 'grpcio'
if (!['grpcio', 'cli', 'agent'].includes(clientKind)) throw new Error(`BENCH_CLIENT is grpcio (the default), cli or agent, not '${clientKind}'`)
const cli = clientKind === 'cli'
const runClient = cli ? runCli : clientKind === 'agent' ? runAgent : runPython

// BENCH_PERF_DIR: a system-wide `perf record` (cpu-clock) of each direction, upload.data and download.data there;
// BENCH_CPU_PROF_DIR: the controller's V8 CPU profile of each direction (upload.cpuprofile, download.cpuprofile).
async function perfRecord<T>(name: string, run: () => Promise<T>): Promise<T> {
  const profDir = process.env.BENCH_CPU_PROF_DIR
  if (profDir) {
    const session = new inspector.Session()
    session.connect()
    const post = <R = unknown>(method: string, params?: object) => new Promise<R>((resolve, reject) => session.post(method, params, (err, res) => (err ? reject(err) : resolve(res as R))))
    await post('Profiler.enable')
    await post('Profiler.setSamplingInterval', { interval: 200 })
    await post('Profiler.start')
    try {
      return await run()
    } finally {
      const { profile } = await post<{ profile: unknown }>('Profiler.stop')
      writeFileSync(path.join(profDir, `${name}.cpuprofile`), JSON.stringify(profile))
      session.disconnect()
    }
  }
  const dirOut = process.env.BENCH_PERF_DIR
  if (!dirOut) return run()
  writeFileSync(path.join(dirOut, 'pid'), String(process.pid))
  const perf = spawn('perf', ['record', '-q', ...(process.env.BENCH_PERF_ARGS ?? '-e cpu-clock -F 1000 -a').split(' '), '-g', '-o', path.join(dirOut, `${name}.data`)], { stdio: 'inherit' })
  await new Promise((r) => setTimeout(r, 500))
  try {
    return await run()
  } finally {
    const done = once(perf, 'exit')
    perf.kill('SIGINT')
    await done
  }
}

let t0 = threadCpu()
const up = await perfRecord('upload', () => runClient('upload'))
const upCpu = cpuSince(t0)
const got = await call<Image>(images, 'getImage', { id: cli ? cliImage : img.id }, s.adminToken)
t0 = threadCpu()
// BENCH_UPLOAD_ONLY=1: the upload alone (for comparing changes to it).
const uploadOnly = process.env.BENCH_UPLOAD_ONLY === '1'
const down = uploadOnly ? { md5: expected, downloadMs: NaN, downloadCpuS: NaN } : await perfRecord('download', () => runClient('download'))
const downCpu = cpuSince(t0)
if (got.checksum !== expected || down.md5 !== expected) throw new Error(`checksum mismatch: file ${expected}, server ${got.checksum}, downloaded ${down.md5}`)

const gib = SIZE / 2 ** 30
const mbps = (ms: number) => (SIZE / 1e6 / (ms / 1000)).toFixed(0)
const perGib = (cpuS: number) => (cpuS / gib).toFixed(2)
const controllerLine = (c: ReturnType<typeof cpuSince>) =>
  `controller ${perGib(c.total)} (event loop ${perGib(c.main)}, other threads ${c.others.map(perGib).join(' + ') || '0'}); event-loop page faults ${Math.round(c.mainFaults / gib)}/GiB`
console.log(`image of ${SIZE / 1024 / 1024} MiB over loopback gRPC (${tls ? 'TLS' : 'plaintext'}), checksums verified (server MD5+SHA-512, client MD5; client: ${cli ? 'the strato CLI, grpc-js; its CPU includes its start-up' : clientKind === 'agent' ? "grpcio up, the agent's image cache down (grpc-js)" : 'C-core grpcio'}):`)
console.log(`  upload:   ${mbps(up.uploadMs!)} MB/s  (${(up.uploadMs! / 1000).toFixed(2)} s)`)
console.log(`  download: ${mbps(down.downloadMs!)} MB/s  (${(down.downloadMs! / 1000).toFixed(2)} s)`)
console.log(`  CPU-s per GiB, upload:   client ${perGib(up.uploadCpuS!)}, ${controllerLine(upCpu)}`)
console.log(`  CPU-s per GiB, download: client ${perGib(down.downloadCpuS!)}, ${controllerLine(downCpu)}`)
console.log(`  the controller's data path: ${s.controller.bulkMethods.length ? 'HTTP/2 streams (api/bulk.ts)' : 'grpc-js (bulk path not attached)'}`)
if (process.env.BENCH_JSON) console.log(JSON.stringify({ tls, client: clientKind, gib, upMBps: SIZE / 1e3 / up.uploadMs!, downMBps: SIZE / 1e3 / down.downloadMs!, upClient: up.uploadCpuS! / gib, downClient: down.downloadCpuS! / gib, upCtl: upCpu, downCtl: downCpu, load: readFileSync('/proc/loadavg', 'utf8').trim() }))
if (process.env.BENCH_REST !== 'off') {
  // REST: curl uploads the file (Content-Length known, as `openstack image create --file` sends it) and downloads it.
  const sh = promisify(execFile)
  const api = `${s.controller.rest!.origin}/image/v2/images`
  const curl = ['curl', '-sS', '-f', '-H', `x-auth-token: ${s.adminToken}`, ...(s.caFile ? ['--cacert', s.caFile] : [])]
  const json = async (...args: string[]) => JSON.parse((await sh(curl[0]!, [...curl.slice(1), ...args])).stdout) as { id: string; checksum: string }
  const { id } = await json('-H', 'content-type: application/json', '-d', JSON.stringify({ name: 'bench-rest', disk_format: 'raw', container_format: 'bare' }), api)
  const cpu1 = process.cpuUsage()
  let t0 = performance.now()
  await sh(curl[0]!, [...curl.slice(1), '-X', 'PUT', '-H', 'content-type: application/octet-stream', '-T', file, `${api}/${id}/file`])
  const upMs = performance.now() - t0
  const cpuUp = process.cpuUsage(cpu1)
  t0 = performance.now()
  const { stdout } = await sh('/bin/sh', ['-c', `${curl.map((a) => `'${a}'`).join(' ')} '${api}/${id}/file' | md5sum`], { maxBuffer: 1 << 20 })
  const downMs = performance.now() - t0
  const cpuDown = process.cpuUsage(cpu1)
  const shown = await json(`${api}/${id}`)
  const downloaded = stdout.split(' ')[0]
  if (shown.checksum !== expected || downloaded !== expected) throw new Error(`REST checksum mismatch: file ${expected}, server ${shown.checksum}, downloaded ${downloaded}`)
  const cpuS = (u: NodeJS.CpuUsage) => ((u.user + u.system) / 1e6).toFixed(2)
  console.log(`the same over REST (${tls ? 'HTTPS' : 'HTTP'}/1.1, PUT/GET /image/v2/images/{id}/file; client: curl, md5sum on the download):`)
  console.log(`  upload:   ${mbps(upMs)} MB/s  (${(upMs / 1000).toFixed(2)} s; controller CPU ${cpuS(cpuUp)} s)`)
  console.log(`  download: ${mbps(downMs)} MB/s  (${(downMs / 1000).toFixed(2)} s; controller CPU, both ways ${cpuS(cpuDown)} s)`)
}
images.close()
await s.close()
rmSync(dir, { recursive: true, force: true })

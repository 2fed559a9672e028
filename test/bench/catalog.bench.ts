/**
 * npm run bench:catalog — image upload and download throughput over loopback
 * gRPC for a 1 GiB image, with the server computing MD5 + SHA-512 and the
 * native inspector checking the format, and the client verifying the MD5 of
 * what it downloads. The client is Debian's grpcio (C core) in its own process,
 * so the figure is the server's. The controller runs in this process with the
 * V8 flags `npm start` gives it (--single-threaded-gc, see cli/stack/start.sh).
 * The listener speaks TLS (the controller's default, verified against its CA);
 * BENCH_TLS=off measures the plaintext loopback listener instead.
 * Target (issue 5): ≥ 400 MB/s each way. Not a test.
 *
 * Then the same over REST (issue 18: `PUT`/`GET /image/v2/images/{id}/file`,
 * the path the OpenStack clients take), with Debian's curl as the client in
 * its own process, a new image of the same file, and MD5s checked on both
 * sides (md5sum reads what curl downloads, as the gRPC client hashes its own).
 * BENCH_REST=off skips it.
 */
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { createHash, randomBytes } from 'node:crypto'
import { mkdtempSync, openSync, rmSync, writeSync, closeSync } from 'node:fs'
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

const tls = process.env.BENCH_TLS !== 'off'
const s = await startController({ tls: { mode: tls ? 'on' : 'off' } })
const images = client(ImagesClient, s.address, s.credentials)
const img = await call<Image>(images, 'createImage', { name: 'bench', diskFormat: 'raw', containerFormat: 'bare' }, s.adminToken)
// The controller's own CPU for both directions (it runs in this process), to tell its TLS cost from the client's.
const cpu0 = process.cpuUsage()
const out = await new Promise<string>((resolve, reject) =>
  execFile('/usr/bin/python3', [path.join(import.meta.dirname, 'image_client.py'), s.address, s.adminToken, img.id, file, s.caFile ?? ''], { maxBuffer: 1 << 20 }, (err, stdout, stderr) =>
    err ? reject(new Error(stderr || err.message)) : resolve(stdout)),
)
const cpu = process.cpuUsage(cpu0)
const r = JSON.parse(out) as { uploadMs: number; downloadMs: number; md5: string; uploadCpuS: number; downloadCpuS: number }
const got = await call<Image>(images, 'getImage', { id: img.id }, s.adminToken)
if (got.checksum !== expected || r.md5 !== expected) throw new Error(`checksum mismatch: file ${expected}, server ${got.checksum}, downloaded ${r.md5}`)
const mbps = (ms: number) => (SIZE / 1e6 / (ms / 1000)).toFixed(0)
console.log(`image of ${SIZE / 1024 / 1024} MiB over loopback gRPC (${tls ? 'TLS' : 'plaintext'}), checksums verified (server MD5+SHA-512, client MD5; client: C-core grpcio):`)
console.log(`  upload:   ${mbps(r.uploadMs)} MB/s  (${(r.uploadMs / 1000).toFixed(2)} s; client CPU ${r.uploadCpuS.toFixed(2)} s)`)
console.log(`  download: ${mbps(r.downloadMs)} MB/s  (${(r.downloadMs / 1000).toFixed(2)} s; client CPU ${r.downloadCpuS.toFixed(2)} s)`)
console.log(`  controller CPU, upload + download: ${((cpu.user + cpu.system) / 1e6).toFixed(2)} s`)
console.log(`  the controller's data path: ${s.controller.bulkMethods.length ? 'HTTP/2 streams (api/bulk.ts)' : 'grpc-js (bulk path not attached)'}`)
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

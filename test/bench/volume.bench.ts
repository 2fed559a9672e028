/**
 * npm run bench:volume — block storage latencies with the real agent: a real
 * nats-server, the controller, and the agent daemon as its own process on
 * libvirt (KVM; TCG without /dev/kvm) with its volume role on the file
 * driver (qcow2 volumes of the native engine). Each of BENCH_RUNS rounds
 * (default 7) times, from the API call to GetVolume first saying so (polled
 * every 10 ms): a blank 1 GiB volume to available; a volume from the
 * boot-sector image to available (the image already in the host's cache
 * after the first round, which is reported apart). Then BENCH_ATTACH_RUNS
 * (default 20) attaches of a volume to a running server to in-use (hot-plug)
 * and detaches to available, on each path: a server of the volume host
 * (its file) and a server of a second agent (no volume role, its NBD export
 * over TLS). Prints the median with min and max of each, which of KVM/TCG
 * ran and the load average. Skipped, saying why,
 * without root or libvirt. Not a test: it prints figures for the README.
 *
 * Before that, on the host with no cloud (the file driver itself): the time
 * to create a 10 GiB volume from a 1 GiB image (filled with data) as a full
 * copy (the driver's create from an image: converted by the native engine)
 * and copy-on-write (a volume from a snapshot of it: a qcow2 overlay); and
 * the throughput of one volume through its network export (NBD over TLS on
 * loopback, qemu-storage-daemon) against the same qcow2 file opened locally,
 * measured by `qemu-io` (fio is not installed; `qemu-img bench` takes no
 * TLS credentials), sequential 1 MiB writes then reads. `BENCH_VOLUME_PARTS=storage` runs only this part.
 */
import { randomBytes, randomUUID } from 'node:crypto'
import { execFile } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { loadavg, tmpdir } from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import { FileVolumeDriver } from '../../agent/volume/file.js'
import { createImage } from '../../native/index.js'
import { libvirtNbdTls, nbdTls } from '../helpers/nbd-tls.js'
import { volumeAgentEnv } from '../helpers/volume-cloud.js'
import { serverGone, startCloud } from '../helpers/cloud.js'
import { spawnAgent } from '../helpers/agent-process.js'
import { ensureLibvirtd, virsh } from '../helpers/libvirt.js'
import { eventually } from '../helpers/agents.js'
import { call, client, status } from '../helpers/grpc.js'
import type { CreateServerResponse, Server } from '../../proto/gen/strato/compute/v1/servers.js'
import { VolumesClient, type Volume } from '../../proto/gen/strato/volume/v1/volume.js'

const RUNS = Number(process.env.BENCH_RUNS ?? 7)
/** Attach/detach rounds per path (local file, network export). */
const ATTACH_RUNS = Number(process.env.BENCH_ATTACH_RUNS ?? 20)

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2
}
const ms = (n: number) => `${Math.round(n)} ms`
const line = (what: string, xs: number[]) => console.log(`${what}: median ${ms(median(xs))} (min ${ms(Math.min(...xs))}, max ${ms(Math.max(...xs))}, n=${xs.length})`)

const run = promisify(execFile)
const GiB = 1024 ** 3

/** MiB one throughput run moves. */
const IO_MIB = Number(process.env.BENCH_IO_MIB ?? 256)

/**
 * `qemu-io` on `args` (the image and how to open it; qemu-img bench takes no
 * --object, so no TLS credentials): MiB/s of sequential 1 MiB writes
 * (`write`) or reads of IO_MIB, the process's wall time (TLS handshake included).
 */
async function bench(args: string[], write: boolean): Promise<number> {
  const ops = Array.from({ length: IO_MIB }, (_, i) => ['-c', `${write ? 'write -P 90' : 'read'} ${i}M 1M`]).flat()
  const t0 = performance.now()
  await run('qemu-io', [...args, ...ops], { timeout: 600_000, maxBuffer: 64 * 1024 * 1024 })
  return IO_MIB / ((performance.now() - t0) / 1000)
}

async function storage(): Promise<void> {
  const dir = mkdtempSync(path.join(tmpdir(), 'strato-bench-vol-'))
  const tls = await nbdTls(path.join(dir, 'tls'))
  const driver = new FileVolumeDriver({ dir: path.join(dir, 'volumes'), host: 'bench-a', network: { address: '127.0.0.1', tlsDir: tls.serverDir } })
  await driver.init()
  try {
    // A 1 GiB image, all of it data (a cached base is qcow2).
    const image = path.join(dir, 'image.qcow2')
    await createImage(image, 'qcow2', { size: GiB })
    await run('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x5a 0 1G', image], { timeout: 600_000 })
    const full = randomUUID()
    let t0 = performance.now()
    await driver.create(full, 10, { kind: 'image', path: image, format: 'qcow2' })
    const fullMs = performance.now() - t0
    const snap = randomUUID()
    await driver.createSnapshot(full, snap)
    const cow = randomUUID()
    t0 = performance.now()
    await driver.create(cow, 10, { kind: 'snapshot', snapshotId: snap })
    const cowMs = performance.now() - t0

    // One volume, 1 GiB written then read: through the file, then through its NBD export.
    const vol = randomUUID()
    await driver.create(vol, 2, { kind: 'blank' })
    const file = ['-f', 'qcow2', '-t', 'writeback', driver.volumePath(vol)]
    const localWrite = await bench(file, true)
    const localRead = await bench(file, false)
    const e = await driver.export(vol, 'bench-b')
    if (e.kind !== 'nbd') throw new Error('not an NBD export')
    const nbd = ['--object', `tls-creds-x509,id=tls0,dir=${await tls.clientFor('bench-b')},endpoint=client`, '--image-opts', `driver=raw,file.driver=nbd,file.server.type=inet,file.server.host=${e.address},file.server.port=${e.port},file.export=${e.name},file.tls-creds=tls0`]
    const nbdWrite = await bench(nbd, true)
    const nbdRead = await bench(nbd, false)
    await driver.unexport(vol, 'bench-b')
    const mib = (n: number) => `${Math.round(n)} MiB/s`
    console.log('bench:volume storage — the file driver on this host, qcow2, one run each')
    console.log(`create a 10 GiB volume from a 1 GiB image (1 GiB of data): full copy ${ms(fullMs)}, copy-on-write (from a snapshot: a qcow2 overlay) ${ms(cowMs)}`)
    console.log(`qemu-io, sequential 1 MiB requests, ${IO_MIB} MiB: local file write ${mib(localWrite)}, read ${mib(localRead)}; NBD export over TLS (loopback) write ${mib(nbdWrite)}, read ${mib(nbdRead)}`)
  } finally {
    for (const x of await driver.exports()) await driver.unexport(x.volumeId, x.host)
    rmSync(dir, { recursive: true, force: true })
  }
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) return console.log('skipped: the libvirt agent needs root (qemu:///system)')
  await storage()
  if (process.env.BENCH_VOLUME_PARTS === 'storage') return
  try {
    await ensureLibvirtd()
  } catch (err) {
    return console.log(`skipped: libvirt is not available (${(err as Error).message})`)
  }
  const bridge = `brbv-${randomBytes(3).toString('hex')}`
  const scratch = mkdtempSync(path.join(tmpdir(), 'strato-bench-vol-'))
  // The second host attaches over the network: its libvirt's NBD client certificate names it.
  const tls = await libvirtNbdTls(scratch, 'bench-net')
  const cloud = await startCloud({ hosts: [], controller: { hosts: { heartbeatIntervalMs: 500, missedHeartbeats: 10 }, servers: { castRetryMs: 1_000, agentCallTimeoutMs: 20_000 } } })
  const agentOf = (host: string, extra: Record<string, string>) => spawnAgent({ host, natsUrl: cloud.nats.url, driver: 'libvirt', env: volumeAgentEnv(cloud.s.address, bridge, { STRATO_AGENT_DISK_GB: '100', ...extra }) })
  const agents = [
    await agentOf('bench-vol', { STRATO_AGENT_VOLUME_EXPORT_ADDRESS: '127.0.0.1', STRATO_AGENT_VOLUME_EXPORT_TLS_DIR: tls.serverDir }),
    await agentOf('bench-net', { STRATO_AGENT_VOLUME: 'off', STRATO_AGENT_VOLUME_ATTACH: 'network' }),
  ]
  const volumes = client(VolumesClient, cloud.s.address)
  const token = cloud.s.adminToken
  const servers: string[] = []
  try {
    for (const a of agents) await a.running(60_000)
    await eventually(async () => (await cloud.s.controller.hosts.discover(), (await cloud.s.controller.hosts.list()).filter((h) => h.mapped).length === 2) || undefined, 20_000, 'both hosts to be mapped')
    await eventually(async () => (await cloud.s.controller.db.selectFrom('volume_backends').selectAll().execute()).length === 1, 20_000, 'the volume backend')
    // One server on the volume host (attaches the file) and one on the other host (attaches the NBD export).
    for (const host of ['bench-vol', 'bench-net']) {
      const r = await call<CreateServerResponse>(cloud.c.servers, 'createServer', { name: `bench-${host}`, flavorRef: cloud.flavor.id, imageRef: cloud.image.id, networks: [{ uuid: cloud.network.id }], availabilityZone: `nova:${host}` }, token)
      servers.push(r.servers[0]!.id)
    }
    for (const server of servers) await cloud.waitFor(server, (s: Server) => s.status === 'ACTIVE' && s.taskState === '', token, 300_000, 'ACTIVE')
    const accel = /<domain type='kvm'/.test(await virsh('dumpxml', `instance-${servers[0]}`)) ? 'KVM' : 'TCG'

    /** Runs `start`, then polls the volume every 10 ms until `want`; the milliseconds in between. */
    const timed = async (start: () => Promise<string>, want: string) => {
      const t0 = performance.now()
      const id = await start()
      for (;;) {
        const v = await call<Volume>(volumes, 'getVolume', { id }, token)
        if (v.status === want) return { id, ms: performance.now() - t0 }
        if (v.status === 'error') throw new Error(`volume ${id} in error: ${v.statusReason}`)
        await new Promise((res) => setTimeout(res, 10))
      }
    }
    const create = (extra: object) => async () => (await call<Volume>(volumes, 'createVolume', { size: 1, ...extra }, token)).id
    const remove = async (id: string) => {
      await call(volumes, 'deleteVolume', { id }, token)
      await eventually(() => call(volumes, 'getVolume', { id }, token).then(() => false, (e: { code?: number }) => e.code === status.NOT_FOUND), 60_000, 'deleted')
    }
    const blank: number[] = []
    const fromImage: number[] = []
    let first = 0
    for (let i = 0; i < RUNS + 1; i++) {
      const b = await timed(create({ name: `blank-${i}` }), 'available')
      const im = await timed(create({ name: `image-${i}`, imageId: cloud.image.id }), 'available')
      if (i === 0) first = im.ms
      else {
        blank.push(b.ms)
        fromImage.push(im.ms)
      }
      await remove(b.id)
      await remove(im.id)
    }
    // Attach and detach, ATTACH_RUNS times after a first (warm-up) round, to the server of each path.
    const paths: Array<[string, string, { attach: number[]; detach: number[] }]> = [
      ['local path (the volume host\'s server attaches the file)', servers[0]!, { attach: [], detach: [] }],
      ['network path (the other host\'s server attaches the NBD export over TLS)', servers[1]!, { attach: [], detach: [] }],
    ]
    for (const [, server, times] of paths) {
      const v = await timed(create({ name: 'attach-bench' }), 'available')
      for (let i = 0; i < ATTACH_RUNS + 1; i++) {
        const a = await timed(async () => (await call(cloud.c.servers, 'attachVolume', { serverId: server, volumeId: v.id }, token), v.id), 'in-use')
        const d = await timed(async () => (await call(cloud.c.servers, 'detachVolume', { serverId: server, volumeId: v.id }, token), v.id), 'available')
        if (i > 0) {
          times.attach.push(a.ms)
          times.detach.push(d.ms)
        }
      }
      await remove(v.id)
    }
    console.log(`bench:volume — ${accel}, load average ${loadavg().map((l) => l.toFixed(1)).join(' ')} at the end, one operation at a time, qcow2 file driver`)
    console.log(`${RUNS} rounds after a first (warm-up) round:`)
    line('create blank 1 GiB, API call to available', blank)
    console.log(`create from the boot-sector image, first time (image into the host's cache): ${ms(first)}`)
    line('create from the image (cached), API call to available', fromImage)
    for (const [what, , times] of paths) {
      console.log(`${what}, ${ATTACH_RUNS} rounds after a warm-up round:`)
      line('  attach to a running server (hot-plug), API call to in-use', times.attach)
      line('  detach from it, API call to available', times.detach)
    }
  } finally {
    volumes.close()
    for (const server of servers) await call(cloud.c.servers, 'deleteServer', { id: server }, token).catch(() => {})
    for (const server of servers) await eventually(() => serverGone(cloud.c, server, token), 60_000, 'the server deleted').catch(() => {})
    for (const a of agents) await a.remove()
    await cloud.close()
    await promisify(execFile)('ip', ['link', 'del', bridge]).catch(() => {})
    rmSync(scratch, { recursive: true, force: true })
  }
}

await main()

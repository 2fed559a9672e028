/**
 * `npm run bench:compute` part (2): scheduling throughput, over a matrix of
 * modes `<hosts>/<controllers>/<engine>` (BENCH_MODES, comma-separated; by
 * default 1000 and 10000 hosts × 1 and 2 controllers × sqlite and postgres,
 * less 2 controllers on SQLite: several controllers share one database only
 * on PostgreSQL — two on one SQLite file is not a supported layout).
 *
 * Every mode announces its fake-driver hosts (the conductor's announce path,
 * without a NATS connection per host) and maps them, sets the project's
 * instances quota to 90 % of the requests, and then measures two figures:
 *
 * - "scheduler core" (1 controller only): the controller in this process,
 *   every request handed to `Scheduler.schedule` at once — filters, weighers
 *   and the atomic claim (allocation + quota), nothing of the API.
 * - "through the API": the controllers as their own processes
 *   (`controller/main.ts`) on one database and one nats-server; the requests
 *   are real gRPC `CreateServer` calls (network_mode none, so no ports),
 *   BENCH_INFLIGHT (500) in flight per controller, spread round-robin over
 *   the controllers; each one is
 *   authenticated, planned, claimed, recorded and its build cast on
 *   JetStream (no agent takes it).
 *
 * Each figure prints placements/s, CPU per placement (process CPU time of
 * the scheduling processes — this one for the core, the controllers for the
 * API — and of PostgreSQL's server processes, divided by placements) and the
 * load average, then checks from the database: no (host, resource class)
 * allocated beyond (total − reserved) × allocation_ratio, one consumer per
 * placement, and exactly the quota admitted. A failed check exits 1.
 *
 * BENCH_REQUESTS overrides the number of requests (default 5,000 for up to
 * 1,000 hosts, 20,000 above); BENCH_FIGURES=core or api runs only one figure.
 */
import { randomUUID } from 'node:crypto'
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { startController, type TestController } from '../helpers/controller.js'
import { spawnController, type ControllerProcess } from '../helpers/controller-process.js'
import { startNats, type NatsServer } from '../helpers/nats.js'
import { startPostgres, type PostgresCluster } from '../helpers/postgres.js'
import { call } from '../helpers/grpc.js'
import { cloudClients, uploadImage } from '../helpers/cloud.js'
import { openDatabase, type Db } from '../../controller/store/db.js'
import { capacity } from '../../controller/scheduler/model.js'
import type { CreateServerResponse } from '../../proto/gen/strato/compute/v1/servers.js'
import type { Image } from '../../proto/gen/strato/image/v1/image.js'

type Engine = 'sqlite' | 'postgres'
interface Mode {
  hosts: number
  controllers: number
  engine: Engine
}

const fmt = (n: number) => Math.round(n).toLocaleString('en-US')
const FIGURES = process.env.BENCH_FIGURES ?? 'core,api'
/**
 * Calls in flight per controller process through the API. All 20,000 at once
 * made one controller drop its connections ("Connection dropped" after ~10,000
 * creates); a client keeps a window open instead, as a pool of API clients would.
 */
const INFLIGHT = Number(process.env.BENCH_INFLIGHT ?? 500)
/** Fake hosts never beat: an hour's grace keeps them up for the whole run. */
const HOSTS_CONFIG = { heartbeatIntervalMs: 3_600_000 }
const FLAVORS = [
  { id: 'b1', name: 'bench.small', vcpus: 1, ram: 2048, disk: 20 },
  { id: 'b2', name: 'bench.medium', vcpus: 2, ram: 4096, disk: 40 },
  { id: 'b3', name: 'bench.large', vcpus: 4, ram: 8192, disk: 80 },
]

function parseModes(): Mode[] {
  const spec = process.env.BENCH_MODES ?? '1000/1/sqlite,10000/1/sqlite,1000/1/postgres,1000/2/postgres,10000/1/postgres,10000/2/postgres'
  return spec.split(',').map((m) => {
    const [hosts, controllers, engine] = m.trim().split('/')
    const mode = { hosts: Number(hosts), controllers: Number(controllers), engine: engine as Engine }
    if (!Number.isInteger(mode.hosts) || mode.hosts < 1 || !Number.isInteger(mode.controllers) || mode.controllers < 1 || (engine !== 'sqlite' && engine !== 'postgres')) {
      throw new Error(`BENCH_MODES: '${m}' is not <hosts>/<controllers>/<sqlite|postgres>`)
    }
    if (mode.engine === 'sqlite' && mode.controllers > 1) throw new Error(`BENCH_MODES: '${m}': several controllers share one database only on PostgreSQL (two on one SQLite file is not a supported layout)`)
    return mode
  })
}

/** CPU seconds (user + system) a process has used so far, from /proc. */
function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(f[11]) + Number(f[12])) / 100 // utime, stime in clock ticks (USER_HZ = 100)
  } catch {
    return 0
  }
}

/**
 * CPU seconds PostgreSQL's server processes have used so far: the postmaster
 * (found by the data directory on its command line) with what its exited
 * backends used (cutime, cstime), and its live backends. A backend that exits
 * mid-run stays counted (summing live pids at the start and the end did not).
 */
function postgresCpu(pg: PostgresCluster | undefined): number {
  if (!pg) return 0
  const pids = readdirSync('/proc').filter((d) => /^\d+$/.test(d)).map(Number)
  const cmd = (pid: number) => { try { return readFileSync(`/proc/${pid}/cmdline`, 'utf8') } catch { return '' } }
  const stat = (pid: number) => { try { const s = readFileSync(`/proc/${pid}/stat`, 'utf8'); return s.slice(s.lastIndexOf(')') + 2).split(' ') } catch { return [] } }
  const master = pids.find((p) => cmd(p).includes(pg.dir) && cmd(p).includes('postgres'))
  if (!master) return 0
  const f = stat(master)
  const children = pids.filter((p) => Number(stat(p)[1]) === master).reduce((a, p) => a + cpuSeconds(p), 0)
  return cpuSeconds(master) + (Number(f[13] ?? 0) + Number(f[14] ?? 0)) / 100 + children
}

const load = () => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')

/** Announces `n` fake hosts through `c`'s host registry and maps them; the seeded random sizes are the same for every mode. */
async function announceHosts(s: TestController, n: number): Promise<void> {
  let seed = 42
  const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31)
  const pick = <T>(xs: T[]): T => xs[Math.floor(rand() * xs.length)]!
  const t0 = performance.now()
  const hosts = Array.from({ length: n }, (_, i) => ({
    host: `fake${String(i).padStart(5, '0')}`,
    uuid: randomUUID(),
    availabilityZone: i % 10 === 0 ? 'az2' : '',
    capabilities: {
      cpuModel: 'fake-cpu', arch: 'x86_64', vcpus: pick([4, 8, 16]), memoryMb: pick([16384, 32768, 65536]), diskGb: pick([200, 400, 800]),
      accelerator: 'kvm', hypervisorType: 'fake', hypervisorVersion: '1.0.0', hostIp: `10.${i >> 16}.${(i >> 8) & 255}.${i & 255}`,
    },
  }))
  // 16 agents announcing at a time (PostgreSQL runs them side by side; SQLite one after another).
  const failed = (await inWindow(n, 16, (i) => s.controller.hosts.announce(hosts[i]!))).filter((r) => r.status === 'rejected')
  if (failed.length) throw new Error(`${failed.length} announces failed: ${(failed[0] as PromiseRejectedResult).reason}`)
  const discovered = await s.controller.hosts.discover()
  console.log(`  ${fmt(n)} hosts announced and mapped in ${((performance.now() - t0) / 1000).toFixed(2)} s (${discovered.mapped.length} mapped by DiscoverHosts)`)
}

/** The admin project's instances quota = `limit`, cores and ram unlimited. */
async function setQuota(s: TestController, limit: number): Promise<string> {
  const project = await s.controller.catalog.getProject({ name: 'admin', domainId: 'default' })
  await s.controller.db.insertInto('project_quotas').values(Object.entries({ instances: limit, cores: -1, ram: -1 }).map(([resource, hard_limit]) => ({ project_id: project.id, resource, hard_limit })))
    .onConflict((oc) => oc.columns(['project_id', 'resource']).doUpdateSet((eb) => ({ hard_limit: eb.ref('excluded.hard_limit') }))).execute()
  return project.id
}

/** Zero over-commit, one consumer per placement, exactly the quota admitted: from the database. */
async function verify(db: Db, placed: number, quota: number, quotaRefused: number): Promise<boolean> {
  const inventories = await db.selectFrom('inventories').selectAll().execute()
  const sums = await db.selectFrom('allocations').select(['provider_uuid', 'resource_class', (eb) => eb.fn.sum<number>('used').as('used')]).groupBy(['provider_uuid', 'resource_class']).execute()
  const cap = new Map(inventories.map((i) => [`${i.provider_uuid}/${i.resource_class}`, capacity({ total: i.total, reserved: i.reserved, minUnit: i.min_unit, maxUnit: i.max_unit, stepSize: i.step_size, allocationRatio: i.allocation_ratio })]))
  let over = 0
  let fullest = 0
  for (const r of sums) {
    const k = `${r.provider_uuid}/${r.resource_class}`
    if (Number(r.used) > (cap.get(k) ?? 0)) over++
    fullest = Math.max(fullest, Number(r.used) / (cap.get(k) ?? 1))
  }
  const consumers = Number((await db.selectFrom('allocations').select((eb) => eb.fn.count<number>('consumer_uuid').distinct().as('n')).executeTakeFirst())?.n ?? 0)
  // Exactly the quota: every request beyond it refused for the quota, none below it.
  const exact = quotaRefused === 0 ? consumers <= quota : consumers === quota
  console.log(`  check: ${fmt(sums.length)} (host, class) sums, ${over} over capacity (fullest ${(fullest * 100).toFixed(1)} %); ${fmt(consumers)} consumers with allocations (= placed: ${consumers === placed}); quota ${fmt(quota)}: ${fmt(consumers)} admitted, ${fmt(quotaRefused)} refused for the quota (exact: ${exact})`)
  return over === 0 && consumers === placed && exact
}

function summarize(what: string, outcomes: PromiseSettledResult<unknown>[], secs: number, cpu: { own: number; db: number }): { placed: number; quotaRefused: number } {
  const placed = outcomes.filter((r) => r.status === 'fulfilled').length
  const reasons = new Map<string, number>()
  let quotaRefused = 0
  for (const r of outcomes) if (r.status === 'rejected') {
    const msg = String((r.reason as Error).message ?? r.reason)
    if (msg.includes('quota exceeded for instances')) quotaRefused++
    const key = msg.replace(/for .*?:/, 'for …:').replace(/\d+/g, 'N').slice(0, 100)
    reasons.set(key, (reasons.get(key) ?? 0) + 1)
  }
  const perPlacement = (s: number) => (placed ? `${fmt((s * 1e6) / placed)} µs` : '–')
  console.log(`  ${what}: ${fmt(outcomes.length)} requests, ${fmt(placed)} placed, ${fmt(outcomes.length - placed)} refused in ${secs.toFixed(2)} s → ${fmt(placed / secs)} placements/s; CPU per placement ${perPlacement(cpu.own + cpu.db)}${cpu.db ? ` (${perPlacement(cpu.own)} controllers + ${perPlacement(cpu.db)} PostgreSQL)` : ''}; load ${load()}`)
  for (const [k, n] of reasons) console.log(`    refused ${fmt(n)}×: ${k}`)
  return { placed, quotaRefused }
}

/** Runs `fn(0 … n−1)` with at most `width` calls in flight; the outcomes in order. */
async function inWindow<T>(n: number, width: number, fn: (i: number) => Promise<T>): Promise<PromiseSettledResult<T>[]> {
  const out: PromiseSettledResult<T>[] = new Array(n)
  let next = 0
  const worker = async () => {
    while (next < n) {
      const i = next++
      out[i] = await fn(i).then((value) => ({ status: 'fulfilled' as const, value }), (reason) => ({ status: 'rejected' as const, reason }))
    }
  }
  await Promise.all(Array.from({ length: Math.min(width, n) }, worker))
  return out
}

async function databaseUrl(engine: Engine, pg: PostgresCluster | undefined, dir: string): Promise<string> {
  return engine === 'postgres' ? pg!.createDatabase() : `sqlite:${path.join(dir, 'strato.db')}`
}

/** The scheduler core: `Scheduler.schedule` in this process, every request at once. */
async function coreFigure(mode: Mode, requests: number, pg: PostgresCluster | undefined): Promise<boolean> {
  const dir = mkdtempSync(path.join(tmpdir(), 'strato-bench-sched-'))
  const s = await startController({ databaseUrl: await databaseUrl(mode.engine, pg, dir), hosts: HOSTS_CONFIG }, dir)
  try {
    await announceHosts(s, mode.hosts)
    const quota = Math.floor(requests * 0.9)
    const projectId = await setQuota(s, quota)
    const specs = Array.from({ length: requests }, (_, i) => {
      const f = FLAVORS[i % 3]!
      return { instanceUuid: randomUUID(), projectId, userId: 'bench', resources: { VCPU: f.vcpus, MEMORY_MB: f.ram, DISK_GB: f.disk }, ...(i % 20 === 0 ? { availabilityZone: 'az2' } : {}) }
    })
    await s.controller.scheduler.hostStates() // warm the cache, as a running controller has it
    const cpu0 = process.cpuUsage()
    const db0 = postgresCpu(mode.engine === 'postgres' ? pg : undefined)
    const t0 = performance.now()
    const outcomes = await Promise.allSettled(specs.map((spec) => s.controller.scheduler.schedule(spec)))
    const secs = (performance.now() - t0) / 1000
    const used = process.cpuUsage(cpu0)
    const r = summarize('scheduler core (in-process Scheduler.schedule)', outcomes, secs, { own: (used.user + used.system) / 1e6, db: postgresCpu(mode.engine === 'postgres' ? pg : undefined) - db0 })
    return await verify(s.controller.db, r.placed, quota, r.quotaRefused)
  } finally {
    await s.close()
    rmSync(dir, { recursive: true, force: true })
  }
}

/** Through the API: controller processes on one database, real gRPC CreateServer calls spread over them. */
async function apiFigure(mode: Mode, requests: number, pg: PostgresCluster | undefined, nats: NatsServer): Promise<boolean> {
  const dir = mkdtempSync(path.join(tmpdir(), 'strato-bench-api-'))
  const url = await databaseUrl(mode.engine, pg, dir)
  const quota = Math.floor(requests * 0.9)
  // Seeded by a controller in this process (its own data dir: close() removes it), stopped before the controllers under test start.
  const openrcPath = path.join(dir, 'admin-openrc')
  const seed = await startController({ databaseUrl: url, hosts: HOSTS_CONFIG, bootstrap: { openrcPath } })
  let image: Image
  try {
    await announceHosts(seed, mode.hosts)
    await setQuota(seed, quota)
    const c = cloudClients(seed.address)
    for (const f of FLAVORS) await call(c.flavors, 'createFlavor', f, seed.adminToken)
    const created = await call<Image>(c.images, 'createImage', { name: 'bench', diskFormat: 'raw', containerFormat: 'bare', visibility: 'public' }, seed.adminToken)
    image = await uploadImage(c.images, seed.adminToken, created.id, Buffer.alloc(4096))
  } finally {
    await seed.close()
  }
  const controllers: ControllerProcess[] = []
  try {
    // One at a time: the first to start holds no lock the next one waits on.
    for (let i = 0; i < mode.controllers; i++) {
      controllers.push(await spawnController(nats.url, { databaseUrl: url, hosts: HOSTS_CONFIG, log: { level: 'warn', pretty: false }, bootstrap: { openrcPath } }))
    }
    const clients = controllers.map((p) => cloudClients(p.address))
    const token = controllers[0]!.adminToken
    const create = (i: number) => {
      const f = FLAVORS[i % 3]!
      return call<CreateServerResponse>(clients[i % clients.length]!.servers, 'createServer', { name: `bench-${i}`, flavorRef: f.id, imageRef: image.id, networkMode: 'none', ...(i % 20 === 0 ? { availabilityZone: 'az2' } : {}) }, token)
    }
    // One create per controller first (connections, caches), counted in the checks, not in the figure.
    const warm = await Promise.allSettled(clients.map((_, i) => create(i)))
    for (const w of warm) if (w.status === 'rejected') throw new Error(`warm-up create failed: ${(w.reason as Error).message}`)
    const pids = controllers.map((p) => p.proc.pid!)
    const own0 = pids.reduce((a, p) => a + cpuSeconds(p), 0)
    const db0 = postgresCpu(mode.engine === 'postgres' ? pg : undefined)
    const t0 = performance.now()
    const outcomes = await inWindow(requests - warm.length, INFLIGHT * mode.controllers, (i) => create(i + warm.length))
    const secs = (performance.now() - t0) / 1000
    const cpu = { own: pids.reduce((a, p) => a + cpuSeconds(p), 0) - own0, db: postgresCpu(mode.engine === 'postgres' ? pg : undefined) - db0 }
    const r = summarize(`through the API (gRPC CreateServer over ${mode.controllers} controller process${mode.controllers > 1 ? 'es' : ''})`, outcomes, secs, cpu)
    const db = await openDatabase(url)
    try {
      return await verify(db, r.placed + warm.length, quota, r.quotaRefused)
    } finally {
      await db.destroy()
    }
  } finally {
    for (const p of controllers) await p.close()
    rmSync(dir, { recursive: true, force: true })
  }
}

/** Runs every mode; false when a check failed. */
export async function schedulingThroughput(): Promise<boolean> {
  const modes = parseModes()
  let pg: PostgresCluster | undefined
  let nats: NatsServer | undefined
  let ok = true
  try {
    if (modes.some((m) => m.engine === 'postgres')) pg = await startPostgres()
    if (FIGURES.includes('api')) nats = await startNats()
    for (const mode of modes) {
      const requests = Number(process.env.BENCH_REQUESTS ?? (mode.hosts > 1000 ? 20_000 : 5_000))
      console.log(`${fmt(mode.hosts)} hosts, ${mode.controllers} controller${mode.controllers > 1 ? 's' : ''}, ${mode.engine}: ${fmt(requests)} concurrent requests, instances quota ${fmt(Math.floor(requests * 0.9))}`)
      if (FIGURES.includes('core') && mode.controllers === 1) ok = (await coreFigure(mode, requests, pg)) && ok
      if (FIGURES.includes('api')) ok = (await apiFigure(mode, requests, pg, nats!)) && ok
    }
  } finally {
    await nats?.stop?.()
    pg?.stop()
  }
  return ok
}

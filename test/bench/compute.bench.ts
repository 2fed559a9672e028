/**
 * npm run bench:compute — part (2): scheduling throughput. 1,000 fake-driver
 * hosts' inventories are announced and mapped (the announce path the
 * conductor runs, without a NATS connection per host), then 5,000 requests
 * are scheduled concurrently: filters, weighers and the atomic claim
 * (allocation + quota in one transaction each). Prints placements/s and
 * verifies zero over-commit by summing allocations per host against
 * (total − reserved) × allocation_ratio.
 * Target (issue 6): ≥ 1,000 placements/s with zero over-commit.
 * Part (1), API-to-ACTIVE latency of real boots, comes with the libvirt path.
 * Not a test: it prints figures for the README.
 */
import { randomUUID } from 'node:crypto'
import { startController } from '../helpers/controller.js'
import { capacity } from '../../controller/scheduler/model.js'

const HOSTS = Number(process.env.BENCH_HOSTS ?? 1000)
const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 5000)
// BENCH_FULL=1: hosts a third the size, so demand exceeds capacity and the refusal path is measured too.
const FULL = process.env.BENCH_FULL === '1'
const MEMORY = FULL ? [8192, 16384, 32768] : [16384, 32768, 65536]
const DISK = FULL ? [100, 200, 400] : [200, 400, 800]
const fmt = (n: number) => Math.round(n).toLocaleString('en-US')

const s = await startController()
const c = s.controller
let seed = 42
const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31)
const pick = <T>(xs: T[]): T => xs[Math.floor(rand() * xs.length)]!

const t0 = performance.now()
for (let i = 0; i < HOSTS; i++) {
  await c.hosts.announce({
    host: `fake${String(i).padStart(4, '0')}`,
    uuid: randomUUID(),
    availabilityZone: i % 10 === 0 ? 'az2' : '',
    capabilities: {
      cpuModel: 'fake-cpu', arch: 'x86_64', vcpus: pick([4, 8, 16]), memoryMb: pick(MEMORY), diskGb: pick(DISK),
      accelerator: 'kvm', hypervisorType: 'fake', hypervisorVersion: '1.0.0',
    },
  })
}
const discovered = await c.hosts.discover()
console.log(`${fmt(HOSTS)} hosts announced and mapped in ${((performance.now() - t0) / 1000).toFixed(2)} s (${discovered.mapped.length} mapped by DiscoverHosts)`)

const project = await s.controller.catalog.getProject({ name: 'admin', domainId: 'default' })
await c.db.insertInto('project_quotas').values(['instances', 'cores', 'ram'].map((resource) => ({ project_id: project.id, resource, hard_limit: -1 })))
  .onConflict((oc) => oc.columns(['project_id', 'resource']).doUpdateSet({ hard_limit: -1 })).execute()

const flavors = [
  { VCPU: 1, MEMORY_MB: 2048, DISK_GB: 20 },
  { VCPU: 2, MEMORY_MB: 4096, DISK_GB: 40 },
  { VCPU: 4, MEMORY_MB: 8192, DISK_GB: 80 },
]
const specs = Array.from({ length: REQUESTS }, (_, i) => ({
  instanceUuid: randomUUID(), projectId: project.id, userId: 'bench', resources: pick(flavors), ...(i % 20 === 0 ? { availabilityZone: 'az2' } : {}),
}))

await c.scheduler.hostStates() // warm the cache, as a running controller has it
const t1 = performance.now()
const results = await Promise.allSettled(specs.map((spec) => c.scheduler.schedule(spec)))
const secs = (performance.now() - t1) / 1000
const placed = results.filter((r) => r.status === 'fulfilled').length
const refused = results.length - placed
const reasons = new Map<string, number>()
for (const r of results) if (r.status === 'rejected') {
  const key = String((r.reason as Error).message).replace(/for .*?:/, 'for …:').replace(/\d+/g, 'N').slice(0, 90)
  reasons.set(key, (reasons.get(key) ?? 0) + 1)
}
console.log(`${fmt(REQUESTS)} concurrent requests: ${fmt(placed)} placed, ${fmt(refused)} refused in ${secs.toFixed(2)} s → ${fmt(placed / secs)} placements/s (${fmt(REQUESTS / secs)} decisions/s)`)
for (const [k, n] of reasons) console.log(`  refused ${n}×: ${k}`)

// Zero over-commit: sum allocations per host and class from the database, compare with capacity.
const inventories = await c.db.selectFrom('inventories').selectAll().execute()
const sums = await c.db.selectFrom('allocations').select(['provider_uuid', 'resource_class', (eb) => eb.fn.sum<number>('used').as('used')]).groupBy(['provider_uuid', 'resource_class']).execute()
const cap = new Map(inventories.map((i) => [`${i.provider_uuid}/${i.resource_class}`, capacity({ total: i.total, reserved: i.reserved, minUnit: i.min_unit, maxUnit: i.max_unit, stepSize: i.step_size, allocationRatio: i.allocation_ratio })]))
let over = 0
let fullest = 0
for (const r of sums) {
  const k = `${r.provider_uuid}/${r.resource_class}`
  const used = Number(r.used)
  if (used > (cap.get(k) ?? 0)) over++
  fullest = Math.max(fullest, used / (cap.get(k) ?? 1))
}
const consumers = Number((await c.db.selectFrom('allocations').select((eb) => eb.fn.count<number>('consumer_uuid').distinct().as('n')).executeTakeFirst())?.n ?? 0)
console.log(`over-commit check: ${sums.length} (host, class) sums, ${over} over capacity; fullest at ${(fullest * 100).toFixed(1)} %; ${fmt(consumers)} consumers with allocations (= placed: ${consumers === placed})`)
await s.close()
if (over > 0 || consumers !== placed) process.exit(1)

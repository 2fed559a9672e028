// The scheduler against a real controller (database, quota engine, gRPC views): placement capacity
// with ratios, filters and weighers in the pipeline, NoValidHost messages, atomic claims under concurrency.
import t from 'tap'
import { randomUUID } from 'node:crypto'
import { startController, type TestController } from '../../helpers/controller.js'
import { call, client, failure, status } from '../../helpers/grpc.js'
import { QuotasClient } from '../../../proto/gen/strato/compute/v1/compute.js'
import {
  PlacementClient, type GetInventoriesResponse, type GetUsagesResponse, type ListAllocationsResponse, type ListResourceProvidersResponse,
} from '../../../proto/gen/strato/placement/v1/placement.js'
import type { Project, Role, User } from '../../../proto/gen/strato/identity/v1/identity.js'
import { FailedPrecondition, ResourceExhausted } from '../../../proto/errors.js'
import { fakeHost, spec } from './fake-hosts.js'

let s: TestController
let placementApi: PlacementClient
let quotas: QuotasClient
let n = 0

/** A fresh project (own quota) with a member token. */
async function project(limits: Record<string, number> = {}): Promise<{ id: string; userId: string; token: string }> {
  n++
  const p = await call<Project>(s.clients.projects, 'createProject', { name: `sched${n}`, domainId: 'default' }, s.adminToken)
  const u = await call<User>(s.clients.users, 'createUser', { name: `sched${n}`, domainId: 'default', password: 'pw', defaultProjectId: p.id }, s.adminToken)
  const member = await call<Role>(s.clients.roles, 'getRole', { name: 'member' }, s.adminToken)
  await call(s.clients.roles, 'grantRole', { roleId: member.id, userId: u.id, projectId: p.id }, s.adminToken)
  if (Object.keys(limits).length) await call(quotas, 'updateQuota', { projectId: p.id, limits }, s.adminToken)
  return { id: p.id, userId: u.id, token: (await s.login(`sched${n}`, 'pw', { project: `sched${n}` })).token }
}

/** Removes every host and allocation, so each test starts from an empty cloud. */
async function resetHosts(): Promise<void> {
  const db = s.controller.db
  await db.deleteFrom('allocations').execute()
  await db.deleteFrom('compute_hosts').execute()
  await db.deleteFrom('resource_providers').execute()
  s.controller.scheduler.invalidate()
}

async function addHosts(...hosts: ReturnType<typeof fakeHost>[]): Promise<void> {
  for (const h of hosts) await s.controller.hosts.announce(h)
  await s.controller.hosts.discover()
}

async function thrown(p: Promise<unknown>): Promise<Error> {
  try {
    await p
  } catch (err) {
    return err as Error
  }
  throw new Error('expected a failure')
}

t.before(async () => {
  s = await startController()
  placementApi = client(PlacementClient, s.address)
  quotas = client(QuotasClient, s.address)
})
t.teardown(async () => {
  placementApi.close()
  quotas.close()
  await s.close()
})
t.beforeEach(resetHosts)

t.test('no host announced, or none mapped yet', async (t) => {
  const p = await project()
  const none = await thrown(s.controller.scheduler.schedule(spec(p.id, p.userId)))
  t.type(none, ResourceExhausted)
  t.match(none.message, /no compute host has announced itself/)
  await s.controller.hosts.announce(fakeHost('node1'))
  const unmapped = await thrown(s.controller.scheduler.schedule(spec(p.id, p.userId)))
  t.type(unmapped, FailedPrecondition)
  t.equal(unmapped.message, "no host is mapped yet: 'node1' is waiting; run DiscoverHosts (strato host discover)")
  await s.controller.hosts.announce(fakeHost('node2'))
  t.match((await thrown(s.controller.scheduler.schedule(spec(p.id, p.userId)))).message, /'node1', 'node2' are waiting/)
  await s.controller.hosts.discover()
  t.match(await s.controller.scheduler.schedule(spec(p.id, p.userId)), { host: /^node[12]$/ })
})

t.test('placement capacity uses (total − reserved) × allocation_ratio', async (t) => {
  const p = await project({ instances: -1, cores: -1, ram: -1 })
  // 2 vCPUs × 4.0 = 8 VCPU; 4096 − 512 reserved = 3584 MiB; 10 GiB.
  await addHosts(fakeHost('small', { vcpus: 2, memoryMb: 4096, diskGb: 10 }))
  const placed = []
  for (let i = 0; i < 8; i++) placed.push(await s.controller.scheduler.schedule(spec(p.id, p.userId, { vcpus: 1, ram: 256, disk: 1 })))
  t.equal(placed.length, 8, 'eight 1-vCPU servers on 2 physical CPUs (ratio 4.0)')
  const err = await thrown(s.controller.scheduler.schedule(spec(p.id, p.userId, { vcpus: 1, ram: 256, disk: 1 })))
  t.type(err, ResourceExhausted)
  t.equal(err.message, 'no valid host found for VCPU 1, MEMORY_MB 256, DISK_GB 1: 1 hosts; 0 after placement capacity (short of VCPU on 1)')
  const ram = await thrown(s.controller.scheduler.schedule(spec(p.id, p.userId, { vcpus: 0, ram: 2000, disk: 0 })))
  t.match(ram.message, /short of MEMORY_MB on 1/, 'RAM is not over-committed (ratio 1.0, 512 MiB reserved): 1536 left')
  await s.controller.scheduler.schedule(spec(p.id, p.userId, { vcpus: 0, ram: 1536, disk: 0 }))
  t.same(await s.controller.placement.overCommitted(), [])
})

t.test('NoValidHost names the filter that removed the last hosts, with counts at each step', async (t) => {
  const p = await project()
  await addHosts(fakeHost('a'), fakeHost('b'), fakeHost('c'))
  const az = await thrown(s.controller.scheduler.schedule(spec(p.id, p.userId, { az: 'nova2' })))
  t.type(az, ResourceExhausted)
  t.equal(az.message, 'no valid host found for VCPU 1, MEMORY_MB 512, DISK_GB 1 in nova2: 3 hosts; 3 after placement capacity; 3 after ComputeFilter; 0 after AvailabilityZoneFilter (az=nova2)')
  const arch = await thrown(s.controller.scheduler.schedule(spec(p.id, p.userId, { image: { hw_architecture: 'aarch64' } })))
  t.match(arch.message, /3 after AvailabilityZoneFilter; 0 after ImagePropertiesFilter \(hw_architecture=aarch64\)$/)
  await s.controller.hosts.update('a', { enabled: false, disabledReason: 'maintenance' })
  await s.controller.hosts.update('b', { enabled: false })
  await s.controller.hosts.update('c', { enabled: false, disabledReason: 'bad DIMM' })
  const disabled = await thrown(s.controller.scheduler.schedule(spec(p.id, p.userId)))
  t.match(disabled.message, /3 after placement capacity; 0 after ComputeFilter — 'a' disabled: maintenance, 'b' disabled, 'c' disabled: bad DIMM$/)
  await s.controller.hosts.update('b', { enabled: true })
  t.equal((await s.controller.scheduler.schedule(spec(p.id, p.userId))).host, 'b', 'the only enabled host')
  // An unmapped host is counted and named too.
  await s.controller.hosts.announce(fakeHost('d'))
  const mixed = await thrown(s.controller.scheduler.schedule(spec(p.id, p.userId, { az: 'nova2' })))
  t.match(mixed.message, /: 4 hosts; 3 mapped \('d' waiting for DiscoverHosts\); 3 after placement capacity; 1 after ComputeFilter; 0 after AvailabilityZoneFilter/)
})

t.test('weighers spread by default: each server goes to the emptiest host', async (t) => {
  const p = await project({ instances: -1, cores: -1, ram: -1 })
  await addHosts(fakeHost('h1'), fakeHost('h2'), fakeHost('h3', { memoryMb: 32768 }))
  const hosts = []
  for (let i = 0; i < 6; i++) hosts.push((await s.controller.scheduler.schedule(spec(p.id, p.userId, { ram: 4096 }))).host)
  t.equal(hosts[0], 'h3', 'the biggest host first')
  t.same(new Set(hosts), new Set(['h1', 'h2', 'h3']), 'spread over all hosts')
  const r = await s.controller.scheduler.schedule(spec(p.id, p.userId, { az: 'nova' }))
  t.ok(r.alternates.length >= 1, 'alternates are returned')
})

t.test('a claim holds quota for instances, cores and ram; release frees it', async (t) => {
  const p = await project({ instances: 2, cores: 3 })
  await addHosts(fakeHost('q1'))
  const a = spec(p.id, p.userId, { vcpus: 2 })
  await s.controller.scheduler.schedule(a)
  const cores = await thrown(s.controller.scheduler.schedule(spec(p.id, p.userId, { vcpus: 2 })))
  t.type(cores, ResourceExhausted)
  t.match(cores.message, /quota exceeded for cores: 2 of 3 in use, 2 more requested/)
  await s.controller.scheduler.schedule(spec(p.id, p.userId, { vcpus: 1 }))
  t.match((await thrown(s.controller.scheduler.schedule(spec(p.id, p.userId, { vcpus: 0 })))).message, /quota exceeded for instances: 2 of 2/)
  const q = await call<{ items: Array<{ resource: string; inUse: number }> }>(quotas, 'getQuota', { projectId: p.id }, s.adminToken)
  t.match(Object.fromEntries(q.items.map((i) => [i.resource, i.inUse])), { instances: 2, cores: 3, ram: 1024 }, 'usage counted from allocations')
  await s.controller.scheduler.release(a.instanceUuid)
  await s.controller.scheduler.schedule(spec(p.id, p.userId, { vcpus: 2 }))
  t.pass('released capacity and quota are usable again')
})

t.test('concurrency: 200 claims against 3 hosts never over-commit', async (t) => {
  const p = await project({ instances: -1, cores: -1, ram: -1 })
  // Each host fits 20 servers of 1 vCPU / 512 MiB (5 vCPUs × 4.0; 10752 − 512 MiB).
  await addHosts(fakeHost('c1', { vcpus: 5, memoryMb: 10752 }), fakeHost('c2', { vcpus: 5, memoryMb: 10752 }), fakeHost('c3', { vcpus: 5, memoryMb: 10752 }))
  const results = await Promise.allSettled(Array.from({ length: 200 }, () => s.controller.scheduler.schedule(spec(p.id, p.userId))))
  const ok = results.filter((r) => r.status === 'fulfilled')
  const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected')
  t.equal(ok.length, 60, 'exactly the capacity of the three hosts')
  t.ok(failed.every((r) => r.reason instanceof ResourceExhausted && /no valid host/.test(r.reason.message)), 'the rest: no valid host')
  t.same(await s.controller.placement.overCommitted(), [], 'no provider over capacity')
  const perHost = new Map<string, number>()
  for (const a of await s.controller.placement.listAllocations()) perHost.set(a.providerUuid, (perHost.get(a.providerUuid) ?? 0) + (a.resources.VCPU ?? 0))
  t.same([...perHost.values()].sort(), [20, 20, 20], 'sum of allocations per host = capacity')
})

t.test('concurrency: 200 claims against a quota of 37 admit exactly 37', async (t) => {
  const p = await project({ instances: 37, cores: -1, ram: -1 })
  await addHosts(fakeHost('k1'), fakeHost('k2'), fakeHost('k3'))
  const results = await Promise.allSettled(Array.from({ length: 200 }, () => s.controller.scheduler.schedule(spec(p.id, p.userId))))
  t.equal(results.filter((r) => r.status === 'fulfilled').length, 37)
  const reasons = new Set(results.flatMap((r) => (r.status === 'rejected' ? [(r.reason as Error).message] : [])))
  t.same([...reasons], ['quota exceeded for instances: 37 of 37 in use, 1 more requested; delete some or ask an admin to raise the quota'])
  const u = await s.controller.placement.getUsages({ projectId: p.id })
  t.same(u.usages, { DISK_GB: 37, MEMORY_MB: 37 * 512, VCPU: 37 })
})

t.test('the database re-check alone refuses over-commit (claims that bypass the cache)', async (t) => {
  const p = await project({ instances: -1, cores: -1, ram: -1 })
  await addHosts(fakeHost('raw', { vcpus: 2, memoryMb: 100000 }))
  const [host] = await s.controller.hosts.list()
  const db = s.controller.db
  const results = await Promise.allSettled(Array.from({ length: 200 }, (_, i) =>
    db.transaction().execute((trx) => s.controller.placement.claim(trx, { consumerUuid: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`, providerUuid: host!.id, resources: { VCPU: 1 }, projectId: p.id, userId: p.userId }))))
  t.equal(results.filter((r) => r.status === 'fulfilled').length, 8, 'VCPU 2 × 4.0')
  t.match((results.find((r) => r.status === 'rejected') as PromiseRejectedResult).reason.message, /VCPU: 8 of 8 used, 1 more requested/)
  // The scheduler's cache was bypassed: its next claim loses the race in the database and reports it.
  const err = await thrown(s.controller.scheduler.schedule(spec(p.id, p.userId)))
  t.type(err, ResourceExhausted)
  t.same(await s.controller.placement.overCommitted(), [])
})

t.test('a claim that loses a race reads that host again, not the whole cache', async (t) => {
  const p = await project({ instances: -1, cores: -1, ram: -1 })
  await addHosts(fakeHost('big', { vcpus: 32, memoryMb: 65536 }), fakeHost('small', { vcpus: 8 }))
  const ids = new Map((await s.controller.hosts.list()).map((h) => [h.host, h.id]))
  await s.controller.scheduler.hostStates() // the cache as a running controller has it
  // Another controller's claims, which this cache does not see: big full (VCPU 32 × 4.0), 1 VCPU on small.
  const db = s.controller.db
  const other = (providerUuid: string, vcpus: number) => db.transaction().execute((trx) => s.controller.placement.claim(trx, { consumerUuid: randomUUID(), providerUuid, resources: { VCPU: vcpus }, projectId: p.id, userId: p.userId }))
  for (let i = 0; i < 4; i++) await other(ids.get('big')!, 32) // max_unit is the host's 32
  await other(ids.get('small')!, 1)
  // big weighs best (most free RAM) in the cache, loses in the database, and small takes the server.
  t.equal((await s.controller.scheduler.schedule(spec(p.id, p.userId))).host, 'small')
  const cached = new Map((await s.controller.scheduler.hostStates()).map((h) => [h.host, h.usage.get('VCPU') ?? 0]))
  t.equal(cached.get('big'), 128, 'the host that lost was read again')
  t.equal(cached.get('small'), 1, 'the others were not (their cache still lacks the other controller\'s claim)')
  t.same(await s.controller.placement.overCommitted(), [])
})

t.test('strato.placement.v1 views, for cloud admins only', async (t) => {
  const p = await project({ instances: -1, cores: -1, ram: -1 })
  await addHosts(fakeHost('v1', { vcpus: 4, memoryMb: 8192, diskGb: 40 }), fakeHost('v2', { vcpus: 1, memoryMb: 1024, diskGb: 10 }))
  const placed = await s.controller.scheduler.schedule(spec(p.id, p.userId, { vcpus: 2, ram: 2048, disk: 20 }))
  t.equal(placed.host, 'v1')
  const rps = await call<ListResourceProvidersResponse>(placementApi, 'listResourceProviders', {}, s.adminToken)
  t.same(rps.resourceProviders.map((r) => r.name), ['v1', 'v2'])
  t.match(rps.resourceProviders[0], { availabilityZone: 'nova', traits: ['COMPUTE_ACCELERATOR_KVM', 'CUSTOM_ARCH_X86_64'], generation: 1 })
  const fits = await call<ListResourceProvidersResponse>(placementApi, 'listResourceProviders', { resources: { MEMORY_MB: 4096 } }, s.adminToken)
  t.same(fits.resourceProviders.map((r) => r.name), ['v1'], 'only providers with capacity for the request')
  const inv = await call<GetInventoriesResponse>(placementApi, 'getInventories', { resourceProviderUuid: placed.providerUuid }, s.adminToken)
  t.match(inv.inventories, {
    VCPU: { total: 4, reserved: 0, allocationRatio: 4, minUnit: 1, maxUnit: 4, stepSize: 1 },
    MEMORY_MB: { total: 8192, reserved: 512, allocationRatio: 1 },
    DISK_GB: { total: 40, reserved: 0, allocationRatio: 1 },
  })
  const usages = await call<GetUsagesResponse>(placementApi, 'getUsages', { resourceProviderUuid: placed.providerUuid }, s.adminToken)
  t.same(usages.usages, { DISK_GB: 20, MEMORY_MB: 2048, VCPU: 2 })
  t.equal(usages.resourceProviderGeneration, 1)
  const allocs = await call<ListAllocationsResponse>(placementApi, 'listAllocations', { resourceProviderUuid: placed.providerUuid }, s.adminToken)
  t.equal(allocs.allocations.length, 1)
  t.match(allocs.allocations[0], { resourceProviderUuid: placed.providerUuid, projectId: p.id, resources: { VCPU: 2, MEMORY_MB: 2048, DISK_GB: 20 } })
  t.equal((await failure(call(placementApi, 'getInventories', { resourceProviderUuid: '00000000-0000-4000-8000-000000000000' }, s.adminToken))).code, status.NOT_FOUND)
  t.equal((await failure(call(placementApi, 'listResourceProviders', {}, p.token))).code, status.PERMISSION_DENIED, 'members may not look')
})

t.test('scheduler.strategy pack fills one host before the next', async (t) => {
  const packed = await startController({ scheduler: { strategy: 'pack' } })
  t.teardown(() => packed.close())
  const c = packed.controller
  for (const h of [fakeHost('p1'), fakeHost('p2'), fakeHost('p3', { memoryMb: 32768 })]) await c.hosts.announce(h)
  await c.hosts.discover()
  const admin = await c.catalog.getProject({ name: 'admin', domainId: 'default' })
  const hosts = []
  for (let i = 0; i < 4; i++) hosts.push((await c.scheduler.schedule(spec(admin.id, 'u', { ram: 1024 }))).host)
  t.equal(new Set(hosts).size, 1, `all on one host: ${hosts.join(', ')}`)
  t.not(hosts[0], 'p3', 'the fullest (smallest) host first, not the biggest')
})

t.test('scheduler.maxPlacementResults: each decision weighs a window of hosts, and all of them before refusing', async (t) => {
  const windowed = await startController({ scheduler: { maxPlacementResults: 2, windowOffset: 0 } })
  t.teardown(() => windowed.close())
  const c = windowed.controller
  // w4 is by far the biggest: with every host weighed it would take the first servers.
  const hosts = [fakeHost('w1'), fakeHost('w2'), fakeHost('w3'), fakeHost('w4', { memoryMb: 65536, vcpus: 32 }), fakeHost('w5', { az: 'far' })]
  for (const h of hosts) await c.hosts.announce(h)
  await c.hosts.discover()
  const admin = await c.catalog.getProject({ name: 'admin', domainId: 'default' })
  const placed = []
  for (let i = 0; i < 6; i++) placed.push((await c.scheduler.schedule(spec(admin.id, 'u', { ram: 512 }))).host)
  // Windows of 2 from where the last stopped: (w1 w2) → w1, (w3 w4) → w4, (w5 w1) → w5 (w1 holds one server).
  t.same(placed.slice(0, 3), ['w1', 'w4', 'w5'], `each decision weighs its window only, and the windows move on (${placed.join(', ')})`)
  // Only w5 is in zone far: found whichever window a decision starts with.
  for (let i = 0; i < 3; i++) t.equal((await c.scheduler.schedule(spec(admin.id, 'u', { az: 'far' }))).host, 'w5', 'a host outside the window is found when the window has none')
  const err = await thrown(c.scheduler.schedule(spec(admin.id, 'u', { az: 'nowhere' })))
  t.type(err, ResourceExhausted)
  t.match(err.message, /5 hosts; 5 after placement capacity; 5 after ComputeFilter; 0 after AvailabilityZoneFilter/, 'a refusal counts every host, not a window')
})

t.test('scheduler.windowOffset: controllers begin their windows at their own place in the host list', async (t) => {
  const placedBy = async (windowOffset: number) => {
    const ctl = await startController({ scheduler: { maxPlacementResults: 2, windowOffset } })
    try {
      for (const h of [fakeHost('o1'), fakeHost('o2'), fakeHost('o3'), fakeHost('o4', { memoryMb: 65536, vcpus: 32 }), fakeHost('o5', { memoryMb: 32768 })]) await ctl.controller.hosts.announce(h)
      await ctl.controller.hosts.discover()
      const admin = await ctl.controller.catalog.getProject({ name: 'admin', domainId: 'default' })
      const placed = []
      for (let i = 0; i < 2; i++) placed.push((await ctl.controller.scheduler.schedule(spec(admin.id, 'u', { ram: 512 }))).host)
      return placed
    } finally {
      await ctl.close()
    }
  }
  // 5 hosts (o4 the biggest, then o5): offset 0 starts at o1, 0.5 at o3 (⌊0.5 × 5⌋ = 2), 0.8 at o5.
  t.same(await placedBy(0), ['o1', 'o4'], 'windows (o1 o2), then (o3 o4)')
  t.same(await placedBy(0.5), ['o4', 'o5'], 'windows (o3 o4), then (o5 o1)')
  t.same(await placedBy(0.8), ['o5', 'o2'], 'windows (o5 o1), then (o2 o3)')
})

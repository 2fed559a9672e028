// Each weigher on its own, normalisation, and spread vs pack.
import t from 'tap'
import { cpuWeigher } from '../../../../controller/scheduler/weighers/cpu-weigher.js'
import { diskWeigher } from '../../../../controller/scheduler/weighers/disk-weigher.js'
import { normalize, Weighing, weighHosts } from '../../../../controller/scheduler/weighers/index.js'
import { freeOf, type HostState } from '../../../../controller/scheduler/model.js'
import { ramWeigher } from '../../../../controller/scheduler/weighers/ram-weigher.js'
import { serverGroupSoftAffinityWeigher, serverGroupSoftAntiAffinityWeigher } from '../../../../controller/scheduler/weighers/server-group-soft-weighers.js'
import { fakeHost, fakeSpec } from './fake-host.js'

t.test('soft group policies: more members is better (soft-affinity) or worse (soft-anti-affinity), even when packing', async (t) => {
  const n1 = fakeHost({ host: 'n1' })
  const n2 = fakeHost({ host: 'n2' })
  const spec = (policy: 'soft-affinity' | 'soft-anti-affinity') => fakeSpec({ group: { id: 'g', policy, memberHosts: ['n1', 'n1'], maxServerPerHost: 1 } })
  t.equal(serverGroupSoftAffinityWeigher.weigh(n1, spec('soft-affinity')), 2)
  t.equal(serverGroupSoftAntiAffinityWeigher.weigh(n1, spec('soft-anti-affinity')), -2)
  t.equal(serverGroupSoftAffinityWeigher.weigh(n1, spec('soft-anti-affinity')), 0, 'other policies weigh 0')
  for (const policy of ['soft-affinity', 'soft-anti-affinity'] as const) {
    const ranked = weighHosts([n1, n2], spec(policy), [{ weigher: serverGroupSoftAffinityWeigher, multiplier: 1 }, { weigher: serverGroupSoftAntiAffinityWeigher, multiplier: 1 }]).map((w) => w.host.host)
    t.same(ranked, policy === 'soft-affinity' ? ['n1', 'n2'] : ['n2', 'n1'], policy)
  }
  t.equal(serverGroupSoftAffinityWeigher.resource, false, 'not reversed by strategy: pack')
})

t.test('raw weights are free resources', async (t) => {
  const h = fakeHost({ vcpus: 4, memoryMb: 8192, diskGb: 50, used: { VCPU: 3, MEMORY_MB: 2048, DISK_GB: 20 } })
  t.equal(ramWeigher.weigh(h, fakeSpec()), 6144)
  t.equal(cpuWeigher.weigh(h, fakeSpec()), 13, '4 × 4.0 − 3')
  t.equal(diskWeigher.weigh(h, fakeSpec()), 30)
})

t.test('normalize maps to [0, 1]; equal values weigh 0', async (t) => {
  t.same(normalize([10, 20, 30]), [0, 0.5, 1])
  t.same(normalize([5, 5]), [0, 0])
  t.same(normalize([]), [])
})

t.test('spread prefers the emptiest host, pack the fullest', async (t) => {
  const empty = fakeHost({ host: 'empty' })
  const half = fakeHost({ host: 'half', used: { MEMORY_MB: 8192 } })
  const full = fakeHost({ host: 'full', used: { MEMORY_MB: 15000 } })
  const spread = weighHosts([half, full, empty], fakeSpec(), [{ weigher: ramWeigher, multiplier: 1 }])
  t.same(spread.map((w) => w.host.host), ['empty', 'half', 'full'])
  t.equal(spread[0]!.weight, 1)
  const pack = weighHosts([half, full, empty], fakeSpec(), [{ weigher: ramWeigher, multiplier: -1 }])
  t.same(pack.map((w) => w.host.host), ['full', 'half', 'empty'])
})

t.test('multipliers combine weighers; ties keep name order', async (t) => {
  // a: lots of RAM, few CPUs; b: the reverse.
  const a = fakeHost({ host: 'a', used: { VCPU: 30 } })
  const b = fakeHost({ host: 'b', used: { MEMORY_MB: 16000 } })
  const ramFirst = weighHosts([a, b], fakeSpec(), [{ weigher: ramWeigher, multiplier: 2 }, { weigher: cpuWeigher, multiplier: 1 }])
  t.equal(ramFirst[0]!.host.host, 'a')
  const cpuFirst = weighHosts([a, b], fakeSpec(), [{ weigher: ramWeigher, multiplier: 1 }, { weigher: cpuWeigher, multiplier: 2 }])
  t.equal(cpuFirst[0]!.host.host, 'b')
  const tie = weighHosts([fakeHost({ host: 'z' }), fakeHost({ host: 'm' })], fakeSpec(), [{ weigher: ramWeigher, multiplier: 1 }])
  t.same(tie.map((w) => w.host.host), ['m', 'z'])
})

t.test('a limited weighing returns the same best hosts as a full sort', async (t) => {
  const hosts = Array.from({ length: 100 }, (_, i) => fakeHost({ host: `w${String(i).padStart(3, '0')}`, used: { MEMORY_MB: (i * 7919) % 16000, VCPU: i % 5 } }))
  const ws = [{ weigher: ramWeigher, multiplier: 1 }, { weigher: cpuWeigher, multiplier: 0.5 }]
  const full = weighHosts(hosts, fakeSpec(), ws).map((w) => w.host.host)
  t.same(weighHosts(hosts, fakeSpec(), ws, 5).map((w) => w.host.host), full.slice(0, 5))
  const same = Array.from({ length: 50 }, (_, i) => fakeHost({ host: `t${String(49 - i).padStart(2, '0')}` }))
  t.same(weighHosts(same, fakeSpec(), ws, 3).map((w) => w.host.host), ['t00', 't01', 't02'], 'ties by name')
})

t.test('Weighing: after each reservation its best hosts are those weighHosts gives on the hosts then left', async (t) => {
  // Hosts of varied sizes and usage; each step reserves 1 VCPU / 2 GiB / 20 GB on the best, as the scheduler's decisions made together do.
  const hosts = Array.from({ length: 60 }, (_, i) => fakeHost({ host: `v${String(i).padStart(2, '0')}`, vcpus: [2, 4, 8][i % 3], memoryMb: [4096, 8192, 16384][i % 4 % 3], diskGb: 100, used: { MEMORY_MB: (i * 523) % 3000, VCPU: i % 3 } }))
  const ws = [{ weigher: ramWeigher, multiplier: 1 }, { weigher: cpuWeigher, multiplier: 0.5 }, { weigher: diskWeigher, multiplier: -1 }]
  const need = { VCPU: 1, MEMORY_MB: 2048, DISK_GB: 20 }
  const fitsNow = (h: HostState) => Object.entries(need).every(([rc, n]) => freeOf(h, rc) >= n)
  const left = hosts.filter(fitsNow)
  const w = new Weighing(left, fakeSpec(), ws)
  let steps = 0
  let renormalized = 0
  for (; ; steps++) {
    const best = w.best(4)
    const expected = weighHosts(hosts.filter(fitsNow), fakeSpec(), ws, 4)
    if (best.length === 0) {
      t.equal(expected.length, 0, 'empty when no host fits')
      break
    }
    const got = best.map((i) => left[i]!.host)
    if (got.join() !== expected.map((e) => e.host.host).join()) {
      t.fail(`step ${steps}: ${got.join()} ≠ ${expected.map((e) => e.host.host).join()}`)
      break
    }
    const h = left[best[0]!]!
    for (const [rc, n] of Object.entries(need)) (h.usage as Map<string, number>).set(rc, (h.usage.get(rc) ?? 0) + n)
    const before = [...w.totals].filter((_, i) => i !== best[0])
    w.changed(best[0]!, !fitsNow(h))
    if ([...w.totals].filter((_, i) => i !== best[0]).some((v, i) => v !== before[i])) renormalized++
  }
  t.ok(steps > 50, `${steps} reservations until every host was full`)
  t.ok(renormalized > 0 && renormalized < steps, `bounds redone only when a minimum or maximum moved (${renormalized} of ${steps})`)
})

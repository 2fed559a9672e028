// The metadata service's answers and cache (agent/metadata/service.ts),
// without namespaces: a lookup that counts its calls stands for the conductor.
import t from 'tap'
import { pino } from 'pino'
import { MetadataService } from '../../../../agent/metadata/service.js'
import { NotFound, Unavailable } from '../../../../proto/errors.js'
import type { InstanceMetadata } from '../../../../proto/instance-metadata.js'
import { instance } from '../../../fixtures/instance-metadata.js'

function service(lookup: (n: string, a: string) => Promise<InstanceMetadata>, o: { ttl?: number; negativeTtl?: number } = {}) {
  const calls: string[] = []
  const s = new MetadataService({
    enabled: true, cacheTtlMs: o.ttl ?? 30_000, negativeTtlMs: o.negativeTtl ?? 3_000, log: pino({ level: 'silent' }),
    lookup: (n, a) => {
      calls.push(`${n} ${a}`)
      return lookup(n, a)
    },
  })
  return { s, calls }
}

const known = (n: string, a: string) => (n === 'n1' && a === '10.0.0.5' ? Promise.resolve(instance()) : Promise.reject(new NotFound(`no server holds ${a}`)))

t.test('a known address gets its server; answers are cached per (network, address)', async (t) => {
  const { s, calls } = service(known)
  const r = await s.answer('n1', '10.0.0.5', 'GET', '/openstack/latest/meta_data.json')
  t.equal(r.status, 200)
  t.equal((JSON.parse(r.body.toString()) as { uuid: string }).uuid, instance().instanceUuid)
  await s.answer('n1', '10.0.0.5', 'GET', '/latest/meta-data/instance-id')
  await Promise.all([1, 2, 3].map(() => s.answer('n1', '10.0.0.5', 'HEAD', '/openstack')))
  t.same(calls, ['n1 10.0.0.5'], 'one lookup for all of them')
  s.invalidate()
  await s.answer('n1', '10.0.0.5', 'GET', '/openstack')
  t.equal(calls.length, 2, 'invalidate forgets')
})

t.test('an address no port holds: 404, and the miss is cached briefly', async (t) => {
  const { s, calls } = service(known, { negativeTtl: 50 })
  t.equal((await s.answer('n1', '10.0.0.99', 'GET', '/openstack/latest/meta_data.json')).status, 404)
  t.equal((await s.answer('n1', '10.0.0.99', 'GET', '/latest/meta-data/')).status, 404)
  t.equal(calls.length, 1)
  t.equal((await s.answer('n2', '10.0.0.5', 'GET', '/latest/meta-data/')).status, 404, 'the same address on another network is another guest')
  await new Promise((r) => setTimeout(r, 80))
  await s.answer('n1', '10.0.0.99', 'GET', '/openstack')
  t.equal(calls.filter((c) => c === 'n1 10.0.0.99').length, 2, 'asked again once expired')
})

t.test('/ needs no lookup; other methods are refused before any lookup', async (t) => {
  const { s, calls } = service(known)
  const root = await s.answer('n1', '10.0.0.99', 'GET', '/')
  t.equal(root.status, 200)
  t.match(root.body.toString(), /^1\.0\n.*latest$/s)
  for (const m of ['POST', 'PUT', 'DELETE', 'PATCH']) {
    const r = await s.answer('n1', '10.0.0.5', m, '/openstack/latest/meta_data.json')
    t.equal(r.status, 405, m)
    t.equal(r.headers?.allow, 'GET, HEAD')
  }
  t.same(calls, [])
})

t.test('a controller that does not answer is not cached', async (t) => {
  let down = true
  const { s, calls } = service((n, a) => (down ? Promise.reject(new Unavailable('conductor request failed: TIMEOUT')) : known(n, a)))
  await t.rejects(s.answer('n1', '10.0.0.5', 'GET', '/openstack'), Unavailable)
  down = false
  t.equal((await s.answer('n1', '10.0.0.5', 'GET', '/openstack')).status, 200)
  t.equal(calls.length, 2)
})

t.test('off: attach does nothing', async (t) => {
  const s = new MetadataService({ enabled: false, lookup: known, log: pino({ level: 'silent' }) })
  await s.attach('n1', 'no-such-namespace')
  t.same([...s.attached()], [])
  await s.close()
})

// Upload turns (controller/api/images.ts): at most maxConcurrent uploads receive; the next
// ones wait in order, up to QUEUED_PER_SLOT per slot, and beyond that are RESOURCE_EXHAUSTED.
import t from 'tap'
import { QUEUED_PER_SLOT, UploadSlots } from '../../../../controller/api/images.js'

const tick = () => new Promise((r) => setImmediate(r))

t.test('turns pass on in order; a release is idempotent', async (t) => {
  const slots = new UploadSlots({ maxConcurrent: 2, idleTimeoutMs: 1000 })
  const r1 = await slots.acquire()
  const r2 = await slots.acquire()
  const order: number[] = []
  const w3 = slots.acquire().then((r) => (order.push(3), r))
  const w4 = slots.acquire().then((r) => (order.push(4), r))
  await tick()
  t.same(order, [], 'both wait while two receive')
  r1()
  r1()
  await tick()
  t.same(order, [3], 'one release lets exactly one in, the first that waited')
  r2()
  const r4 = await w4
  t.same(order, [3, 4])
  ;(await w3)()
  r4()
  const again = await Promise.race([slots.acquire(), tick().then(() => null)])
  t.ok(again, 'all released: a new upload starts at once')
})

t.test('waiting is bounded: beyond it RESOURCE_EXHAUSTED, naming the setting', async (t) => {
  const slots = new UploadSlots({ maxConcurrent: 1, idleTimeoutMs: 1000 })
  await slots.acquire()
  for (let i = 0; i < QUEUED_PER_SLOT; i++) void slots.acquire()
  await t.rejects(slots.acquire(), { name: 'ResourceExhausted', message: /1 receiving and 32 waiting \(grpc.maxConcurrentUploads is 1\)/ })
})

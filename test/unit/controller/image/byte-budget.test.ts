// The upload byte budget (controller/image/store.ts): bytes are taken up to the limit,
// waiters are served in order as bytes come back, and one piece larger than the limit
// still goes when nothing else is held (or an upload could never progress).
import t from 'tap'
import { ByteBudget } from '../../../../controller/image/store.js'

const tick = () => new Promise((r) => setImmediate(r))

t.test('takes up to the limit, then waiters in order as bytes are released', async (t) => {
  const b = new ByteBudget(10)
  t.ok(b.tryTake(6))
  t.notOk(b.tryTake(5), '6 + 5 is over 10')
  const served: string[] = []
  const w1 = b.take(5).then(() => served.push('w1'))
  const w2 = b.take(1).then(() => served.push('w2'))
  t.notOk(b.tryTake(1), 'no overtaking those that wait, even when it would fit')
  await tick()
  t.same(served, [])
  b.release(6)
  await Promise.all([w1, w2])
  t.same(served, ['w1', 'w2'])
  b.release(6)
  t.ok(b.tryTake(10), 'all back')
})

t.test('a piece over the limit goes when nothing is held', async (t) => {
  const b = new ByteBudget(10)
  t.ok(b.tryTake(50))
  t.notOk(b.tryTake(1))
  b.release(50)
  t.ok(b.tryTake(1))
})

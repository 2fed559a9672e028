// ServerGroupCatalog.serialize: one group's placements run one at a time, in order, a failure
// not blocking the next; other groups are not held up. This is what keeps concurrent creates
// into an anti-affinity group from reading the same members and picking the same host.
import t from 'tap'
import { ServerGroupCatalog } from '../../../../controller/compute/server-groups.js'
import type { Db } from '../../../../controller/store/db.js'
import type { QuotaEngine } from '../../../../controller/quota/quota.js'

const catalog = () => new ServerGroupCatalog({} as Db, { registerCounter: () => {}, registerRowCount: () => {} } as unknown as QuotaEngine)
const tick = (ms: number) => new Promise((r) => setTimeout(r, ms))

t.test('one group: one at a time, in arrival order, after failures too', async (t) => {
  const c = catalog()
  const log: string[] = []
  let running = 0
  let most = 0
  const job = (name: string, ms: number, fail = false) => async () => {
    running++
    most = Math.max(most, running)
    log.push(`start ${name}`)
    await tick(ms)
    log.push(`end ${name}`)
    running--
    if (fail) throw new Error(`${name} failed`)
    return name
  }
  const results = await Promise.allSettled([c.serialize('g', job('a', 30)), c.serialize('g', job('b', 5, true)), c.serialize('g', job('c', 1))])
  t.equal(most, 1, 'never two at once')
  t.same(log, ['start a', 'end a', 'start b', 'end b', 'start c', 'end c'])
  t.same(results.map((r) => r.status), ['fulfilled', 'rejected', 'fulfilled'], 'a failure is its caller\'s, and the queue goes on')
})

t.test('different groups run side by side', async (t) => {
  const c = catalog()
  const log: string[] = []
  const job = (name: string, ms: number) => async () => {
    log.push(`start ${name}`)
    await tick(ms)
    log.push(`end ${name}`)
  }
  await Promise.all([c.serialize('g1', job('a', 20)), c.serialize('g2', job('b', 1))])
  t.same(log, ['start a', 'start b', 'end b', 'end a'])
})

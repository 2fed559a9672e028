// The agent's Reverter cases, against the controller's copy (controller/revert.ts).
import t from 'tap'
import { Reverter, withReverter } from '../../../controller/revert.js'

t.test('undo steps run in reverse on failure', async (t) => {
  const log: string[] = []
  const error = await withReverter(async (revert) => {
    log.push('define')
    revert.add('undefine', () => {
      log.push('undefine')
    })
    log.push('plug')
    revert.add('unplug', async () => {
      log.push('unplug')
    })
    throw new Error('start failed')
  }).catch((e: unknown) => e)
  t.equal((error as Error).message, 'start failed', 'the original error is rethrown')
  t.same(log, ['define', 'plug', 'unplug', 'undefine'])
})

t.test('nothing is undone on success', async (t) => {
  const log: string[] = []
  const value = await withReverter(async (revert) => {
    revert.add('undo', () => {
      log.push('undo')
    })
    return 42
  })
  t.equal(value, 42)
  t.same(log, [])
})

t.test('a failing undo step does not stop the others and is reported', async (t) => {
  const log: string[] = []
  let reported: string[] = []
  await withReverter(
    async (revert) => {
      revert.add('first', () => {
        log.push('first')
      })
      revert.add('broken', () => {
        throw new Error('cannot')
      })
      throw new Error('boom')
    },
    { onUndoFailure: (failures) => (reported = failures.map((f) => f.description)) },
  ).catch(() => undefined)
  t.same(log, ['first'], 'earlier step still ran')
  t.same(reported, ['broken'])
})

t.test('a finished reverter takes no more steps and runs nothing twice', async (t) => {
  const revert = new Reverter()
  let runs = 0
  revert.add('x', () => {
    runs++
  })
  t.equal(revert.size, 1)
  await revert.fail()
  await revert.fail()
  t.equal(runs, 1)
  t.throws(() => revert.add('late', () => undefined), /finished/)
})

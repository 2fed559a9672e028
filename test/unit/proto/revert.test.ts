import t from 'tap'
import { Reverter, withReverter } from '../../../proto/revert.js'

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

t.test('a failing undo step is logged with its context, and the others still run', async (t) => {
  const ran: string[] = []
  const lines: Array<{ fields: Record<string, unknown>; message: string }> = []
  const boom = new Error('boom')
  const error = await withReverter(
    async (revert) => {
      revert.add('remove dir', () => {
        ran.push('remove dir')
      })
      revert.add('destroy guest', () => {
        throw new Error('hypervisor gone')
      })
      revert.add('unplug', () => {
        ran.push('unplug')
      })
      throw boom
    },
    { log: { warn: (fields, message) => lines.push({ fields, message }) }, context: { instance: 'i-1', host: 'node1' } },
  ).catch((e: unknown) => e)
  t.equal(error, boom, "the operation's own error is rethrown")
  t.same(ran, ['unplug', 'remove dir'], 'the steps before and after the failed one ran')
  t.equal(lines.length, 1)
  t.match(lines[0], { message: 'undo step failed: destroy guest', fields: { instance: 'i-1', host: 'node1', undo: 'destroy guest', cause: 'boom' } })
  t.match((lines[0]?.fields.err as Error).message, 'hypervisor gone', 'with the undo step\'s error')
})

t.test('with no log given, a failing undo step becomes a process warning, never silence', async (t) => {
  const warnings: Error[] = []
  const onWarning = (w: Error) => warnings.push(w)
  process.on('warning', onWarning)
  t.teardown(() => void process.off('warning', onWarning))
  await withReverter(async (revert) => {
    revert.add('delete bridge br-x', () => {
      throw new Error('device busy')
    })
    throw new Error('boom')
  }, { context: { bridge: 'br-x' } }).catch(() => undefined)
  await new Promise((r) => setImmediate(r))
  const w = warnings.find((x) => (x as Error & { code?: string }).code === 'STRATO_UNDO_FAILED')
  t.ok(w, 'a warning was emitted')
  t.match(w?.message, 'undo step failed: delete bridge br-x: device busy')
  t.match((w as Error & { detail?: string } | undefined)?.detail, '"bridge":"br-x"')
})

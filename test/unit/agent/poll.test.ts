// The agent's wait for work another process does (QEMU's jobs): the value once done, the check's own
// error as it threw it, and Unavailable naming what, how far and where once the deadline passed.
import t from 'tap'
import { Pending, pollUntil } from '../../../agent/poll.js'
import { FailedPrecondition } from '../../../proto/errors.js'

const o = { deadlineMs: 60_000, pauseMs: 1, what: 'the copy of volume v1', where: "its export's daemon (pid 42)" }

t.test('checks until the work is done, and returns what the last check said', async (t) => {
  let checks = 0
  t.equal(await pollUntil(async () => (++checks < 3 ? new Pending(`${checks} of 3`) : 'concluded'), o), 'concluded')
  t.equal(checks, 3, 'checked again after each Pending')
  t.equal(await pollUntil<void>(async () => undefined, o), undefined, 'undefined is done too (a job gone)')
})

t.test("the check's own error ends the wait as it threw it", async (t) => {
  await t.rejects(pollUntil(async () => {
    throw new FailedPrecondition('guest g1 stopped while its disk vdb was being copied')
  }, o), { name: 'FailedPrecondition', message: 'guest g1 stopped while its disk vdb was being copied' })
})

t.test('past the deadline: Unavailable naming what has not finished, how far it got, and where it goes on', async (t) => {
  let checks = 0
  await t.rejects(pollUntil(async () => new Pending(`${++checks} of 4096 bytes`), { ...o, deadlineMs: 0 }), {
    name: 'Unavailable', message: /^the copy of volume v1 has not finished \(\d+ of 4096 bytes\); it goes on in its export's daemon \(pid 42\)$/,
  })
  t.ok(checks >= 1, 'after checking at least once')
  await t.rejects(pollUntil(async () => new Pending(), { ...o, deadlineMs: 0, where: 'QEMU' }), {
    name: 'Unavailable', message: 'the copy of volume v1 has not finished; it goes on in QEMU',
  }, 'no progress known: none said')
})

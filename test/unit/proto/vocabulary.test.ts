// Small wire vocabulary both daemons and the CLI share: power states (proto/power-state.ts)
// and uuids (proto/ids.ts).
import t from 'tap'
import { isUuid } from '../../../proto/ids.js'
import { PowerState, powerStateLabel, powerStateName } from '../../../proto/power-state.js'

t.test("power states: Nova's codes, names for logs, openstackclient's labels", async (t) => {
  t.same(PowerState, { NOSTATE: 0, RUNNING: 1, PAUSED: 3, SHUTDOWN: 4, CRASHED: 6, SUSPENDED: 7 })
  t.equal(powerStateName(PowerState.CRASHED), 'CRASHED')
  t.equal(powerStateName(5), 'UNKNOWN(5)')
  // As the CLI printed them before the table moved here: by index, '' and out of range unknown.
  const before = ['NOSTATE', 'Running', '', 'Paused', 'Shutdown', '', 'Crashed', 'Suspended']
  for (const code of [undefined, -1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 100]) {
    t.equal(powerStateLabel(code), before[code ?? 0] || `Unknown (${code})`, `code ${code}`)
  }
})

t.test('uuids: the canonical lower-case form only', async (t) => {
  t.ok(isUuid('6f1c0c2e-8f0b-4c1e-9a59-0d5f4f6a0b11'))
  for (const bad of ['6F1C0C2E-8F0B-4C1E-9A59-0D5F4F6A0B11', '6f1c0c2e8f0b4c1e9a590d5f4f6a0b11', '{6f1c0c2e-8f0b-4c1e-9a59-0d5f4f6a0b11}', '6f1c0c2e-8f0b-4c1e-9a59-0d5f4f6a0b1', ' 6f1c0c2e-8f0b-4c1e-9a59-0d5f4f6a0b11', '']) {
    t.notOk(isUuid(bad), JSON.stringify(bad))
  }
})

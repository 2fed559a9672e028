// The one action ↔ cast table (proto/server-actions.ts) and the cast ids built on it.
import t from 'tap'
import { SERVER_ACTIONS, castAction, isServerAction, serverActionOf } from '../../../proto/server-actions.js'
import { backupNonce, backupRotationOf, castIdFor, parseCastId, snapshotImageOf } from '../../../proto/subjects.js'
import { Cast } from '../../../proto/gen/strato/agent/v1/agent.js'

const uuid = '6f1c0c2e-8f0b-4c1e-9a59-0d5f4f6a0b11'

t.test('every action goes out as its cast and comes back as itself, over the wire too', async (t) => {
  t.same(SERVER_ACTIONS, ['build', 'start', 'stop', 'reboot', 'reboot_hard', 'delete', 'snapshot', 'snapshot_compressed'])
  t.same(castAction('snapshot', uuid), { snapshot: { instanceUuid: uuid, compress: false } })
  t.same(castAction('snapshot_compressed', uuid), { snapshot: { instanceUuid: uuid, compress: true } })
  t.same(castAction('build', uuid), { build: { instanceUuid: uuid } })
  t.same(castAction('reboot', uuid), { reboot: { instanceUuid: uuid, hard: false } })
  t.same(castAction('reboot_hard', uuid), { reboot: { instanceUuid: uuid, hard: true } })
  for (const action of SERVER_ACTIONS) {
    const decoded = Cast.decode(Cast.encode({ id: 'x', ...castAction(action, uuid) }).finish())
    t.same(serverActionOf(decoded), { action, instanceUuid: uuid }, action)
  }
})

t.test('a cast without a server action carries none', async (t) => {
  t.equal(serverActionOf({}), undefined)
  t.equal(serverActionOf(Cast.decode(Cast.encode({ id: 'p', ping: { note: 'hi' } }).finish())), undefined, 'a ping')
  t.same(serverActionOf({ reboot: {} }), { action: 'reboot', instanceUuid: '' }, 'a reboot without hard is soft')
})

t.test('cast ids name their action', async (t) => {
  t.equal(castIdFor('build', uuid, 'n'), `build.${uuid}`, 'one build per server')
  t.equal(castIdFor('reboot_hard', uuid, 'ab12'), `reboot_hard.${uuid}.ab12`)
  for (const action of SERVER_ACTIONS) t.same(parseCastId(castIdFor(action, uuid, 'n')), { action, uuid })
  t.equal(parseCastId(`ping.${uuid}`), undefined)
  t.equal(parseCastId('build'), undefined)
  t.equal(parseCastId(`constructor.${uuid}`), undefined, 'no inherited property passes as an action')
  t.notOk(isServerAction('toString'))
})

t.test("a snapshot's cast id names its image", async (t) => {
  const image = '0b8f7b52-3f4e-4b8a-9d0e-5c1c2d3e4f50'
  t.equal(snapshotImageOf(castIdFor('snapshot', uuid, image)), image)
  t.equal(snapshotImageOf(castIdFor('snapshot_compressed', uuid, image)), image)
  t.equal(snapshotImageOf(castIdFor('reboot', uuid, 'ab12')), undefined, 'other actions name no image')
  t.equal(snapshotImageOf(`snapshot.${uuid}`), undefined, 'no nonce, no image')
})

t.test("a backup's cast id names its image and its rotation", async (t) => {
  const image = '0b8f7b52-3f4e-4b8a-9d0e-5c1c2d3e4f50'
  const id = castIdFor('snapshot', uuid, backupNonce(image, 3))
  t.same(parseCastId(id), { action: 'snapshot', uuid }, 'a snapshot cast')
  t.equal(snapshotImageOf(id), image)
  t.equal(backupRotationOf(id), 3)
  t.equal(backupRotationOf(castIdFor('snapshot', uuid, backupNonce(image, 0))), 0, 'rotation 0')
  t.equal(backupRotationOf(castIdFor('snapshot', uuid, image)), undefined, 'a plain snapshot has none')
  t.equal(backupRotationOf(castIdFor('reboot', uuid, `${image}.3`)), undefined, 'nor has another action')
})

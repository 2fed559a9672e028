// Volume work on the wire (proto/volume-work.ts): cast ids name the op and the volume or snapshot,
// and never parse as a server action's (so a server never takes a volume's result), snapshot work
// is told from volume work, and a received piece of work is filled in or refused by its op.
import t from 'tap'
import { parseCastId } from '../../../proto/subjects.js'
import { VOLUME_OPS, isSnapshotOp, parseVolumeCastId, volumeAction, volumeCastId, volumeWorkOf } from '../../../proto/volume-work.js'

const id = '6f1c0c2e-8f0b-4c1e-9a59-0d5f4f6a0b11'

t.test('cast ids round-trip, and are no server cast ids', async (t) => {
  for (const op of VOLUME_OPS) {
    const castId = volumeCastId(op, id, 'abcd1234')
    t.same(parseVolumeCastId(castId), { op, id }, castId)
    t.equal(parseCastId(castId), undefined, `${castId} is not a server action`)
    t.equal(volumeAction(op), `volume_${op}`)
  }
  t.equal(parseVolumeCastId(`build.${id}`), undefined)
  t.equal(parseVolumeCastId(`volume_shrink.${id}.x`), undefined)
  t.equal(parseVolumeCastId('volume_create'), undefined)
  // Which row a cast is pending on (the controller checks it before the agent runs the cast).
  t.same(VOLUME_OPS.filter(isSnapshotOp), ['create_snapshot', 'delete_snapshot'], 'snapshot work is pending on the snapshot; the rest on the volume')
})

t.test('received work: missing fields become empty, an unknown op is refused', async (t) => {
  t.same(volumeWorkOf({ op: 'extend', volumeId: id, sizeGb: 3 }), { op: 'extend', volumeId: id, snapshotId: '', sizeGb: 3, sourceVolid: '', sourceSnapshotId: '', imageId: '', attached: [] })
  t.same(volumeWorkOf({ op: 'extend', volumeId: id, sizeGb: 3, attached: [{ instanceUuid: id }] }).attached, [{ instanceUuid: id, device: '', volumeId: '' }], 'the servers an extend tells')
  t.same(volumeWorkOf({ op: 'delete_snapshot', volumeId: id, snapshotId: id, attached: [{ instanceUuid: id, device: 'vdb', volumeId: id }] }).attached, [{ instanceUuid: id, device: 'vdb', volumeId: id }], 'the servers a snapshot delete has pull it in, with their volumes')
  t.throws(() => volumeWorkOf({ op: 'shrink', volumeId: id }), /unknown volume op 'shrink'/)
  t.throws(() => volumeWorkOf({}), /unknown volume op ''/)
})

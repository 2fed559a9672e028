// The volume and snapshot status table: every action's allowed statuses, its refusals (naming the
// status), the backend outcomes, and that every move the actions and outcomes make is in the table.
import t from 'tap'
import { FailedPrecondition, InvalidArgument } from '../../../../proto/errors.js'
import {
  TRANSITIONS, VOLUME_STATUSES, SNAPSHOT_TRANSITIONS, beginSnapshotDelete, beginVolumeAction, checkSnapshotSource, checkVolumeTransition,
  resetStatus, snapshotOutcome, volumeOutcome, type VolumeAction, type VolumeStatus,
  ATTACHMENT_STATUSES, ATTACHMENT_TRANSITIONS, attachOutcome, checkAttachmentTransition,
} from '../../../../controller/volume/states.js'
import { VOLUME_OPS } from '../../../../proto/volume-work.js'

const v = (status: string) => ({ id: 'v1', status })
const allowedFrom = (action: VolumeAction) => VOLUME_STATUSES.filter((s) => {
  try {
    beginVolumeAction(action, v(s))
    return true
  } catch {
    return false
  }
})

t.test("each action is allowed from Cinder's statuses only", async (t) => {
  t.same(allowedFrom('delete'), ['available', 'error', 'error_extending'], 'delete (cinder volume/api.py)')
  t.same(allowedFrom('extend'), ['available', 'in-use'], 'extend (in-use: Cinder 3.42)')
  t.same(allowedFrom('attach'), ['available'], 'attach (cinder attachment_create)')
  t.same(allowedFrom('attach_multi'), ['available', 'in-use'], 'attach of a multiattach volume')
  t.notOk(allowedFrom('force_delete').includes('reserved'), 'force delete never takes a reserved volume')
  t.same(allowedFrom('snapshot'), ['available'], 'snapshot')
  t.same(allowedFrom('snapshot_force'), ['available', 'in-use'], 'snapshot with force')
  t.same(allowedFrom('clone'), ['available'], 'a clone\'s source')
  t.notOk(allowedFrom('force_delete').includes('in-use'), 'force delete never takes an attached volume')
  t.ok(allowedFrom('force_delete').includes('error_deleting'), 'force delete takes a stuck delete')
  t.notOk(allowedFrom('update').includes('maintenance'))
})

t.test('a refusal names the status and what the action needs', async (t) => {
  t.throws(() => beginVolumeAction('delete', v('in-use')), new FailedPrecondition('cannot delete volume v1 while its status is in-use; delete needs status available or error or error_extending'))
  t.throws(() => beginVolumeAction('extend', v('creating')), /cannot extend volume v1 while its status is creating; extend needs status available/)
  t.throws(() => beginVolumeAction('snapshot', v('in-use')), /cannot snapshot volume v1 while its status is in-use/)
})

t.test('actions move the status through the table', async (t) => {
  t.equal(beginVolumeAction('delete', v('error')), 'deleting')
  t.equal(beginVolumeAction('extend', v('available')), 'extending')
  t.equal(beginVolumeAction('snapshot', v('available')), 'available', 'a snapshot leaves the volume\'s status alone')
  t.throws(() => checkVolumeTransition('deleting', 'available'), FailedPrecondition)
})

t.test('backend outcomes: every op has one, and each is a move of the table', async (t) => {
  t.same(volumeOutcome('create', true), { while: 'creating', to: 'available' })
  t.same(volumeOutcome('create', false), { while: 'creating', to: 'error' })
  t.same(volumeOutcome('delete', true), { while: 'deleting', to: 'deleted' })
  t.same(volumeOutcome('delete', false), { while: 'deleting', to: 'error_deleting' })
  t.same(volumeOutcome('extend', false), { while: 'extending', to: 'error_extending' })
  t.same(snapshotOutcome('create_snapshot', false), { while: 'creating', to: 'error' })
  t.same(snapshotOutcome('delete_snapshot', true), { while: 'deleting', to: 'deleted' })
  for (const op of VOLUME_OPS) t.ok(volumeOutcome(op, true) ?? snapshotOutcome(op, true), `${op} has an outcome`)
})

t.test('the table names only known statuses, and every status can leave (no dead ends but deleted)', async (t) => {
  for (const [from, tos] of Object.entries(TRANSITIONS)) {
    t.ok(tos.length > 0, `${from} can move on`)
    for (const to of tos) t.ok(to === 'deleted' || VOLUME_STATUSES.includes(to as VolumeStatus), `${from} → ${to}`)
  }
  t.same(Object.keys(TRANSITIONS).sort(), [...VOLUME_STATUSES].sort(), 'every status has a row')
  t.ok(Object.values(SNAPSHOT_TRANSITIONS).every((tos) => tos.length > 0))
})

t.test('reset-state takes any status of the table and nothing else', async (t) => {
  for (const s of VOLUME_STATUSES) t.equal(resetStatus(s), s)
  t.throws(() => resetStatus('deleted'), InvalidArgument)
  t.throws(() => resetStatus(undefined), InvalidArgument)
})

t.test('snapshots: delete and use as a source by status', async (t) => {
  t.equal(beginSnapshotDelete({ id: 's1', status: 'available' }, false), 'deleting')
  t.throws(() => beginSnapshotDelete({ id: 's1', status: 'creating' }, false), /cannot delete snapshot s1 while its status is creating; delete needs status available or error/)
  t.equal(beginSnapshotDelete({ id: 's1', status: 'error_deleting' }, true), 'deleting', 'forced')
  t.equal(beginSnapshotDelete({ id: 's1', status: 'deleting' }, true), 'deleting', 'a stuck delete forced again')
  t.throws(() => beginSnapshotDelete({ id: 's1', status: 'deleting' }, false), /while its status is deleting/, 'but not unforced')
  t.throws(() => checkSnapshotSource({ id: 's1', status: 'error' }), /while its status is error; it must be available/)
})

t.test('attachments: their own table, and what a host\'s result makes of an attachment and its volume', async (t) => {
  t.same(Object.keys(ATTACHMENT_TRANSITIONS).sort(), [...ATTACHMENT_STATUSES].sort(), 'every status has a row')
  t.doesNotThrow(() => checkAttachmentTransition('reserved', 'attaching'))
  t.throws(() => checkAttachmentTransition('attached', 'attaching'), new FailedPrecondition('an attachment cannot go from status attached to attaching'))
  t.throws(() => checkAttachmentTransition('error', 'attached'), FailedPrecondition)
  t.same(attachOutcome('attach_volume', true, false), { while: 'attaching', attachment: 'attached', volume: 'in-use' })
  t.same(attachOutcome('attach_volume', false, false), { while: 'attaching', attachment: 'error', volume: 'available' }, 'a failed attach frees the volume')
  t.same(attachOutcome('attach_volume', false, true), { while: 'attaching', attachment: 'error', volume: 'in-use' }, 'unless another server has it (multiattach)')
  t.same(attachOutcome('detach_volume', true, false), { while: 'detaching', attachment: 'deleted', volume: 'available' })
  t.same(attachOutcome('detach_volume', true, true), { while: 'detaching', attachment: 'deleted', volume: 'in-use' })
  t.same(attachOutcome('detach_volume', false, false), { while: 'detaching', attachment: 'attached', volume: 'in-use' }, 'a failed detach leaves it attached')
})

// The server state table (controller/compute/server-states.ts), table-driven: every action against
// every (vm_state, task_state) pair. Allowed → the task_state the action runs under; refused →
// FAILED_PRECONDITION naming what is in the way. The expectations are written out here from Nova's
// compute/api.py checks, not read back from the table under test.
import t from 'tap'
import { FailedPrecondition, InvalidArgument } from '../../../../proto/errors.js'
import {
  CREATED, STATUSES, TASK_STATES, VM_STATES, beginAction, beginBackup, beginBuild, inProgress, localDelete, outcomeOf, resetTo, snapshotStep, statesFor, statusOf,
  type ServerAction, type TaskState, type VmState,
} from '../../../../controller/compute/server-states.js'

const ALL_VM = VM_STATES.filter((s) => s !== 'deleted')
const expected: Record<ServerAction, { from: readonly VmState[]; during: readonly TaskState[]; task: TaskState }> = {
  build: { from: ['building'], during: ['scheduling', 'networking', 'block_device_mapping'], task: 'spawning' },
  start: { from: ['stopped'], during: [''], task: 'powering-on' },
  stop: { from: ['active', 'error'], during: [''], task: 'powering-off' },
  reboot: { from: ['active'], during: ['', 'rebooting'], task: 'rebooting' },
  reboot_hard: { from: ['active', 'stopped', 'error'], during: ['', 'rebooting', 'rebooting_hard'], task: 'rebooting_hard' },
  delete: { from: ALL_VM, during: TASK_STATES, task: 'deleting' },
  // nova compute/api.py snapshot: @check_instance_state(vm_state=[ACTIVE, STOPPED, PAUSED, SUSPENDED]), task None.
  snapshot: { from: ['active', 'stopped'], during: [''], task: 'image_snapshot_pending' },
  snapshot_compressed: { from: ['active', 'stopped'], during: [''], task: 'image_snapshot_pending' },
}

t.test('every action × vm_state × task_state', async (t) => {
  let allowed = 0
  let refused = 0
  for (const [action, rule] of Object.entries(expected) as Array<[ServerAction, (typeof expected)[ServerAction]]>) {
    for (const vm of VM_STATES) {
      for (const task of TASK_STATES) {
        const server = { uuid: 'u-1', vm_state: vm, task_state: task }
        const what = `${action} from ${vm}/${task || '(none)'}`
        if (rule.from.includes(vm) && rule.during.includes(task)) {
          t.equal(beginAction(action, server), rule.task, `${what}: allowed, task ${rule.task}`)
          allowed++
          continue
        }
        let err: unknown
        try {
          beginAction(action, server)
        } catch (e) {
          err = e
        }
        t.ok(err instanceof FailedPrecondition, `${what}: refused`)
        t.equal((err as FailedPrecondition).code, 'FAILED_PRECONDITION')
        const message = (err as Error).message
        if (vm === 'deleted') t.match(message, 'is deleted', `${what}: names the state`)
        else if (!rule.from.includes(vm)) t.match(message, `vm_state ${vm}`, `${what}: names the vm_state`)
        else t.match(message, `task '${task}'`, `${what}: names the task in progress`)
        refused++
      }
    }
  }
  t.equal(allowed + refused, Object.keys(expected).length * VM_STATES.length * TASK_STATES.length, 'every combination was tried')
})

t.test('a delete asked again while deleting is already under way; nothing else is', async (t) => {
  for (const action of Object.keys(expected) as ServerAction[]) {
    for (const task of TASK_STATES) t.equal(inProgress(action, { task_state: task }), action === 'delete' && task === 'deleting', `${action} during '${task}'`)
  }
})

t.test("the conductor's build step: spawning once, then left alone; refused once the server is not building", async (t) => {
  t.equal(CREATED.vm_state, 'building')
  t.same(beginBuild({ uuid: 'u', ...CREATED }), { task: 'spawning', whileIn: ['scheduling', 'networking', 'block_device_mapping'] }, 'a new server moves to spawning')
  t.same(beginBuild({ uuid: 'u', ...CREATED }, 'block_device_mapping'), { task: 'block_device_mapping', whileIn: ['scheduling', 'networking'] }, 'one waiting for its volumes shows it')
  t.equal(beginBuild({ uuid: 'u', vm_state: 'building', task_state: 'block_device_mapping' }, 'block_device_mapping'), undefined, 'still waiting: no write')
  t.same(beginBuild({ uuid: 'u', vm_state: 'building', task_state: 'block_device_mapping' }), { task: 'spawning', whileIn: ['scheduling', 'networking', 'block_device_mapping'] }, 'its volumes made, it spawns')
  t.equal(beginBuild({ uuid: 'u', vm_state: 'building', task_state: 'spawning' }), undefined, 'a build delivered again: no write')
  for (const vm of ALL_VM.filter((v) => v !== 'building')) {
    t.throws(() => beginBuild({ uuid: 'u', vm_state: vm, task_state: '' }), FailedPrecondition, `refused from ${vm}`)
  }
  t.throws(() => beginBuild({ uuid: 'u', vm_state: 'deleted', task_state: '' }), /is deleted.*nothing to build/)
})

t.test('outcomes: what each action leaves, ok or failed', async (t) => {
  t.match(outcomeOf('build', true), { vm_state: 'active', task_state: '', launched: true })
  t.match(outcomeOf('build', false), { vm_state: 'error', task_state: '', release: true, fault: true })
  t.match(outcomeOf('stop', true), { vm_state: 'stopped', task_state: '' })
  t.match(outcomeOf('start', false), { task_state: '', fault: true })
  t.equal(outcomeOf('start', false).vm_state, undefined, 'a failed start keeps the vm_state')
  t.match(outcomeOf('reboot', false), { vm_state: 'error' })
  t.same(localDelete(), outcomeOf('delete', true), 'a local delete ends as a delete that succeeded')
  t.match(localDelete(), { vm_state: 'deleted', task_state: '', power_state: 0, release: true, terminated: true })
})

t.test('status filters: the default status of a vm_state means the vm_state, the status of a task the pairs shown as it (as Nova)', async (t) => {
  for (const status of STATUSES) {
    const pairs = statesFor(status)
    t.ok(pairs?.length, `${status} is a filter`)
    for (const vm of VM_STATES) {
      const isDefault = statusOf(vm, '') === status
      for (const task of TASK_STATES) {
        const listed = pairs!.some((p) => p.vm === vm && p.task === task)
        t.equal(listed, isDefault || statusOf(vm, task) === status, `${status}: ${vm}/${task || '(none)'}`)
      }
    }
  }
  t.ok(statesFor('ACTIVE')!.some((p) => p.vm === 'active' && p.task === 'rebooting'), 'ACTIVE still lists a rebooting active server (Nova filters on vm_state alone)')
  t.notOk(statesFor('ACTIVE')!.some((p) => p.vm !== 'active'), 'ACTIVE is only vm_state active')
  t.same(statesFor('reboot')!.map((p) => p.task), ['rebooting', 'rebooting', 'rebooting'], 'REBOOT (any case): rebooting, from active, stopped or error')
  t.same(statesFor('HARD_REBOOT')!.map((p) => `${p.vm}/${p.task}`), ['active/rebooting_hard', 'stopped/rebooting_hard', 'error/rebooting_hard'])
  t.equal(statesFor('RUNNING'), undefined, 'not a status')
})

t.test("os-resetState: active or error from any state but deleted, the task dropped", async (t) => {
  for (const vm of ALL_VM) {
    for (const state of ['active', 'error'] as const) {
      t.same(resetTo(state, { uuid: 'u', vm_state: vm }), { vm_state: state, task_state: '' }, `${vm} → ${state}`)
    }
  }
  t.throws(() => resetTo('error', { uuid: 'u', vm_state: 'deleted' }), FailedPrecondition)
  for (const bad of ['stopped', 'building', 'ERROR', '']) t.throws(() => resetTo(bad, { uuid: 'u', vm_state: 'active' }), InvalidArgument, `'${bad}' is not a state to reset to`)
})

t.test("a snapshot's steps follow Nova's order; a step reported again is fine; others are refused", async (t) => {
  const order = ['image_snapshot_pending', 'image_snapshot', 'image_pending_upload', 'image_uploading'] as const
  for (const [i, step] of order.slice(1).entries()) {
    t.equal(snapshotStep({ uuid: 'u-1', task_state: order[i]! }, step), step, `${order[i]} → ${step}`)
    t.equal(snapshotStep({ uuid: 'u-1', task_state: step }, step), step, `${step} again`)
  }
  t.throws(() => snapshotStep({ uuid: 'u-1', task_state: 'image_snapshot_pending' }, 'image_uploading'), { code: 'FAILED_PRECONDITION' }, 'no step skipped')
  t.throws(() => snapshotStep({ uuid: 'u-1', task_state: '' }, 'image_snapshot'), { code: 'FAILED_PRECONDITION', message: /task 'none'/ }, 'not during a snapshot')
  t.throws(() => snapshotStep({ uuid: 'u-1', task_state: 'deleting' }, 'image_uploading'), { code: 'FAILED_PRECONDITION', message: /deleting/ }, 'a delete took over')
  t.throws(() => snapshotStep({ uuid: 'u-1', task_state: 'image_snapshot' }, 'spawning'), { code: 'INVALID_ARGUMENT' }, 'no snapshot step')
  t.equal(statusOf('active', 'image_uploading'), 'ACTIVE', 'a server being snapshotted shows ACTIVE (nova _STATE_MAP)')
  t.same(outcomeOf('snapshot', false), { task_state: '', fault: true }, 'a failed snapshot leaves vm_state alone')
})

t.test("a backup: the snapshot's states, under image_backup, which stays until the upload is pending (Nova's backup_instance)", async (t) => {
  for (const vm of VM_STATES) {
    for (const task of TASK_STATES) {
      const s = { uuid: 'u-1', vm_state: vm, task_state: task }
      let snapshot: string | undefined
      try { snapshot = beginAction('snapshot', s) } catch { snapshot = undefined }
      if (snapshot) t.equal(beginBackup(s), 'image_backup', `${vm}/${task || 'none'}: backed up under image_backup`)
      else t.throws(() => beginBackup(s), { code: 'FAILED_PRECONDITION', message: vm === 'deleted' ? /is deleted/ : /back up/ }, `${vm}/${task || 'none'}: refused, as a snapshot is`)
    }
  }
  t.equal(snapshotStep({ uuid: 'u-1', task_state: 'image_backup' }, 'image_snapshot'), 'image_backup', "the host's image_snapshot step leaves image_backup")
  t.equal(snapshotStep({ uuid: 'u-1', task_state: 'image_backup' }, 'image_pending_upload'), 'image_pending_upload')
  t.throws(() => snapshotStep({ uuid: 'u-1', task_state: 'image_backup' }, 'image_uploading'), { code: 'FAILED_PRECONDITION' }, 'no step skipped')
  t.equal(statusOf('active', 'image_backup'), 'ACTIVE')
})

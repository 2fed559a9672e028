/**
 * Server states as Nova keeps them (`compute/vm_states.py`,
 * `compute/task_states.py`, `api/openstack/common.py`): which action is
 * allowed from which (vm_state, task_state), what the action's task_state is
 * while it runs, what its outcome does, and the API status derived from the
 * pair. Every check happens here, before anything is cast to a host, and
 * every vm_state/task_state the controller writes comes from here: the state
 * of a new server, an action's task, its outcome, the conductor's build step,
 * the hypervisor's power sync.
 */
import { FailedPrecondition, InvalidArgument } from '../../proto/errors.js'
import { PowerState as POWER } from '../../proto/power-state.js'
import type { ServerAction } from '../../proto/server-actions.js'

export const VM_STATES = ['building', 'active', 'stopped', 'error', 'deleted'] as const
export type VmState = (typeof VM_STATES)[number]
export const TASK_STATES = ['', 'scheduling', 'networking', 'block_device_mapping', 'spawning', 'powering-off', 'powering-on', 'rebooting', 'rebooting_hard', 'deleting', 'image_snapshot_pending', 'image_snapshot', 'image_pending_upload', 'image_uploading', 'image_backup'] as const
export type TaskState = (typeof TASK_STATES)[number]

/** Actions a user asks for; `build` is the controller's own (the one list: `proto/server-actions.ts`). */
export type { ServerAction }

interface ActionRule {
  /** vm_states the action is allowed from; undefined: any. */
  from?: readonly VmState[]
  /** task_states the action is allowed during. */
  during: readonly TaskState[]
  /** The task_state while the action runs. */
  task: TaskState
  /** How the message names the action. */
  verb: string
  /** Asked again while its own task runs, the action is already under way: nothing new is done. */
  idempotent?: boolean
}

const ACTIONS: Record<ServerAction, ActionRule> = {
  // block_device_mapping: the host waited for the server's volumes to be made (server-volumes.ts).
  build: { from: ['building'], during: ['scheduling', 'networking', 'block_device_mapping'], task: 'spawning', verb: 'build' },
  // nova compute/api.py: start needs STOPPED, stop ACTIVE or ERROR,
  // soft reboot ACTIVE, hard reboot also STOPPED and ERROR (and a reboot in progress).
  start: { from: ['stopped'], during: [''], task: 'powering-on', verb: 'start' },
  stop: { from: ['active', 'error'], during: [''], task: 'powering-off', verb: 'stop' },
  reboot: { from: ['active'], during: ['', 'rebooting'], task: 'rebooting', verb: 'reboot' },
  reboot_hard: { from: ['active', 'stopped', 'error'], during: ['', 'rebooting', 'rebooting_hard'], task: 'rebooting_hard', verb: 'hard-reboot' },
  // Delete is allowed from any state (a delete in progress is simply returned).
  delete: { during: TASK_STATES, task: 'deleting', verb: 'delete', idempotent: true },
  // nova compute/api.py snapshot: ACTIVE, STOPPED, PAUSED, SUSPENDED (Strato has no paused or
  // suspended vm_state yet) and no task; the API's task is image_snapshot_pending, the host's steps follow.
  snapshot: { from: ['active', 'stopped'], during: [''], task: 'image_snapshot_pending', verb: 'snapshot' },
  snapshot_compressed: { from: ['active', 'stopped'], during: [''], task: 'image_snapshot_pending', verb: 'snapshot' },
}

/**
 * Nova's backup (createBackup): a snapshot, from the same states, under its
 * own task (image_backup); its cast is a snapshot's.
 */
const BACKUP: ActionRule = { ...ACTIONS.snapshot, task: 'image_backup', verb: 'back up' }

/**
 * The steps a host reports while it makes a snapshot (Nova's
 * update_task_state with expected_state): each task_state, and the ones it
 * may follow. A step reported again (a resumed snapshot) is allowed.
 */
const SNAPSHOT_STEPS: Record<string, readonly TaskState[]> = {
  image_snapshot: ['image_snapshot_pending', 'image_snapshot', 'image_pending_upload', 'image_uploading', 'image_backup'],
  image_pending_upload: ['image_snapshot', 'image_pending_upload', 'image_uploading', 'image_backup'],
  image_uploading: ['image_pending_upload', 'image_uploading'],
}

/**
 * Checks a snapshot step a host reports against the table.
 * @throws InvalidArgument for a task_state that is no snapshot step.
 * @throws FailedPrecondition when the server's task does not allow it.
 */
export function snapshotStep(s: { uuid: string; task_state: string }, step: string): TaskState {
  const from = SNAPSHOT_STEPS[step]
  if (!from) throw new InvalidArgument(`'${step}' is not a snapshot step; expected ${Object.keys(SNAPSHOT_STEPS).join(', ')}`, { field: 'task_state' })
  if (!from.includes(s.task_state as TaskState)) throw new FailedPrecondition(`server ${s.uuid} is in task '${s.task_state || 'none'}', not a snapshot that can go to ${step}`)
  // Nova's backup has no image_snapshot step: it stays image_backup until the upload is pending.
  if (step === 'image_snapshot' && s.task_state === 'image_backup') return 'image_backup'
  return step as TaskState
}

/**
 * Attaching and detaching volumes (nova compute/api.py `attach_volume`,
 * `detach_volume`: `@check_instance_state(vm_state=[ACTIVE, PAUSED, RESIZED,
 * SOFT_DELETED, STOPPED, SHELVED, SHELVED_OFFLOADED])`, no task in progress;
 * Strato has only ACTIVE and STOPPED of those). As in Nova, the server's
 * task_state stays empty while its host attaches: the attachment carries the
 * pending work, so a stop or reboot may follow (the host runs them in order).
 */
export type VolumeAction = 'attach_volume' | 'detach_volume'

const VOLUME_ACTIONS: Record<VolumeAction, { from: readonly VmState[]; during: readonly TaskState[]; verb: string }> = {
  attach_volume: { from: ['active', 'stopped'], during: [''], verb: 'attach a volume to' },
  detach_volume: { from: ['active', 'stopped'], during: [''], verb: 'detach a volume from' },
}

/**
 * Checks that a volume may be attached to (or detached from) the server now.
 * @throws FailedPrecondition naming the server's status and what would be allowed.
 */
export function checkVolumeAction(action: VolumeAction, s: { uuid: string; vm_state: string; task_state: string }): void {
  const rule = VOLUME_ACTIONS[action]
  if (s.vm_state === 'deleted') throw new FailedPrecondition(`server ${s.uuid} is deleted`)
  if (!rule.from.includes(s.vm_state as VmState)) {
    throw new FailedPrecondition(`cannot ${rule.verb} server ${s.uuid} while it is ${statusOf(s.vm_state, s.task_state)} (vm_state ${s.vm_state}); it must be ${rule.from.map((v) => statusOf(v, '')).join(' or ')}`)
  }
  if (!rule.during.includes(s.task_state as TaskState)) {
    throw new FailedPrecondition(`cannot ${rule.verb} server ${s.uuid}: task '${s.task_state}' is in progress; wait for it to finish`)
  }
}

/** A new server: recorded with its ports, its build about to be cast (the scheduler has placed it already). */
export const CREATED = { vm_state: 'building', task_state: 'networking', power_state: POWER.NOSTATE } as const satisfies { vm_state: VmState; task_state: TaskState; power_state: number }

/** True when the same action is already under way on the server (a delete asked twice): nothing to do. */
export function inProgress(action: ServerAction, s: { task_state: string }): boolean {
  const rule = ACTIONS[action]
  return rule.idempotent === true && s.task_state === rule.task
}

/**
 * The task_state an action runs under, after checking it is allowed now.
 * @throws FailedPrecondition naming the server's state and what would be allowed.
 */
export function beginAction(action: ServerAction, s: { uuid: string; vm_state: string; task_state: string }): TaskState {
  return begin(ACTIONS[action], s)
}

/** beginAction for a backup: the task_state it runs under (image_backup), after the snapshot's checks. */
export function beginBackup(s: { uuid: string; vm_state: string; task_state: string }): TaskState {
  return begin(BACKUP, s)
}

function begin(rule: ActionRule, s: { uuid: string; vm_state: string; task_state: string }): TaskState {
  if (s.vm_state === 'deleted') throw new FailedPrecondition(`server ${s.uuid} is deleted`)
  if (rule.from && !rule.from.includes(s.vm_state as VmState)) {
    throw new FailedPrecondition(`cannot ${rule.verb} server ${s.uuid} while it is ${statusOf(s.vm_state, s.task_state)} (vm_state ${s.vm_state}); ${rule.verb} needs vm_state ${rule.from.join(' or ')}`)
  }
  if (!rule.during.includes(s.task_state as TaskState)) {
    throw new FailedPrecondition(`cannot ${rule.verb} server ${s.uuid}: task '${s.task_state}' is in progress; wait for it to finish`)
  }
  return rule.task
}

/**
 * The build rule as the conductor applies it when the host asks for the build
 * spec: the server must still be building; its task moves to spawning unless
 * it is there already (the cast was delivered again). `whileIn` is what the
 * write must still find (a concurrent delete wins).
 * @throws FailedPrecondition when the server is no longer building.
 */
export function beginBuild(s: { uuid: string; vm_state: string; task_state: string }, step: 'spawning' | 'block_device_mapping' = 'spawning'): { task: TaskState; whileIn: readonly TaskState[] } | undefined {
  const rule = ACTIONS.build
  if (!rule.from!.includes(s.vm_state as VmState)) throw new FailedPrecondition(`server ${s.uuid} is ${s.vm_state}${s.task_state ? ` (${s.task_state})` : ''}, not building: nothing to build`)
  if (step === 'block_device_mapping') return s.task_state === step ? undefined : { task: step, whileIn: rule.during.filter((t) => t !== step) }
  return rule.during.includes(s.task_state as TaskState) ? { task: rule.task, whileIn: rule.during } : undefined
}

/** What the server becomes when an action's cast comes back. */
export interface Outcome {
  vm_state?: VmState
  task_state: TaskState
  power_state?: number
  /** Release the allocation and the ports (a failed build, a finished delete). */
  release?: boolean
  /** Record the error as the server's fault. */
  fault?: boolean
  launched?: boolean
  terminated?: boolean
}

const OUTCOMES: Record<ServerAction, { ok: Outcome; error: Outcome }> = {
  build: { ok: { vm_state: 'active', task_state: '', launched: true }, error: { vm_state: 'error', task_state: '', release: true, fault: true } },
  start: { ok: { vm_state: 'active', task_state: '' }, error: { task_state: '', fault: true } },
  stop: { ok: { vm_state: 'stopped', task_state: '' }, error: { task_state: '', fault: true } },
  // Nova puts a server whose reboot failed in ERROR.
  reboot: { ok: { vm_state: 'active', task_state: '' }, error: { vm_state: 'error', task_state: '', fault: true } },
  reboot_hard: { ok: { vm_state: 'active', task_state: '' }, error: { vm_state: 'error', task_state: '', fault: true } },
  delete: { ok: { vm_state: 'deleted', task_state: '', power_state: POWER.NOSTATE, release: true, terminated: true }, error: { vm_state: 'error', task_state: '', fault: true } },
  // A failed snapshot leaves the server as it was (Nova: the image is deleted, the fault recorded).
  snapshot: { ok: { task_state: '' }, error: { task_state: '', fault: true } },
  snapshot_compressed: { ok: { task_state: '' }, error: { task_state: '', fault: true } },
}

export function outcomeOf(action: ServerAction, ok: boolean): Outcome {
  return OUTCOMES[action][ok ? 'ok' : 'error']
}

/** A delete the controller finishes itself (Nova's local delete: no host, or its host is down): as a delete that succeeded. */
export function localDelete(): Outcome {
  return OUTCOMES.delete.ok
}

/** The vm_states an admin may force with Nova's os-resetState. */
export const RESET_STATES = ['active', 'error'] as const satisfies readonly VmState[]

/**
 * Nova's os-resetState, an admin's way out of a stuck state: the server
 * becomes `state` (ACTIVE or ERROR) from any state but deleted, and the task
 * in progress is dropped, so its result, if it ever comes, is stale.
 * @throws InvalidArgument for another state, FailedPrecondition for a deleted server.
 */
export function resetTo(state: string, s: { uuid: string; vm_state: string }): Outcome & { vm_state: VmState } {
  if (!(RESET_STATES as readonly string[]).includes(state)) throw new InvalidArgument(`the state to reset to must be one of ${RESET_STATES.join(', ')}, got '${state}'`, { field: 'state' })
  if (s.vm_state === 'deleted') throw new FailedPrecondition(`server ${s.uuid} is deleted`)
  return { vm_state: state as VmState, task_state: '' }
}

/** The API status (nova `_STATE_MAP`). */
export function statusOf(vmState: string, taskState: string): string {
  switch (vmState) {
    case 'building':
      return 'BUILD'
    case 'active':
    case 'stopped':
    case 'error':
      if (taskState === 'rebooting') return 'REBOOT'
      if (taskState === 'rebooting_hard') return 'HARD_REBOOT'
      return vmState === 'active' ? 'ACTIVE' : vmState === 'stopped' ? 'SHUTOFF' : 'ERROR'
    case 'deleted':
      return 'DELETED'
    default:
      return 'UNKNOWN'
  }
}

/**
 * The (vm_state, task_state) pairs a status filter means, for listings, as
 * Nova's `task_and_vm_state_from_status` does: a vm_state's default status
 * (ACTIVE, SHUTOFF, ERROR, BUILD, DELETED) means that vm_state whatever its
 * task (Nova filters on vm_state alone then, so ACTIVE still lists a server
 * that is rebooting), and a task's status (REBOOT, HARD_REBOOT) means the
 * pairs `statusOf` shows as it. Undefined for a status not in STATUSES.
 */
export function statesFor(status: string): Array<{ vm: VmState; task: TaskState }> | undefined {
  const wanted = status.toUpperCase()
  if (!(STATUSES as readonly string[]).includes(wanted)) return undefined
  return VM_STATES.flatMap((vm) => {
    const tasks = statusOf(vm, '') === wanted ? TASK_STATES : TASK_STATES.filter((task) => statusOf(vm, task) === wanted)
    return tasks.map((task) => ({ vm, task }))
  })
}

export const STATUSES = ['BUILD', 'ACTIVE', 'SHUTOFF', 'REBOOT', 'HARD_REBOOT', 'ERROR', 'DELETED'] as const

/**
 * What the hypervisor's report means for a server with no action in
 * progress (nova `_sync_instance_power_state`; the hypervisor is the
 * authority): a guest that stopped by itself makes the server SHUTOFF, one
 * that runs makes it ACTIVE, one that is gone makes it ERROR.
 */
export function syncPower(vmState: string, power: number | 'missing'): { vm_state?: VmState; power_state: number; fault?: string } | undefined {
  if (vmState !== 'active' && vmState !== 'stopped') return undefined
  if (power === 'missing') return { vm_state: 'error', power_state: POWER.NOSTATE, fault: 'the guest is gone from its host\'s hypervisor' }
  if (vmState === 'active' && (power === POWER.SHUTDOWN || power === POWER.CRASHED)) return { vm_state: 'stopped', power_state: power }
  if (vmState === 'stopped' && power === POWER.RUNNING) return { vm_state: 'active', power_state: power }
  return { power_state: power }
}

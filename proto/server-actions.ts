/**
 * Server actions and the casts that carry them (agent.v1 `Cast`, whose oneof
 * has one member per kind of work): the one table the controller uses to
 * send an action and the agent uses to read it back (or to rebuild it from a
 * cast id when it resumes after a restart).
 *
 * Plain objects in ts-proto's shape, so both the generated `Cast` and the
 * controller's transport-free `CastAction` take them as they are.
 */

/** Actions on a server a cast carries; `build` is the controller's own, the others users ask for. */
export type ServerAction = 'build' | 'start' | 'stop' | 'reboot' | 'reboot_hard' | 'delete' | 'snapshot' | 'snapshot_compressed'

/** The server-action members of a cast as they are sent: exactly one is set. */
export interface ServerCast {
  build?: { instanceUuid: string }
  start?: { instanceUuid: string }
  stop?: { instanceUuid: string }
  reboot?: { instanceUuid: string; hard: boolean }
  delete?: { instanceUuid: string }
  snapshot?: { instanceUuid: string; compress: boolean }
}

/** The same members as they are received (decoded protobuf: any field may be missing). */
export interface ReceivedCast {
  build?: { instanceUuid?: string } | undefined
  start?: { instanceUuid?: string } | undefined
  stop?: { instanceUuid?: string } | undefined
  reboot?: { instanceUuid?: string; hard?: boolean } | undefined
  delete?: { instanceUuid?: string } | undefined
  snapshot?: { instanceUuid?: string; compress?: boolean } | undefined
}

interface CastRow {
  /** The cast that carries the action. */
  cast(instanceUuid: string): ServerCast
  /** The member of a received cast that carries this action, if it does. */
  carried(cast: ReceivedCast): { instanceUuid?: string } | undefined
}

/** Action ↔ cast. Reading tries the rows in this order; a cast carries one action. */
const CASTS: Record<ServerAction, CastRow> = {
  build: { cast: (instanceUuid) => ({ build: { instanceUuid } }), carried: (c) => c.build },
  start: { cast: (instanceUuid) => ({ start: { instanceUuid } }), carried: (c) => c.start },
  stop: { cast: (instanceUuid) => ({ stop: { instanceUuid } }), carried: (c) => c.stop },
  reboot: { cast: (instanceUuid) => ({ reboot: { instanceUuid, hard: false } }), carried: (c) => (c.reboot && !c.reboot.hard ? c.reboot : undefined) },
  reboot_hard: { cast: (instanceUuid) => ({ reboot: { instanceUuid, hard: true } }), carried: (c) => (c.reboot?.hard ? c.reboot : undefined) },
  delete: { cast: (instanceUuid) => ({ delete: { instanceUuid } }), carried: (c) => c.delete },
  // A server snapshot (createImage); the image is named by the cast id (see snapshotImageOf), compression by the action.
  snapshot: { cast: (instanceUuid) => ({ snapshot: { instanceUuid, compress: false } }), carried: (c) => (c.snapshot && !c.snapshot.compress ? c.snapshot : undefined) },
  snapshot_compressed: { cast: (instanceUuid) => ({ snapshot: { instanceUuid, compress: true } }), carried: (c) => (c.snapshot?.compress ? c.snapshot : undefined) },
}

/** Whether an action is a server snapshot (createImage), compressed or not. */
export function isSnapshot(action: ServerAction): action is 'snapshot' | 'snapshot_compressed' {
  return action === 'snapshot' || action === 'snapshot_compressed'
}

/** Every server action, in the table's order. */
export const SERVER_ACTIONS = Object.keys(CASTS) as readonly ServerAction[]

export function isServerAction(name: string): name is ServerAction {
  return Object.hasOwn(CASTS, name)
}

/** The cast members that carry `action` on server `instanceUuid`. */
export function castAction(action: ServerAction, instanceUuid: string): ServerCast {
  return CASTS[action].cast(instanceUuid)
}

/** The server action a received cast carries (and its server), or undefined when it carries none (a ping, or an unknown kind). */
export function serverActionOf(cast: ReceivedCast): { action: ServerAction; instanceUuid: string } | undefined {
  for (const action of SERVER_ACTIONS) {
    const carried = CASTS[action].carried(cast)
    if (carried) return { action, instanceUuid: carried.instanceUuid ?? '' }
  }
  return undefined
}

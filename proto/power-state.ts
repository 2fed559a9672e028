/**
 * Power state codes, as Nova's `compute/power_state.py`: what the agents
 * report (agent.v1 `power_state`), what the controller stores and serves
 * (compute.v1 Server `power_state`), and what the CLI shows. The one place
 * the codes are spelled.
 *
 * 2 (BLOCKED) and 5 (SHUTOFF) are not used: Nova folds them into RUNNING
 * and SHUTDOWN.
 */
export const PowerState = {
  NOSTATE: 0,
  RUNNING: 1,
  PAUSED: 3,
  /** Shut down or shut off: the guest is defined but not running. */
  SHUTDOWN: 4,
  CRASHED: 6,
  SUSPENDED: 7,
} as const
export type PowerState = (typeof PowerState)[keyof typeof PowerState]

/** Name of a power state code, for messages and logs (`RUNNING`, `UNKNOWN(5)`). */
export function powerStateName(state: number): string {
  for (const [name, code] of Object.entries(PowerState)) if (code === state) return name
  return `UNKNOWN(${String(state)})`
}

/** openstackclient's `PowerStateColumn` labels. */
const LABELS: Record<PowerState, string> = {
  [PowerState.NOSTATE]: 'NOSTATE',
  [PowerState.RUNNING]: 'Running',
  [PowerState.PAUSED]: 'Paused',
  [PowerState.SHUTDOWN]: 'Shutdown',
  [PowerState.CRASHED]: 'Crashed',
  [PowerState.SUSPENDED]: 'Suspended',
}

/** How `openstack server list/show` prints a power state code (absent: NOSTATE; unknown: `Unknown (5)`). */
export function powerStateLabel(code: number | undefined): string {
  return (LABELS as Record<number, string | undefined>)[code ?? PowerState.NOSTATE] ?? `Unknown (${code})`
}

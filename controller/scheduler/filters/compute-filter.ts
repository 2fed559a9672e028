/** ComputeFilter: the host's service is enabled and up (heartbeats arrive). */
import type { HostFilter } from '../model.js'

export const computeFilter: HostFilter = {
  name: 'ComputeFilter',
  hostPasses: (host) => !host.disabled && host.up,
  reason: (host) => (host.disabled ? `'${host.host}' disabled${host.disabledReason ? `: ${host.disabledReason}` : ''}` : `'${host.host}' down`),
}

/** AvailabilityZoneFilter: the host is in the requested availability zone (any host when none is requested). */
import type { HostFilter } from '../model.js'

export const availabilityZoneFilter: HostFilter = {
  name: 'AvailabilityZoneFilter',
  hostPasses: (host, spec) => !spec.availabilityZone || host.availabilityZone === spec.availabilityZone,
  describe: (spec) => (spec.availabilityZone ? `az=${spec.availabilityZone}` : undefined),
}

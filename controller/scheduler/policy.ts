/** Policy entries for strato.compute.v1.Hosts and strato.placement.v1 (the mechanism is in identity/policy.ts): operators only. */
import type { PolicyEntry } from '../identity/policy.js'

const H = 'strato.compute.v1.Hosts'
const P = 'strato.placement.v1.Placement'

export const schedulerPolicy: Record<string, PolicyEntry> = {
  [`${H}/ListHosts`]: { allow: ['cloud_admin'] },
  [`${H}/DiscoverHosts`]: { allow: ['cloud_admin'] },
  [`${H}/UpdateHost`]: { allow: ['cloud_admin'] },
  [`${H}/CreateJoinToken`]: { allow: ['cloud_admin'] },
  [`${H}/ListJoinTokens`]: { allow: ['cloud_admin'] },
  [`${H}/DeleteJoinToken`]: { allow: ['cloud_admin'] },
  // The join token in the request is the credential (checked by JoinTokens.consume).
  [`${H}/JoinHost`]: { allow: ['public'] },

  [`${P}/ListResourceProviders`]: { allow: ['cloud_admin'] },
  [`${P}/GetInventories`]: { allow: ['cloud_admin'] },
  [`${P}/GetUsages`]: { allow: ['cloud_admin'] },
  [`${P}/ListAllocations`]: { allow: ['cloud_admin'] },
}

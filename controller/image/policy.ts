/**
 * Policy entries for strato.image.v1. Who may see or change a given image
 * depends on its owner, visibility and members: the catalog applies those
 * rules (a hidden image is NOT_FOUND, as Glance does), the table gates the rest.
 */
import type { PolicyEntry } from '../identity/policy.js'

const I = 'strato.image.v1.Images'

export const imagePolicy: Record<string, PolicyEntry> = {
  [`${I}/CreateImage`]: { allow: ['authenticated'] },
  [`${I}/GetImage`]: { allow: ['authenticated'] },
  [`${I}/ListImages`]: { allow: ['authenticated'] },
  [`${I}/UpdateImage`]: { allow: ['authenticated'] },
  [`${I}/DeleteImage`]: { allow: ['authenticated'] },
  // Hosts upload a server snapshot's data with the conductor's image-upload token.
  [`${I}/UploadImage`]: { allow: ['authenticated'], imageUpload: true },
  // Hosts download the image of a build with the build spec's image-read token.
  [`${I}/DownloadImage`]: { allow: ['authenticated'], imageRead: true },
  [`${I}/DeactivateImage`]: { allow: ['cloud_admin'] },
  [`${I}/ReactivateImage`]: { allow: ['cloud_admin'] },
  [`${I}/AddImageMember`]: { allow: ['authenticated'] },
  [`${I}/UpdateImageMember`]: { allow: ['authenticated'] },
  [`${I}/ListImageMembers`]: { allow: ['authenticated'] },
  [`${I}/DeleteImageMember`]: { allow: ['authenticated'] },
}

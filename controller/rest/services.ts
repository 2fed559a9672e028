/**
 * The REST services the controller serves, and the domain objects their
 * handlers call (the same ones the gRPC adapters in api/ call). One line per
 * service: each lives in its own file of this directory.
 */
import type { CatalogEntry } from '../../proto/gen/strato/identity/v1/identity.js'
import type { Authenticator } from '../identity/auth.js'
import type { IdentityCatalog } from '../identity/catalog.js'
import type { FlavorCatalog } from '../compute/flavors.js'
import type { KeypairCatalog } from '../compute/keypairs.js'
import type { ServerCatalog } from '../compute/servers.js'
import type { ServerGroupCatalog } from '../compute/server-groups.js'
import type { HostRegistry } from '../compute/hosts.js'
import type { ImageCatalog } from '../image/catalog.js'
import type { QuotaEngine } from '../quota/quota.js'
import type { NetworkCatalog } from '../network/networks.js'
import type { SubnetCatalog } from '../network/subnets.js'
import type { PortCatalog } from '../network/ports.js'
import type { FloatingIpCatalog } from '../network/floating-ips.js'
import type { SecurityGroupCatalog } from '../network/security-groups.js'
import type { RouterCatalog } from '../network/routers.js'
import type { Placement } from '../scheduler/placement.js'
import type { VolumeCatalog } from '../volume/volumes.js'
import type { SnapshotCatalog } from '../volume/snapshots.js'
import type { VolumeTypeCatalog } from '../volume/types.js'
import type { VolumeUploads } from '../volume/uploads.js'
import type { AttachmentCatalog } from '../volume/attachments.js'
import type { VolumeBackends } from '../volume/backends.js'
import type { RestService } from './http.js'
import { identityRest } from './identity.js'
import { networkRest } from './network.js'
import { computeRest } from './compute.js'
import { imageRest, type ImageUploads } from './image.js'
import { volumeRest } from './volume.js'

export interface RestDomain {
  identity: IdentityCatalog
  auth: Authenticator
  /** The catalog REST tokens carry: every service at its REST endpoint. */
  serviceCatalog: () => CatalogEntry[]
  region: string
  flavors: FlavorCatalog
  keypairs: KeypairCatalog
  servers: ServerCatalog
  serverGroups: ServerGroupCatalog
  hosts: HostRegistry
  images: ImageCatalog
  quota: QuotaEngine
  network: { networks: NetworkCatalog; subnets: SubnetCatalog; ports: PortCatalog; floatingIps: FloatingIpCatalog; securityGroups: SecurityGroupCatalog; routers: RouterCatalog }
  placement: Placement
  volume: { volumes: VolumeCatalog; snapshots: SnapshotCatalog; types: VolumeTypeCatalog; uploads: VolumeUploads; attachments: AttachmentCatalog; backends: Pick<VolumeBackends, 'zones' | 'names'> }
  defaultAvailabilityZone: string
  /** gRPC's upload turns and limits, which REST image uploads share. */
  imageUploads: ImageUploads
}

export function restServices(d: RestDomain): RestService[] {
  return [
    identityRest(d),
    networkRest(d),
    computeRest(d),
    imageRest(d),
    volumeRest(d),
  ]
}

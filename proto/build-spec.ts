/**
 * What the conductor hands an agent for a build (agent.v1 BuildSpec on the
 * wire; here the one plain-object shape the controller and the agent use).
 */
export interface BuildSpec {
  instanceUuid: string
  name: string
  displayName: string
  vcpus: number
  memoryMb: number
  diskGb: number
  projectId: string
  imageId: string
  imageChecksum: string
  /** Downloads `imageId` only (no user, no roles), for the host the server is placed on. */
  imageReadToken: string
  /** The image's disk_format ('' from a controller older than issue 15: the host then asks GetImage). */
  imageDiskFormat: string
  nics: Array<{ portId: string; macAddress: string; networkId: string; networkType: string; physicalNetwork: string; segmentationId: number; fixedIps: string[]; ips: BuildIp[] }>
  keyName: string
  publicKey: string
  /** Base64, as the API took it; '' when none. */
  userData: string
  metadata: Record<string, string>
  availabilityZone: string
  hostname: string
  /** Give the guest a config drive (servers created before migration 0009 have none). */
  configDrive: boolean
}

/** A NIC's fixed address with its subnet, for the guest's static network configuration. */
export interface BuildIp {
  address: string
  subnetId: string
  ipVersion: number
  cidr: string
  gatewayIp: string
  dnsNameservers: string[]
  hostRoutes: Array<{ destination: string; nexthop: string }>
}


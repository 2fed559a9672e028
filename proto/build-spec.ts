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
  /**
   * The server's volumes (its block device mappings), of this host's backend
   * or another's (attached over the network):
   * the one on vda is the root disk (imageId is '' then), the others attach as
   * their devices. Empty for a server with none.
   */
  volumes: BuildVolume[]
}

/** A volume a server is built with. */
export interface BuildVolume {
  volumeId: string
  /** vda (the boot volume), vdb…vdz. */
  device: string
  /** 0: the boot volume; -1: not bootable. */
  bootIndex: number
  attachmentId: string
  /** The host whose volume backend keeps it: this host (its file) or another (a network export). */
  volumeHost: string
  /** A multiattach volume: its host's network export on every host, as a shareable disk (false from an older controller). */
  multiattach: boolean
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


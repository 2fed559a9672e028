/**
 * libvirt's numbers and plain types, with no FFI attached: safe to import on
 * any thread (the FFI itself, `ffi.ts`, is loaded only by the libvirt worker).
 */

/** The raw libvirt error (`virError`), as read on the calling thread. */
export interface VirErrorDetails {
  /** `virErrorNumber`, e.g. 42 = VIR_ERR_NO_DOMAIN. */
  code: number
  /** `virErrorDomain`: which part of libvirt raised it. */
  domain: number
  /** 1 warning, 2 error. */
  level: number
  message: string
  /** The C function that failed. */
  call: string
}

export function isVirErrorDetails(value: unknown): value is VirErrorDetails {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as VirErrorDetails).code === 'number' &&
    typeof (value as VirErrorDetails).call === 'string'
  )
}

/** `virDomainState` */
export const VirDomainState = {
  NOSTATE: 0,
  RUNNING: 1,
  BLOCKED: 2,
  PAUSED: 3,
  SHUTDOWN: 4,
  SHUTOFF: 5,
  CRASHED: 6,
  PMSUSPENDED: 7,
} as const

/** `virDomainUndefineFlagsValues` */
export const VirDomainUndefineFlags = {
  MANAGED_SAVE: 1,
  SNAPSHOTS_METADATA: 2,
  NVRAM: 4,
  KEEP_NVRAM: 8,
  CHECKPOINTS_METADATA: 16,
} as const

/** `virDomainRebootFlagValues` / `virDomainShutdownFlagValues` */
export const VirDomainShutdownFlags = {
  DEFAULT: 0,
  ACPI_POWER_BTN: 1,
  GUEST_AGENT: 2,
} as const

/** `virConnectListAllDomainsFlags` (0 = all) */
export const VirConnectListAllDomainsFlags = {
  ALL: 0,
  ACTIVE: 1,
  INACTIVE: 2,
} as const

/** `virDomainXMLFlags` */
export const VirDomainXMLFlags = {
  SECURE: 1,
  INACTIVE: 2,
} as const

/** `virDomainModificationImpact`: which definition a device change applies to. */
export const VirDomainModificationImpact = {
  CURRENT: 0,
  LIVE: 1,
  CONFIG: 2,
} as const

/** `virDomainBlockResizeFlags` */
export const VirDomainBlockResizeFlags = {
  BYTES: 1,
} as const

/** `virDomainQemuMonitorCommandFlags` (libvirt-qemu) */
export const VirDomainQemuMonitorCommandFlags = {
  HMP: 1,
} as const

/**
 * `virDomainSnapshotCreateFlags` Strato uses: an external snapshot of some
 * disks only, onto overlay files made beforehand, with no libvirt snapshot
 * metadata kept, all disks or none.
 */
export const VirDomainSnapshotCreateFlags = {
  NO_METADATA: 4,
  DISK_ONLY: 16,
  REUSE_EXT: 32,
  ATOMIC: 128,
} as const

/** Version number `major * 1_000_000 + minor * 1000 + micro` as `major.minor.micro`. */
export function formatVersion(version: number): string {
  return `${Math.floor(version / 1_000_000)}.${Math.floor(version / 1000) % 1000}.${version % 1000}`
}

/** `virErrorNumber` values Strato tells apart. */
export const VirErrorCode = {
  INTERNAL_ERROR: 1,
  NO_MEMORY: 2,
  NO_SUPPORT: 3,
  NO_CONNECT: 5,
  INVALID_CONN: 6,
  INVALID_DOMAIN: 7,
  INVALID_ARG: 8,
  OPERATION_FAILED: 9,
  XML_ERROR: 27,
  DOM_EXIST: 28,
  OPERATION_DENIED: 29,
  XML_DETAIL: 35,
  SYSTEM_ERROR: 38,
  RPC: 39,
  NO_DOMAIN: 42,
  INVALID_MAC: 44,
  AUTH_FAILED: 45,
  OPERATION_INVALID: 55,
  CONFIG_UNSUPPORTED: 67,
  OPERATION_TIMEOUT: 68,
  ARGUMENT_UNSUPPORTED: 74,
  OPERATION_ABORTED: 78,
  OPERATION_UNSUPPORTED: 84,
  AGENT_UNRESPONSIVE: 86,
  RESOURCE_BUSY: 87,
  ACCESS_DENIED: 88,
  XML_INVALID_SCHEMA: 92,
} as const

/**
 * The hypervisor contract of a Strato agent (after nova `virt/driver.py`).
 *
 * The compute manager talks to guests only through a {@link VirtDriver}. Two
 * implementations exist: `LibvirtDriver` (`libvirt/driver.ts`, QEMU/KVM through
 * libvirt over FFI) and `FakeDriver` (`fake.ts`, in memory, for fast tests and
 * the scheduling benchmark). One contract test suite
 * (`test/unit/agent/virt/contract.ts`) runs against both, so whatever is
 * written here is checked, not hoped for.
 *
 * Rules every implementation follows:
 *
 * - **The hypervisor is the authority on power state.** `getInfo()` and
 *   `listGuests()` report what the hypervisor says now, never a cached belief.
 *   Callers reconcile their records against it (Nova's power-state sync).
 * - **Spawn cleans up after itself.** If `spawn()` fails at any step, nothing it
 *   made is left behind: no defined guest, no running process. The caller's
 *   files (disks, console log directory) are the caller's and are not removed.
 * - **Destroy of a missing guest succeeds.** `destroy()` is idempotent, so a
 *   delete that was interrupted can simply be retried.
 * - **Errors come from the closed set in `proto/errors.ts`:** `NotFound` for an
 *   unknown guest, `AlreadyExists` when spawning a uuid or name that exists,
 *   `InvalidArgument` for a malformed spec (with `field`), `FailedPrecondition`
 *   when the guest's power state does not allow the action,
 *   `ResourceExhausted` when the host cannot fit the guest, `Unavailable` when
 *   the hypervisor cannot be reached, `Internal` for anything else.
 * - Guests are addressed by uuid. Every method is safe to call concurrently for
 *   different guests; callers serialise operations on one guest (per-instance
 *   operation locks live in the compute manager).
 */
import { isIP } from 'node:net'
import { FailedPrecondition, InvalidArgument } from '../../proto/errors.js'
import { isUuid } from '../../proto/ids.js'
import { PowerState, powerStateName } from '../../proto/power-state.js'

/** One disk attached to a guest. The file must exist; the driver never creates or deletes it. */
/**
 * A disk QEMU opens over the network: an NBD export of another host's volume
 * backend, over TLS (QEMU presents the host's client certificate, libvirt's
 * NBD x509 directory; the export admits no one without one).
 */
export interface NetworkDiskSource {
  protocol: 'nbd'
  address: string
  port: number
  /** The export's name. */
  name: string
  tls: boolean
}

/** The URL a network disk is known by (its `path`): `nbd://address:port/name`. */
export function networkDiskPath(n: Omit<NetworkDiskSource, 'tls'>): string {
  return `${n.protocol}://${n.address.includes(':') ? `[${n.address}]` : n.address}:${n.port}/${n.name}`
}

export interface DiskSpec {
  /** Absolute path of the image file on this host; for a network disk, its URL (`networkDiskPath`). */
  path: string
  /** Set for a disk served over the network (then `format` is what the export serves: raw). */
  network?: NetworkDiskSource
  /** On-disk format of `path`. */
  format: 'qcow2' | 'raw'
  /** Only paravirtualised disks are offered. */
  bus: 'virtio'
  /** Guest device name: `vda`, `vdb`, …; the first disk is the boot disk. */
  device: string
  /** What the guest reads as the disk's serial (a boot volume's: its id, 20 characters); none when absent. */
  serial?: string
  /**
   * Several guests write the disk at once (a multiattach volume, Nova's
   * `<shareable/>`): the hypervisor lets them share the write permission.
   * Only for a raw network disk (QEMU refuses a second writer of a qcow2 file).
   */
  shareable?: boolean
}

/**
 * A volume's disk, attached to a guest after it was built (Nova's
 * attach_volume). The file is the volume backend's; the driver never
 * creates or deletes it.
 */
export interface VolumeDiskSpec extends DiskSpec {
  /** What the guest sees as the disk's serial (`/dev/disk/by-id/virtio-<serial>`): the volume id, at most 20 characters. */
  serial: string
}

export interface DetachDiskOptions {
  /**
   * How long to wait for a running guest to let the device go (it must
   * acknowledge the hot-unplug) before giving up; the disk stays attached then.
   * @default 30000
   */
  timeoutMs?: number
}

/** One network interface, plugged into an existing Linux bridge (see `agent/net/bridge.ts`). */
export interface NicSpec {
  /** Unicast MAC address, `aa:bb:cc:dd:ee:ff` (lower case). */
  mac: string
  /** Name of the host bridge the tap device joins. */
  bridge: string
  /** Only virtio-net is offered. */
  model: 'virtio'
  /** The host's tap device for it (`tap` + port id prefix, so the firewall can name it); the hypervisor picks one when absent. */
  device?: string
}

/** Everything the driver needs to build a guest. Produced by the compute manager from the build spec. */
export interface GuestSpec {
  /** The server's uuid, also the hypervisor's domain uuid. Lower-case canonical form. */
  uuid: string
  /** Hypervisor domain name, unique on the host: `[A-Za-z0-9_.-]`, 1–64 characters. */
  name: string
  /** Number of virtual CPUs, ≥ 1. */
  vcpus: number
  /** Guest RAM in MiB, ≥ 16. */
  memoryMiB: number
  /** At least one disk; the first one boots. */
  disks: DiskSpec[]
  /** Zero or more NICs. */
  nics: NicSpec[]
  /**
   * Absolute path of the file the guest's serial console is written to. Its
   * directory must exist; output is appended across power cycles.
   */
  consoleLogPath: string
  /**
   * Absolute path of the guest's config drive (an ISO 9660 image labelled
   * config-2), attached read-only as a CD-ROM; none when absent.
   */
  configDrive?: string
}

/** A guest as the hypervisor sees it now. */
export interface GuestInfo {
  uuid: string
  name: string
  powerState: PowerState
  vcpus: number
  /** Configured maximum RAM. */
  memoryMiB: number
  /** CPU time consumed, in nanoseconds (0 when not running). */
  cpuTimeNs: number
}

/** Acceleration the host offers to guests. */
export type Accelerator = 'kvm' | 'tcg'

/** What an agent announces about its host (the inventory and the traits the scheduler filters on). */
export interface HostCapabilities {
  /** Host name as the hypervisor reports it. */
  hostname: string
  /** CPU model name, e.g. `EPYC-Rome` or `kvm64`. */
  cpuModel: string
  /** Guest architecture this host runs, e.g. `x86_64`. */
  arch: string
  /** Logical CPUs of the host. */
  vcpus: number
  /** Physical RAM of the host, MiB. */
  memoryMiB: number
  /** `kvm` when hardware virtualisation is usable, else `tcg` (emulation). */
  accelerator: Accelerator
  /** Hypervisor type, as Nova's `hypervisor_type`: `QEMU` (also for KVM) or `fake`. */
  hypervisorType: string
  /** Hypervisor version, `major.minor.micro`. */
  hypervisorVersion: string
}

export interface PowerOffOptions {
  /**
   * How long to wait for the guest to shut down after an ACPI power-button
   * press before pulling the plug. 0 means power off hard at once.
   * @default 60000
   */
  timeoutMs?: number
}

export interface RebootOptions {
  /** `soft`: ask the guest (ACPI), falling back to hard on timeout. `hard`: power cycle. */
  type: 'soft' | 'hard'
  /** For soft reboots, how long to wait for the guest to shut down. @default 60000 */
  timeoutMs?: number
}

export interface ConsoleOutputOptions {
  /** Return at most the last `maxBytes` bytes of the log (Nova caps at 100 KiB). @default 102400 */
  maxBytes?: number
}

/** Defaults shared by the implementations. */
export const DEFAULT_SHUTDOWN_TIMEOUT_MS = 60_000
export const DEFAULT_CONSOLE_MAX_BYTES = 100 * 1024
export const DEFAULT_DETACH_TIMEOUT_MS = 30_000
/** How long {@link VirtDriver.pullDisk} waits for its block job (it copies a volume's data through QEMU). */
export const DEFAULT_BLOCK_JOB_TIMEOUT_MS = 30 * 60_000

/**
 * A hypervisor driver. All methods are async; none blocks the event loop.
 */
export interface VirtDriver {
  /** Short driver name for logs: `libvirt`, `fake`. */
  readonly name: string

  /**
   * Connects to the hypervisor. Must be called once before anything else.
   * @throws Unavailable when the hypervisor cannot be reached.
   */
  init(): Promise<void>

  /** Releases the hypervisor connection. Guests keep running. Idempotent. */
  close(): Promise<void>

  /** What this host offers: CPU, memory, acceleration, hypervisor type and version. */
  getHostCapabilities(): Promise<HostCapabilities>

  /**
   * Defines and starts a guest from `spec`, and returns its info (RUNNING).
   *
   * The spec is validated first ({@link validateGuestSpec}). Then the guest is
   * defined and started; every step registers an undo step, so a failure at
   * any point leaves no trace of the guest on the hypervisor (nova's
   * `_create_guest_with_network` cleanup).
   *
   * @throws InvalidArgument for a malformed spec (`field` names the field).
   * @throws AlreadyExists when a guest with this uuid or name exists.
   * @throws ResourceExhausted when the host cannot fit the guest.
   * @throws FailedPrecondition or Internal when the hypervisor refuses to start
   *   it (e.g. a disk path that does not exist); nothing is left defined.
   */
  spawn(spec: GuestSpec): Promise<GuestInfo>

  /**
   * Powers the guest off hard (if running) and removes its definition.
   * A guest that does not exist is not an error: the call succeeds.
   * Disks and the console log are left for the caller to remove.
   */
  destroy(uuid: string): Promise<void>

  /**
   * Starts a guest that is shut down. Already running: no-op.
   * @throws NotFound when there is no such guest.
   * @throws FailedPrecondition when the guest is PAUSED or SUSPENDED.
   */
  powerOn(uuid: string): Promise<void>

  /**
   * Shuts the guest down: ACPI power button first, then hard after
   * `timeoutMs` (0: hard at once). Already shut down: no-op.
   * @throws NotFound when there is no such guest.
   */
  powerOff(uuid: string, options?: PowerOffOptions): Promise<void>

  /**
   * Reboots the guest. Soft: ACPI shutdown then start, falling back to hard
   * when the guest does not stop within the timeout (nova's `_soft_reboot`).
   * Hard: power cycle, also from SHUTDOWN or CRASHED; the guest ends RUNNING.
   * @throws NotFound when there is no such guest.
   * @throws FailedPrecondition for a soft reboot of a guest that is not RUNNING.
   */
  reboot(uuid: string, options: RebootOptions): Promise<void>

  /**
   * Stops the guest's vCPUs (Nova's pause, `virDomainSuspend`); the
   * hypervisor finishes and flushes the guest's disk writes first, so its
   * disks can be read consistently until {@link unpause}. Already PAUSED: no-op.
   * @throws NotFound when there is no such guest.
   * @throws FailedPrecondition when the guest is not RUNNING (or PAUSED).
   */
  pause(uuid: string): Promise<void>

  /**
   * Lets a paused guest run again (`virDomainResume`). Already RUNNING: no-op.
   * @throws NotFound when there is no such guest.
   * @throws FailedPrecondition when the guest is neither PAUSED nor RUNNING.
   */
  unpause(uuid: string): Promise<void>

  /**
   * The guest's state as the hypervisor sees it now.
   * @throws NotFound when there is no such guest.
   */
  getInfo(uuid: string): Promise<GuestInfo>

  /** Every guest the hypervisor knows on this host, running or not, in no particular order. */
  listGuests(): Promise<GuestInfo[]>

  /**
   * The tail of the guest's serial console log (empty if nothing was written yet).
   * @throws NotFound when there is no such guest.
   */
  getConsoleOutput(uuid: string, options?: ConsoleOutputOptions): Promise<string>

  /**
   * Attaches a volume's disk: hot-plugged into a guest that runs (or is
   * paused) and written into its persistent definition, so it is still there
   * after a stop and a start; into the definition only when it is shut down.
   * Attaching the same file on the same device again succeeds and changes
   * nothing (a cast may come twice). A failure leaves the guest as it was.
   * @throws NotFound when there is no such guest.
   * @throws AlreadyExists when the device holds another file.
   * @throws InvalidArgument for a malformed disk (`field` names the field).
   */
  attachDisk(uuid: string, disk: VolumeDiskSpec): Promise<void>

  /**
   * Detaches the volume disk on `device` from the running guest — waiting
   * until the guest has released it — and from the persistent definition.
   * A device that is not attached is not an error: the call succeeds.
   * @throws NotFound when there is no such guest.
   * @throws InvalidArgument for `vda` (the root disk) or a malformed device.
   * @throws Unavailable when the guest did not release the device within the
   *   timeout; it is still attached (live and persistent) and may be retried.
   */
  detachDisk(uuid: string, device: string, options?: DetachDiskOptions): Promise<void>

  /**
   * The disks of the guest's persistent definition, the root disk first;
   * `serial` is '' for disks that have none.
   * @throws NotFound when there is no such guest.
   */
  listDisks(uuid: string): Promise<VolumeDiskSpec[]>

  /**
   * Tells a running guest that the disk on `device` grew to `bytes` (its file
   * was extended): the guest sees the new size at once. A guest that is not
   * running reads the size when it starts: nothing to do.
   * @throws NotFound when there is no such guest, or no disk on `device`.
   */
  resizeDisk(uuid: string, device: string, bytes: number): Promise<void>

  /**
   * Moves a running guest's writes on the file disk `device` onto `overlay`
   * (an external, disk-only snapshot of that one disk: Nova's
   * volume_snapshot_create for Cinder's file drivers). `overlay` exists, is
   * empty, has a path of its own (never the disk's: QEMU reopens the frozen
   * image read-only by its name, which must still be that image's), and its
   * backing file is the image the disk has open, which is frozen from now on
   * and keeps its name. The live and the persistent definition name
   * `overlay`; the persistent one reads the chain from the headers at the
   * next start. Returns false, doing nothing, when the guest does not run.
   * @throws NotFound when there is no such guest, or no file disk on `device`.
   * @throws InvalidArgument when `overlay` is the disk's own path.
   */
  snapshotDisk(uuid: string, device: string, overlay: string): Promise<boolean>

  /**
   * The file the guest's disk `device` has: the one its QEMU has open (live
   * definition) when it runs, else the one it would open at start
   * (persistent definition). Undefined when there is no such guest or disk
   * (a crash's settling asks which side of a {@link snapshotDisk} it is on).
   */
  diskSource(uuid: string, device: string): Promise<string | undefined>

  /**
   * Merges, live, every block the backing chain of the running guest's file
   * disk `device` shows into the disk's active file (QEMU's block-stream: a
   * pull of the whole chain — Nova's volume_snapshot_delete for Cinder's file
   * drivers, which merges a snapshot being deleted into the file a guest has
   * open). Returns once the job finished: the active file, at the same path,
   * has no backing file any more (QEMU rewrote its header), the guest never
   * stopped writing, and the persistent definition reads the (empty) chain
   * from the header at the next start. Returns false, doing nothing, when the
   * guest does not run (no file of it is open).
   * @throws NotFound when there is no such guest, or no file disk on `device`.
   * @throws Unavailable when the job did not finish in time (it goes on in QEMU).
   * @throws Internal when the job ended with the chain still there.
   */
  pullDisk(uuid: string, device: string): Promise<boolean>

  /**
   * After a crash in the middle of {@link pullDisk}: waits for a block job
   * still running on the disk to end (QEMU goes on without the agent) and
   * leaves the persistent definition as pullDisk does. Whether the pull got
   * through is the file's header's to say (the caller reads it). Succeeds
   * when the guest is gone or does not run.
   */
  settleDiskPull(uuid: string, device: string): Promise<void>
}

/**
 * Checks a volume disk before it is attached; shared by every driver.
 * @throws InvalidArgument naming the offending field.
 */
export function validateVolumeDisk(disk: VolumeDiskSpec): void {
  const invalid = (field: string, why: string): never => {
    throw new InvalidArgument(`invalid volume disk: ${field} ${why}`, { field })
  }
  checkDiskSource(disk, invalid)
  checkVolumeDevice(disk.device)
  if (!/^[A-Za-z0-9-]{1,20}$/.test(disk.serial)) invalid('serial', 'must be 1-20 characters of [A-Za-z0-9-]')
}

/** @throws InvalidArgument unless `device` is vdb…vdz (vda is the root disk). */
export function checkVolumeDevice(device: string): void {
  if (!DEVICE_RE.test(device) || device === 'vda') throw new InvalidArgument(`invalid volume disk: device must be vdb…vdz (vda is the root disk), got '${device}'`, { field: 'device' })
}

/**
 * What a power action does from a given state: `run` it, treat it as already
 * done (`noop`), or refuse. This table is the one place that decides; both
 * drivers consult it after reading the state from the hypervisor.
 */
export type PowerAction = 'powerOn' | 'powerOff' | 'softReboot' | 'hardReboot' | 'pause' | 'unpause'
type Outcome = 'run' | 'noop'

const POWER_TRANSITIONS: Record<PowerAction, Partial<Record<PowerState, Outcome>>> = {
  powerOn: {
    [PowerState.NOSTATE]: 'run',
    [PowerState.SHUTDOWN]: 'run',
    [PowerState.CRASHED]: 'run',
    [PowerState.RUNNING]: 'noop',
  },
  powerOff: {
    [PowerState.RUNNING]: 'run',
    [PowerState.PAUSED]: 'run',
    [PowerState.CRASHED]: 'run',
    [PowerState.SUSPENDED]: 'run',
    [PowerState.NOSTATE]: 'run',
    [PowerState.SHUTDOWN]: 'noop',
  },
  softReboot: {
    [PowerState.RUNNING]: 'run',
  },
  pause: {
    [PowerState.RUNNING]: 'run',
    [PowerState.PAUSED]: 'noop',
  },
  unpause: {
    [PowerState.PAUSED]: 'run',
    [PowerState.RUNNING]: 'noop',
  },
  hardReboot: {
    [PowerState.NOSTATE]: 'run',
    [PowerState.RUNNING]: 'run',
    [PowerState.PAUSED]: 'run',
    [PowerState.SHUTDOWN]: 'run',
    [PowerState.CRASHED]: 'run',
    [PowerState.SUSPENDED]: 'run',
  },
}

/**
 * Decides a power action for a guest in state `from`.
 * @throws FailedPrecondition when the action is not allowed from `from`.
 */
export function checkPowerTransition(action: PowerAction, from: PowerState, uuid: string): Outcome {
  const outcome = POWER_TRANSITIONS[action][from]
  if (outcome === undefined) {
    throw new FailedPrecondition(`cannot ${action} guest ${uuid}: it is ${powerStateName(from)}`)
  }
  return outcome
}

const NAME_RE = /^[A-Za-z0-9_.-]{1,64}$/
const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/
const DEVICE_RE = /^vd[a-z]$/
/** Linux interface names: at most 15 bytes, no slash, colon or whitespace. */
const BRIDGE_RE = /^[A-Za-z0-9_.-]{1,15}$/

/**
 * Checks where a disk's data is (a file, or an NBD export: a boot volume may
 * be one too), its format, sharing and bus; `invalid` names the field
 * (`at` before it: `disks[0].`).
 */
function checkDiskSource(disk: DiskSpec, invalid: (field: string, why: string) => never, at = ''): void {
  if (disk.network) {
    const n = disk.network
    if (n.protocol !== 'nbd') invalid(`${at}network.protocol`, 'must be nbd')
    if (!isIP(n.address)) invalid(`${at}network.address`, `must be an IP address, got '${n.address}'`)
    if (!Number.isInteger(n.port) || n.port < 1 || n.port > 65_535) invalid(`${at}network.port`, `must be 1-65535, got ${n.port}`)
    if (!/^[A-Za-z0-9._-]{1,128}$/.test(n.name)) invalid(`${at}network.name`, 'must be 1-128 characters of [A-Za-z0-9._-]')
    if (disk.path !== networkDiskPath(n)) invalid(`${at}path`, `must be ${networkDiskPath(n)} for this network disk`)
  } else if (!disk.path.startsWith('/')) invalid(`${at}path`, 'must be absolute')
  if (disk.format !== 'qcow2' && disk.format !== 'raw') invalid(`${at}format`, 'must be qcow2 or raw')
  if (disk.shareable && disk.format !== 'raw') invalid(`${at}shareable`, 'needs a raw disk: QEMU lets one process alone write a qcow2 image')
  if (disk.bus !== 'virtio') invalid(`${at}bus`, 'must be virtio')
}

/**
 * Checks a guest spec before anything is made; shared by every driver.
 * @throws InvalidArgument naming the offending field.
 */
export function validateGuestSpec(spec: GuestSpec): void {
  const invalid = (field: string, why: string): never => {
    throw new InvalidArgument(`invalid guest spec: ${field} ${why}`, { field })
  }
  if (!isUuid(spec.uuid)) invalid('uuid', 'must be a lower-case canonical uuid')
  if (!NAME_RE.test(spec.name)) invalid('name', 'must be 1-64 characters of [A-Za-z0-9_.-]')
  if (!Number.isInteger(spec.vcpus) || spec.vcpus < 1) invalid('vcpus', 'must be an integer ≥ 1')
  if (!Number.isInteger(spec.memoryMiB) || spec.memoryMiB < 16) invalid('memoryMiB', 'must be an integer ≥ 16')
  if (spec.disks.length === 0) invalid('disks', 'must contain the boot disk')
  const devices = new Set<string>()
  spec.disks.forEach((disk, i) => {
    checkDiskSource(disk, invalid, `disks[${i}].`)
    if (!DEVICE_RE.test(disk.device)) invalid(`disks[${i}].device`, 'must be vda…vdz')
    if (devices.has(disk.device)) invalid(`disks[${i}].device`, `repeats ${disk.device}`)
    devices.add(disk.device)
  })
  const macs = new Set<string>()
  spec.nics.forEach((nic, i) => {
    if (!MAC_RE.test(nic.mac)) invalid(`nics[${i}].mac`, 'must be a lower-case aa:bb:cc:dd:ee:ff MAC')
    else if ((parseInt(nic.mac.slice(0, 2), 16) & 1) === 1) invalid(`nics[${i}].mac`, 'must be unicast')
    if (macs.has(nic.mac)) invalid(`nics[${i}].mac`, `repeats ${nic.mac}`)
    macs.add(nic.mac)
    if (!BRIDGE_RE.test(nic.bridge)) invalid(`nics[${i}].bridge`, 'must be a Linux interface name')
    if (nic.model !== 'virtio') invalid(`nics[${i}].model`, 'must be virtio')
    if (nic.device !== undefined && (!BRIDGE_RE.test(nic.device) || /^(vnet|vif)/.test(nic.device))) invalid(`nics[${i}].device`, 'must be a Linux interface name not starting with vnet or vif (libvirt keeps those)')
  })
  if (!spec.consoleLogPath.startsWith('/')) invalid('consoleLogPath', 'must be absolute')
  if (spec.configDrive !== undefined && !spec.configDrive.startsWith('/')) invalid('configDrive', 'must be absolute')
}

/** Decodes the last `maxBytes` bytes of `buffer` as UTF-8, starting on a character boundary. */
export function tailBytes(buffer: Buffer, maxBytes: number): string {
  if (buffer.length <= maxBytes) return buffer.toString('utf8')
  let start = buffer.length - maxBytes
  // Skip UTF-8 continuation bytes so the tail starts on a character.
  while (start < buffer.length && ((buffer[start] ?? 0) & 0xc0) === 0x80) start++
  return buffer.subarray(start).toString('utf8')
}

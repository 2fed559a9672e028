/**
 * An in-memory hypervisor (after nova `virt/fake.py`), for fast tests and the
 * 1,000-agent scheduling benchmark.
 *
 * It keeps resources honestly — a guest only starts when its RAM fits in what
 * the host has left, shut-down guests hold no RAM — follows the same power
 * transition table as the real driver, "boots" by appending a banner line to
 * the guest's in-memory console, and can be told to fail an operation at a
 * named step, so callers' cleanup paths can be tested. No I/O, no timers
 * unless `latencyMs` is set.
 */
import path from 'node:path'
import { withReverter } from '../../proto/revert.js'
import { AlreadyExists, Internal, InvalidArgument, NotFound, ResourceExhausted, Unavailable, type StratoError } from '../../proto/errors.js'
import {
  DEFAULT_CONSOLE_MAX_BYTES,
  DEFAULT_SHUTDOWN_TIMEOUT_MS,
  checkPowerTransition,
  checkVolumeDevice,
  tailBytes,
  validateGuestSpec,
  validateVolumeDisk,
  type DetachDiskOptions,
  type VolumeDiskSpec,
  type ConsoleOutputOptions,
  type GuestInfo,
  type GuestSpec,
  type HostCapabilities,
  type PowerOffOptions,
  type RebootOptions,
  type VirtDriver,
} from './driver.js'
import { PowerState } from '../../proto/power-state.js'

export interface FakeDriverOptions {
  /** @default 'fake-host' */
  hostname?: string
  /** @default 8 */
  vcpus?: number
  /** @default 16384 */
  memoryMiB?: number
  /** @default 'kvm' */
  accelerator?: HostCapabilities['accelerator']
  /** The console line a guest prints each time it boots. @default `fake guest <name> <uuid> booted` */
  consoleBanner?: (spec: GuestSpec) => string
  /** Whether guests honour the ACPI power button (if not, graceful shutdowns time out). @default true */
  acpi?: boolean
  /** Simulated latency of each hypervisor call. @default 0 */
  latencyMs?: number
}

/** Operations a failure can be injected into. */
export type FakeOperation =
  | 'init'
  | 'spawn'
  | 'destroy'
  | 'powerOn'
  | 'powerOff'
  | 'reboot'
  | 'pause'
  | 'unpause'
  | 'getInfo'
  | 'listGuests'
  | 'getConsoleOutput'
  | 'getHostCapabilities'
  | 'attachDisk'
  | 'detachDisk'
  | 'resizeDisk'
  | 'snapshotDisk'
  | 'pullDisk'

/**
 * Steps inside an operation. `spawn` goes `define` → `start`; a failure at
 * `start` happens after the guest was defined, so spawn must clean it up.
 * Other operations have the single step `call`.
 */
export type FakeStep = 'define' | 'start' | 'call'

export interface FailureInjection {
  operation: FakeOperation
  /** @default 'call', or 'start' for spawn */
  step?: FakeStep
  /** Only for this guest. @default any guest */
  uuid?: string
  /** What to throw. @default Internal('injected failure …') */
  error?: StratoError
  /** How many calls fail before the injection is used up. @default 1 */
  times?: number
}

interface FakeGuest {
  spec: GuestSpec
  /** Volume disks attached after the build, by device (in the persistent definition). */
  volumes: Map<string, VolumeDiskSpec & { sizeBytes?: number }>
  powerState: PowerState
  console: string[]
  consoleBytes: number
  bootedAt: number
  /** Devices whose backing chain was pulled into their file while it ran (pullDisk). */
  diskPulls?: string[]
}

/** Usage figures the fake exposes for tests and the benchmark. */
export interface FakeUsage {
  guests: number
  running: number
  vcpusUsed: number
  memoryMiBUsed: number
}

/** Running, paused and suspended guests keep their RAM; shut-down or crashed ones do not. */
const HOLDS_RESOURCES: ReadonlySet<PowerState> = new Set([PowerState.RUNNING, PowerState.PAUSED, PowerState.SUSPENDED])

export class FakeDriver implements VirtDriver {
  readonly name = 'fake'
  private readonly guests = new Map<string, FakeGuest>()
  private readonly names = new Map<string, string>()
  private injections: (FailureInjection & { remaining: number })[] = []
  private readonly capabilities: HostCapabilities
  private readonly banner: (spec: GuestSpec) => string
  private readonly acpi: boolean
  private readonly latencyMs: number
  private memoryMiBUsed = 0
  private vcpusUsed = 0
  private connected = false

  constructor(options: FakeDriverOptions = {}) {
    this.capabilities = {
      hostname: options.hostname ?? 'fake-host',
      cpuModel: 'fake-cpu',
      arch: 'x86_64',
      vcpus: options.vcpus ?? 8,
      memoryMiB: options.memoryMiB ?? 16384,
      accelerator: options.accelerator ?? 'kvm',
      hypervisorType: 'fake',
      hypervisorVersion: '1.0.0',
    }
    this.banner = options.consoleBanner ?? ((spec) => `fake guest ${spec.name} ${spec.uuid} booted`)
    this.acpi = options.acpi ?? true
    this.latencyMs = options.latencyMs ?? 0
  }

  /** Makes a later call fail; see {@link FailureInjection}. */
  injectFailure(injection: FailureInjection): void {
    this.injections.push({ ...injection, remaining: injection.times ?? 1 })
  }

  /** Drops every pending injection. */
  clearFailures(): void {
    this.injections = []
  }

  /** Resources held by guests right now. */
  /** The spec a guest was spawned with (tests look at what the agent asked for). */
  specOf(uuid: string): GuestSpec | undefined {
    const g = this.guests.get(uuid)
    return g ? structuredClone(g.spec) : undefined
  }

  usage(): FakeUsage {
    let running = 0
    for (const guest of this.guests.values()) if (guest.powerState === PowerState.RUNNING) running++
    return { guests: this.guests.size, running, vcpusUsed: this.vcpusUsed, memoryMiBUsed: this.memoryMiBUsed }
  }

  /** Hypervisor-side event: the guest crashed (QEMU died). */
  crashGuest(uuid: string): void {
    const guest = this.lookup(uuid)
    this.releaseResources(guest)
    guest.powerState = PowerState.CRASHED
  }

  /** Hypervisor-side event: the guest OS powered itself off. */
  guestPoweredOff(uuid: string): void {
    const guest = this.lookup(uuid)
    this.releaseResources(guest)
    guest.powerState = PowerState.SHUTDOWN
  }

  async init(): Promise<void> {
    await this.hypervisorCall('init', 'call')
    this.connected = true
  }

  async close(): Promise<void> {
    this.connected = false
  }

  async getHostCapabilities(): Promise<HostCapabilities> {
    await this.hypervisorCall('getHostCapabilities', 'call')
    return { ...this.capabilities }
  }

  async spawn(spec: GuestSpec): Promise<GuestInfo> {
    validateGuestSpec(spec)
    return withReverter(async (revert) => {
      await this.hypervisorCall('spawn', 'define', spec.uuid)
      // Checked after the (possibly delayed) call and before any change, so concurrent spawns of one uuid cannot both win.
      if (this.guests.has(spec.uuid)) throw new AlreadyExists(`guest ${spec.uuid} already exists`)
      if (this.names.has(spec.name)) throw new AlreadyExists(`a guest named ${spec.name} already exists`)
      const guest: FakeGuest = {
        spec: structuredClone(spec),
        volumes: new Map(),
        powerState: PowerState.SHUTDOWN,
        console: [],
        consoleBytes: 0,
        bootedAt: 0,
      }
      this.guests.set(spec.uuid, guest)
      this.names.set(spec.name, spec.uuid)
      revert.add('undefine guest', () => this.undefine(spec.uuid))

      await this.hypervisorCall('spawn', 'start', spec.uuid)
      this.start(guest)
      return this.info(guest)
    })
  }

  async destroy(uuid: string): Promise<void> {
    await this.hypervisorCall('destroy', 'call', uuid)
    const guest = this.guests.get(uuid)
    if (guest === undefined) return
    this.stop(guest)
    this.undefine(uuid)
  }

  async powerOn(uuid: string): Promise<void> {
    await this.hypervisorCall('powerOn', 'call', uuid)
    const guest = this.lookup(uuid)
    if (checkPowerTransition('powerOn', guest.powerState, uuid) === 'noop') return
    this.start(guest)
  }

  async powerOff(uuid: string, options: PowerOffOptions = {}): Promise<void> {
    await this.hypervisorCall('powerOff', 'call', uuid)
    const guest = this.lookup(uuid)
    if (checkPowerTransition('powerOff', guest.powerState, uuid) === 'noop') return
    const timeoutMs = options.timeoutMs ?? DEFAULT_SHUTDOWN_TIMEOUT_MS
    // A guest that ignores ACPI makes a real driver wait out the timeout before pulling the plug.
    if (timeoutMs > 0 && !this.acpi && guest.powerState === PowerState.RUNNING) await sleep(timeoutMs)
    this.stop(guest)
  }

  async reboot(uuid: string, options: RebootOptions): Promise<void> {
    await this.hypervisorCall('reboot', 'call', uuid)
    let guest = this.lookup(uuid)
    if (options.type === 'soft') {
      checkPowerTransition('softReboot', guest.powerState, uuid)
      if (!this.acpi) {
        await sleep(options.timeoutMs ?? DEFAULT_SHUTDOWN_TIMEOUT_MS)
        guest = this.lookup(uuid) // it may have been destroyed meanwhile
      }
    } else {
      checkPowerTransition('hardReboot', guest.powerState, uuid)
    }
    this.stop(guest)
    this.start(guest)
  }

  async pause(uuid: string): Promise<void> {
    await this.hypervisorCall('pause', 'call', uuid)
    const guest = this.lookup(uuid)
    if (checkPowerTransition('pause', guest.powerState, uuid) === 'noop') return
    guest.powerState = PowerState.PAUSED
  }

  async unpause(uuid: string): Promise<void> {
    await this.hypervisorCall('unpause', 'call', uuid)
    const guest = this.lookup(uuid)
    if (checkPowerTransition('unpause', guest.powerState, uuid) === 'noop') return
    guest.powerState = PowerState.RUNNING
  }

  async getInfo(uuid: string): Promise<GuestInfo> {
    await this.hypervisorCall('getInfo', 'call', uuid)
    return this.info(this.lookup(uuid))
  }

  async listGuests(): Promise<GuestInfo[]> {
    await this.hypervisorCall('listGuests', 'call')
    return [...this.guests.values()].map((guest) => this.info(guest))
  }

  async getConsoleOutput(uuid: string, options: ConsoleOutputOptions = {}): Promise<string> {
    await this.hypervisorCall('getConsoleOutput', 'call', uuid)
    const guest = this.lookup(uuid)
    return tailBytes(Buffer.from(guest.console.join(''), 'utf8'), options.maxBytes ?? DEFAULT_CONSOLE_MAX_BYTES)
  }

  async attachDisk(uuid: string, disk: VolumeDiskSpec): Promise<void> {
    validateVolumeDisk(disk)
    await this.hypervisorCall('attachDisk', 'call', uuid)
    const guest = this.lookup(uuid)
    const held = guest.volumes.get(disk.device)
    if (held && held.path === disk.path) return
    if (held || guest.spec.disks.some((d) => d.device === disk.device)) throw new AlreadyExists(`device ${disk.device} of guest ${uuid} holds ${held?.path ?? 'the root disk'}`)
    guest.volumes.set(disk.device, { ...disk })
  }

  async detachDisk(uuid: string, device: string, _options: DetachDiskOptions = {}): Promise<void> {
    checkVolumeDevice(device)
    await this.hypervisorCall('detachDisk', 'call', uuid)
    const guest = this.lookup(uuid)
    // A guest that ignores ACPI never acknowledges the unplug (the real driver times out).
    if (!this.acpi && guest.powerState === PowerState.RUNNING && guest.volumes.has(device)) throw new Unavailable(`guest ${uuid} did not release device ${device}; it stays attached`)
    guest.volumes.delete(device)
  }

  async listDisks(uuid: string): Promise<VolumeDiskSpec[]> {
    await this.hypervisorCall('getInfo', 'call', uuid)
    const guest = this.lookup(uuid)
    return [...guest.spec.disks.map((d) => ({ ...d, serial: d.serial ?? '' })), ...[...guest.volumes.values()].map(({ sizeBytes: _s, ...d }) => ({ ...d }))]
  }

  async resizeDisk(uuid: string, device: string, bytes: number): Promise<void> {
    await this.hypervisorCall('resizeDisk', 'call', uuid)
    const guest = this.lookup(uuid)
    const disk = guest.volumes.get(device)
    if (!disk) throw new NotFound(`guest ${uuid} has no volume disk ${device}`)
    if (guest.powerState === PowerState.RUNNING) disk.sizeBytes = bytes
  }

  /** Guest `uuid` and its file disk on `device` (a volume's or its own). */
  private fileDisk(uuid: string, device: string) {
    const guest = this.lookup(uuid)
    const disk = guest.volumes.get(device) ?? guest.spec.disks.find((d) => d.device === device)
    if (!disk || disk.network) throw new NotFound(`guest ${uuid} has no file disk ${device}`)
    return { guest, disk }
  }

  async snapshotDisk(uuid: string, device: string, overlay: string): Promise<boolean> {
    await this.hypervisorCall('snapshotDisk', 'call', uuid)
    const { guest, disk } = this.fileDisk(uuid, device)
    if (guest.powerState !== PowerState.RUNNING) return false
    if (path.resolve(disk.path) === path.resolve(overlay)) throw new InvalidArgument(`the overlay of disk ${device} of guest ${uuid} must have a path of its own, not the disk's (${disk.path})`)
    // No QEMU here: the disk names the overlay from now on (live and persistent, as libvirt's).
    disk.path = overlay
    return true
  }

  async diskSource(uuid: string, device: string): Promise<string | undefined> {
    const guest = this.guests.get(uuid)
    return (guest?.volumes.get(device) ?? guest?.spec.disks.find((d) => d.device === device))?.path
  }

  async pullDisk(uuid: string, device: string): Promise<boolean> {
    await this.hypervisorCall('pullDisk', 'call', uuid)
    const { guest, disk } = this.fileDisk(uuid, device)
    if (guest.powerState !== PowerState.RUNNING) return false
    guest.diskPulls = [...(guest.diskPulls ?? []), device]
    return true
  }

  async settleDiskPull(uuid: string, _device: string): Promise<void> {
    await this.hypervisorCall('pullDisk', 'call', uuid)
  }

  /** The devices whose backing chain a guest pulled into their file while running (tests). */
  diskPullsOf(uuid: string): string[] {
    return this.guests.get(uuid)?.diskPulls ?? []
  }

  /** The size a running guest was told a volume disk has (tests). */
  diskSizeSeen(uuid: string, device: string): number | undefined {
    return this.guests.get(uuid)?.volumes.get(device)?.sizeBytes
  }

  private lookup(uuid: string): FakeGuest {
    const guest = this.guests.get(uuid)
    if (guest === undefined) throw new NotFound(`no guest ${uuid} on this host`)
    return guest
  }

  private info(guest: FakeGuest): GuestInfo {
    const running = HOLDS_RESOURCES.has(guest.powerState)
    return {
      uuid: guest.spec.uuid,
      name: guest.spec.name,
      powerState: guest.powerState,
      vcpus: guest.spec.vcpus,
      memoryMiB: guest.spec.memoryMiB,
      cpuTimeNs: running ? (Date.now() - guest.bootedAt) * 1e6 : 0,
    }
  }

  private start(guest: FakeGuest): void {
    const free = this.capabilities.memoryMiB - this.memoryMiBUsed
    if (guest.spec.memoryMiB > free) {
      throw new ResourceExhausted(
        `cannot start guest ${guest.spec.uuid}: it needs ${guest.spec.memoryMiB} MiB of RAM, the host has ${free} MiB free`,
      )
    }
    this.memoryMiBUsed += guest.spec.memoryMiB
    this.vcpusUsed += guest.spec.vcpus
    guest.powerState = PowerState.RUNNING
    guest.bootedAt = Date.now()
    const line = `${this.banner(guest.spec)}\n`
    guest.console.push(line)
    guest.consoleBytes += Buffer.byteLength(line)
    // Keep the in-memory log bounded like a rotated file would be.
    while (guest.consoleBytes > 4 * DEFAULT_CONSOLE_MAX_BYTES && guest.console.length > 1) {
      guest.consoleBytes -= Buffer.byteLength(guest.console.shift() ?? '')
    }
  }

  private stop(guest: FakeGuest): void {
    this.releaseResources(guest)
    guest.powerState = PowerState.SHUTDOWN
  }

  private releaseResources(guest: FakeGuest): void {
    if (!HOLDS_RESOURCES.has(guest.powerState)) return
    this.memoryMiBUsed -= guest.spec.memoryMiB
    this.vcpusUsed -= guest.spec.vcpus
  }

  private undefine(uuid: string): void {
    const guest = this.guests.get(uuid)
    if (guest === undefined) return
    this.releaseResources(guest)
    guest.powerState = PowerState.SHUTDOWN
    this.guests.delete(uuid)
    this.names.delete(guest.spec.name)
  }

  /** Every hypervisor call passes here: connection check, latency, injected failures. */
  private async hypervisorCall(operation: FakeOperation, step: FakeStep, uuid?: string): Promise<void> {
    if (operation !== 'init' && !this.connected) throw new Internal('fake driver used before init()')
    if (this.latencyMs > 0) await sleep(this.latencyMs)
    const index = this.injections.findIndex(
      (injection) =>
        injection.operation === operation &&
        (injection.step ?? (operation === 'spawn' ? 'start' : 'call')) === step &&
        (injection.uuid === undefined || injection.uuid === uuid),
    )
    if (index < 0) return
    const injection = this.injections[index]
    if (injection === undefined) return
    injection.remaining--
    if (injection.remaining <= 0) this.injections.splice(index, 1)
    throw injection.error ?? new Internal(`injected failure in ${operation} at step ${step}`)
  }
}

function sleep(ms: number): Promise<void> {
  return ms > 0 ? new Promise((resolve) => setTimeout(resolve, ms)) : Promise.resolve()
}

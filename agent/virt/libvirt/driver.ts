/**
 * VirtDriver on QEMU/KVM through libvirt (after nova `virt/libvirt/driver.py`).
 * The contract is in `../driver.ts`; this file is policy: KVM or TCG, CPU mode,
 * graceful-then-hard power off, soft reboot falling back to hard, cleanup.
 */
import { constants as fsConstants } from 'node:fs'
import { open, rm } from 'node:fs/promises'
import path from 'node:path'
import type { Logger } from 'pino'
import { withReverter } from '../../../proto/revert.js'
import { Pending, pollUntil, type PollOptions } from '../../poll.js'
import { AlreadyExists, FailedPrecondition, Internal, InvalidArgument, NotFound, Unavailable } from '../../../proto/errors.js'
import {
  DEFAULT_CONSOLE_MAX_BYTES,
  DEFAULT_BLOCK_JOB_TIMEOUT_MS,
  DEFAULT_DETACH_TIMEOUT_MS,
  DEFAULT_SHUTDOWN_TIMEOUT_MS,
  checkPowerTransition,
  checkVolumeDevice,
  tailBytes,
  validateGuestSpec,
  validateVolumeDisk,
  type DetachDiskOptions,
  type VolumeDiskSpec,
  type Accelerator,
  type ConsoleOutputOptions,
  type GuestInfo,
  type GuestSpec,
  type HostCapabilities,
  type PowerOffOptions,
  type RebootOptions,
  type VirtDriver,
} from '../driver.js'
import { PowerState } from '../../../proto/power-state.js'
import { VirDomainState, formatVersion } from './constants.js'
import { diskStorageNode, parseDomainXml, toDiskXml, toDomainXml, type DomainConfig, type DomainDisk } from './domain-xml.js'
import { powerStateOf, type Guest } from './guest.js'
import { Host, chooseAccelerator, kvmDeviceUsable, type HostInfo } from './host.js'
import type { DomainRecord } from './worker.js'
import { child, childrenNamed, el, parseXml, serializeXml } from './xml.js'

export interface LibvirtDriverOptions {
  /** @default 'qemu:///system' */
  uri?: string
  /** Device whose usability decides KVM vs TCG. @default '/dev/kvm' */
  kvmDevice?: string
  /** Force the accelerator instead of detecting it. */
  accelerator?: Accelerator
  /** QEMU machine type. @default libvirt's default for the arch */
  machine?: string
  /**
   * CPU model the guests see. Default: QEMU's portable default model, which
   * also works nested, where `host-passthrough` can fail (QEMU aborts setting
   * MSRs the outer hypervisor does not expose).
   */
  cpuMode?: 'host-passthrough' | 'host-model'
  /** How often to poll a guest's state while waiting for a shutdown. @default 100 */
  pollIntervalMs?: number
  /** Longest a single libvirt call may take before it fails with Unavailable. @default 120000 */
  callTimeoutMs?: number
  /** Longest pullDisk waits for its block job. @default DEFAULT_BLOCK_JOB_TIMEOUT_MS (30 min) */
  blockJobTimeoutMs?: number
  /** Where operations are logged (with `instance`); silent when absent. */
  logger?: Logger
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

function guestInfo(record: DomainRecord): GuestInfo {
  return {
    uuid: record.uuid,
    name: record.name,
    powerState: powerStateOf(record.state),
    vcpus: record.vcpus,
    memoryMiB: Math.round(record.maxMemKiB / 1024),
    cpuTimeNs: record.cpuTimeNs,
  }
}

/** Reads at most the last `maxBytes` of a file; a missing file reads as empty. */
async function readTail(path: string, maxBytes: number): Promise<Buffer> {
  let handle
  try {
    handle = await open(path, 'r')
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return Buffer.alloc(0)
    throw new Internal(`cannot read console log ${path}: ${(error as Error).message}`, { cause: error })
  }
  try {
    const { size } = await handle.stat()
    const length = Math.min(size, maxBytes)
    const buffer = Buffer.alloc(length)
    const { bytesRead } = await handle.read(buffer, 0, length, size - length)
    return buffer.subarray(0, bytesRead)
  } finally {
    await handle.close()
  }
}

export class LibvirtDriver implements VirtDriver {
  readonly name = 'libvirt'
  readonly host: Host
  private readonly options: LibvirtDriverOptions
  private accelerator: Accelerator = 'tcg'
  private hostInfo: HostInfo | undefined
  private readonly logger: Logger | undefined

  constructor(options: LibvirtDriverOptions = {}) {
    this.options = options
    this.logger = options.logger?.child({ driver: 'libvirt' })
    this.host = new Host({
      ...(options.uri === undefined ? {} : { uri: options.uri }),
      ...(options.callTimeoutMs === undefined ? {} : { callTimeoutMs: options.callTimeoutMs }),
    })
  }

  async init(): Promise<void> {
    await this.host.connect()
    this.hostInfo = await this.host.getInfo()
    this.accelerator =
      this.options.accelerator ?? chooseAccelerator(this.hostInfo, await kvmDeviceUsable(this.options.kvmDevice))
  }

  close(): Promise<void> {
    return this.host.close()
  }

  /** The accelerator guests get: `kvm` or `tcg`. */
  get guestAccelerator(): Accelerator {
    return this.accelerator
  }

  async getHostCapabilities(): Promise<HostCapabilities> {
    const info = await this.host.getInfo()
    return {
      hostname: info.hostname,
      cpuModel: info.cpuModel,
      arch: info.arch,
      vcpus: info.cpus,
      memoryMiB: info.memoryMiB,
      accelerator: this.accelerator,
      hypervisorType: info.hypervisorType,
      hypervisorVersion: formatVersion(info.hypervisorVersion),
    }
  }

  /** The domain config for a spec on this host: the policy half of `domain-xml.ts`. */
  domainConfig(spec: GuestSpec): DomainConfig {
    const kvm = this.accelerator === 'kvm'
    return {
      type: kvm ? 'kvm' : 'qemu',
      uuid: spec.uuid,
      name: spec.name,
      vcpus: spec.vcpus,
      memoryMiB: spec.memoryMiB,
      arch: this.hostInfo?.arch ?? 'x86_64',
      ...(this.options.machine === undefined ? {} : { machine: this.options.machine }),
      // A host CPU model only means something with KVM; TCG keeps QEMU's default.
      ...(kvm && this.options.cpuMode !== undefined ? { cpuMode: this.options.cpuMode } : {}),
      disks: spec.disks.map((disk) => ({ ...disk })),
      // q35 has no IDE controller; i440fx ('pc', libvirt's default) has no SATA one unless added.
      ...(spec.configDrive === undefined ? {} : { cdrom: { path: spec.configDrive, bus: /q35/.test(this.options.machine ?? '') ? 'sata' as const : 'ide' as const } }),
      interfaces: spec.nics.map((nic) => ({ ...nic })),
      serialLogPath: spec.consoleLogPath,
    }
  }

  async spawn(spec: GuestSpec): Promise<GuestInfo> {
    validateGuestSpec(spec)
    // Checked before defining: redefining an existing uuid would replace it, and the
    // cleanup below would then remove a guest this call did not make.
    if ((await this.host.findGuest(spec.uuid)) !== undefined) throw new AlreadyExists(`guest ${spec.uuid} already exists`)
    if ((await this.host.findGuestByName(spec.name)) !== undefined) {
      throw new AlreadyExists(`a guest named ${spec.name} already exists`)
    }
    const xml = toDomainXml(this.domainConfig(spec))
    const log = this.logger?.child({ instance: spec.uuid })
    const started = Date.now()
    log?.info({ accelerator: this.accelerator }, 'spawn started')
    try {
      const info = await withReverter(
        async (revert) => {
          const guest = await this.host.defineGuest(xml)
          revert.add(`remove guest ${spec.uuid}`, () => this.removeDomain(spec.uuid))
          await guest.create()
          return guestInfo(await guest.info())
        },
        {
          onUndoFailure: (failures) =>
            log?.error({ failures: failures.map((f) => `${f.description}: ${String(f.error)}`) }, 'spawn cleanup failed'),
        },
      )
      log?.info({ ms: Date.now() - started }, 'spawn finished')
      return info
    } catch (error) {
      log?.warn({ err: error, ms: Date.now() - started }, 'spawn failed, cleaned up')
      throw error
    }
  }

  async destroy(uuid: string): Promise<void> {
    await this.removeDomain(uuid)
    this.logger?.info({ instance: uuid }, 'destroyed')
  }

  /** Hard power off if needed, then undefine; a guest that vanishes meanwhile is fine. */
  private async removeDomain(uuid: string): Promise<void> {
    const guest = await this.host.findGuest(uuid)
    if (guest === undefined) return
    try {
      await this.hardStop(guest)
      await guest.undefine()
    } catch (error) {
      if (error instanceof NotFound) return
      throw error
    }
  }

  /** `virDomainDestroy` unless already off; retried while QEMU is still releasing the guest. */
  private async hardStop(guest: Guest): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      if ((await guest.info()).state === VirDomainState.SHUTOFF) return
      try {
        await guest.destroy()
        return
      } catch (error) {
        // "domain is not running": it stopped on its own in the meantime.
        if (error instanceof FailedPrecondition) return
        const busy = error instanceof Error && /busy/i.test(error.message)
        if (!busy || attempt >= 3) throw error
        await sleep(200 * attempt)
      }
    }
  }

  async powerOn(uuid: string): Promise<void> {
    const guest = await this.host.lookupGuest(uuid)
    if (checkPowerTransition('powerOn', await guest.powerState(), uuid) === 'noop') return
    await guest.create()
  }

  async powerOff(uuid: string, options: PowerOffOptions = {}): Promise<void> {
    const guest = await this.host.lookupGuest(uuid)
    const state = await guest.powerState()
    if (checkPowerTransition('powerOff', state, uuid) === 'noop') return
    const timeoutMs = options.timeoutMs ?? DEFAULT_SHUTDOWN_TIMEOUT_MS
    if (timeoutMs > 0 && state === PowerState.RUNNING && (await this.cleanShutdown(guest, timeoutMs))) {
      this.logger?.info({ instance: uuid }, 'powered off cleanly')
      return
    }
    await this.hardStop(guest)
    this.logger?.info({ instance: uuid, timeoutMs }, 'powered off hard')
  }

  /**
   * ACPI power button, then wait until libvirt reports SHUTOFF; false if the
   * guest did not comply in time. Nova's SHUTDOWN power state also covers
   * libvirt's "being shut down" (QEMU still running), so waiting for it would
   * let a following start race the exit ("domain is already running").
   */
  private async cleanShutdown(guest: Guest, timeoutMs: number): Promise<boolean> {
    try {
      await guest.shutdown()
    } catch (error) {
      // Already on its way down (or down): just wait below.
      if (!(error instanceof FailedPrecondition)) throw error
    }
    const deadline = Date.now() + timeoutMs
    const interval = this.options.pollIntervalMs ?? 100
    for (;;) {
      if ((await guest.info()).state === VirDomainState.SHUTOFF) return true
      if (Date.now() >= deadline) return false
      await sleep(Math.min(interval, Math.max(0, deadline - Date.now())))
    }
  }

  async reboot(uuid: string, options: RebootOptions): Promise<void> {
    const guest = await this.host.lookupGuest(uuid)
    const state = await guest.powerState()
    if (options.type === 'soft') {
      checkPowerTransition('softReboot', state, uuid)
      // nova's _soft_reboot: shut down cleanly and start again; if the guest
      // does not shut down in time, fall through to a hard reboot.
      if (await this.cleanShutdown(guest, options.timeoutMs ?? DEFAULT_SHUTDOWN_TIMEOUT_MS)) {
        await guest.create()
        this.logger?.info({ instance: uuid }, 'soft reboot done')
        return
      }
      this.logger?.info({ instance: uuid }, 'guest ignored the soft reboot, rebooting hard')
    } else {
      checkPowerTransition('hardReboot', state, uuid)
    }
    await this.hardStop(guest)
    await guest.create()
    this.logger?.info({ instance: uuid, type: options.type }, 'hard reboot done')
  }

  async pause(uuid: string): Promise<void> {
    const guest = await this.host.lookupGuest(uuid)
    if (checkPowerTransition('pause', await guest.powerState(), uuid) === 'noop') return
    await guest.suspend()
    this.logger?.info({ instance: uuid }, 'paused')
  }

  async unpause(uuid: string): Promise<void> {
    const guest = await this.host.lookupGuest(uuid)
    if (checkPowerTransition('unpause', await guest.powerState(), uuid) === 'noop') return
    await guest.resume()
    this.logger?.info({ instance: uuid }, 'unpaused')
  }

  async getInfo(uuid: string): Promise<GuestInfo> {
    const guest = await this.host.lookupGuest(uuid)
    return guestInfo(await guest.info())
  }

  async listGuests(): Promise<GuestInfo[]> {
    return (await this.host.listDomains()).map(guestInfo)
  }

  async getConsoleOutput(uuid: string, options: ConsoleOutputOptions = {}): Promise<string> {
    const guest = await this.host.lookupGuest(uuid)
    // Like nova, find the log through the domain's own XML: it is the truth about where QEMU writes.
    const { serialLogPath } = parseDomainXml(await guest.xml())
    if (serialLogPath === undefined) return ''
    const maxBytes = options.maxBytes ?? DEFAULT_CONSOLE_MAX_BYTES
    return tailBytes(await readTail(serialLogPath, maxBytes), maxBytes)
  }

  // ---------------------------------------------------------- volume disks

  /**
   * Live first (the step a guest can refuse), then the persistent definition;
   * a failure of the second undoes the first. Each half is skipped when the
   * disk is there already, so a repeated attach changes nothing.
   */
  async attachDisk(uuid: string, disk: VolumeDiskSpec): Promise<void> {
    validateVolumeDisk(disk)
    const guest = await this.host.lookupGuest(uuid)
    const live = await guest.isActive()
    const inConfig = diskOn(await guest.xml(true), disk.device)
    const inLive = live ? diskOn(await guest.xml(), disk.device) : undefined
    for (const held of [inConfig, inLive]) {
      if (held && held.path !== disk.path) throw new AlreadyExists(`device ${disk.device} of guest ${uuid} holds ${held.path}`)
    }
    // A network disk has no local directory to probe (and no host page cache to bypass): libvirt's default.
    const xml = toDiskXml(disk.network ? disk : { ...disk, cache: (await supportsDirectIo(path.dirname(disk.path))) ? 'none' : 'writeback' })
    const log = this.logger?.child({ instance: uuid, device: disk.device })
    await withReverter(async (revert) => {
      if (live && !inLive) {
        await guest.attachDevice(xml, 'live')
        revert.add(`hot-unplug ${disk.device} of guest ${uuid}`, () => guest.detachDevice(xml, 'live'))
      }
      if (!inConfig) await guest.attachDevice(xml, 'config')
    })
    log?.info({ path: disk.path, live }, 'disk attached')
  }

  /**
   * Live first, waiting until the guest let the device go (QEMU's
   * DEVICE_DELETED: the disk leaves the live XML), then the persistent
   * definition; a guest that does not let go keeps both.
   */
  async detachDisk(uuid: string, device: string, options: DetachDiskOptions = {}): Promise<void> {
    checkVolumeDevice(device)
    const guest = await this.host.lookupGuest(uuid)
    const log = this.logger?.child({ instance: uuid, device })
    if (await guest.isActive()) {
      const held = diskOn(await guest.xml(), device)
      if (held) {
        await guest.detachDevice(toDiskXml(held), 'live')
        const timeoutMs = options.timeoutMs ?? DEFAULT_DETACH_TIMEOUT_MS
        const deadline = Date.now() + timeoutMs
        const interval = this.options.pollIntervalMs ?? 100
        // A guest that stops meanwhile has no live devices left to wait for.
        while ((await guest.isActive()) && diskOn(await guest.xml(), device)) {
          if (Date.now() >= deadline) throw new Unavailable(`guest ${uuid} did not release disk ${device} within ${timeoutMs} ms (the guest must acknowledge the hot-unplug); it stays attached`)
          await sleep(interval)
        }
      }
    }
    const persistent = diskOn(await guest.xml(true), device)
    if (persistent) await guest.detachDevice(toDiskXml(persistent), 'config')
    log?.info({ live: Boolean(persistent) }, 'disk detached')
  }

  async listDisks(uuid: string): Promise<VolumeDiskSpec[]> {
    const guest = await this.host.lookupGuest(uuid)
    return parseDomainXml(await guest.xml(true)).disks.map(({ cache: _c, serial, ...d }) => ({ ...d, serial: serial ?? '' }))
  }

  async resizeDisk(uuid: string, device: string, bytes: number): Promise<void> {
    const guest = await this.host.lookupGuest(uuid)
    if (!(await guest.isActive())) return
    const xml = await guest.xml()
    const disk = diskOn(xml, device)
    if (!disk) throw new NotFound(`guest ${uuid} has no disk ${device}`)
    // An NBD client learns the export's size when it connects: the export host dropped the connection
    // when it grew the volume, and QEMU reconnects on the disk's next request (a read here if the guest
    // makes none); until then QEMU refuses the resize ("Cannot grow NBD nodes").
    const node = disk.network ? diskStorageNode(xml, device) : undefined
    let said = ''
    for (let attempt = 1; ; attempt++) {
      try {
        await guest.blockResize(device, bytes)
        break
      } catch (err) {
        if (!node || !/Cannot grow NBD nodes/.test((err as Error).message)) throw err
        if (attempt >= RECONNECT_ATTEMPTS) throw new FailedPrecondition(`guest ${uuid} keeps the old size of its network disk ${device}: its QEMU did not reconnect to the export (${disk.path}) and learn the new size of ${bytes} bytes after ${attempt} attempts${said ? ` (a read of ${node} said: ${said})` : ''}: ${(err as Error).message}`, { cause: err })
        said = (await guest.readSector(node)).trim()
        await new Promise((r) => setTimeout(r, 500))
      }
    }
    this.logger?.info({ instance: uuid, device, bytes }, 'disk resized')
  }

  async snapshotDisk(uuid: string, device: string, overlay: string): Promise<boolean> {
    const guest = await this.host.lookupGuest(uuid)
    if (!(await guest.isActive())) return false
    const live = parseDomainXml(await guest.xml())
    const disk = live.disks.find((d) => d.device === device)
    if (!disk || disk.network) throw new NotFound(`guest ${uuid} has no file disk ${device}`)
    // QEMU reopens the frozen image read-only by its name: that name must stay the frozen image's.
    if (path.resolve(disk.path) === path.resolve(overlay)) throw new InvalidArgument(`the overlay of disk ${device} of guest ${uuid} must have a path of its own, not the disk's (${disk.path}): QEMU reopens the frozen image by its name`)
    // Every other disk is named, not snapshotted (unnamed ones would be: disk-only's default).
    const disks = live.disks.map((d) => d.device === device
      ? el('disk', { name: d.device, snapshot: 'external', type: 'file' }, el('driver', { type: 'qcow2' }), el('source', { file: overlay }))
      : el('disk', { name: d.device, snapshot: 'no' }))
    this.logger?.info({ instance: uuid, device, from: disk.path, overlay }, 'moving the disk onto a new overlay (disk-only external snapshot)')
    await guest.snapshotDisks(serializeXml(el('domainsnapshot', {}, el('disks', {}, ...disks))))
    // The chain libvirt recorded in the persistent definition would outlive a later merge: read from the headers at start.
    await this.dropBackingChain(guest, device)
    this.logger?.info({ instance: uuid, device, overlay }, 'disk snapshot taken: the guest writes to the new overlay, its old image is frozen')
    return true
  }

  async diskSource(uuid: string, device: string): Promise<string | undefined> {
    const guest = await this.host.findGuest(uuid)
    if (!guest) return undefined
    const active = await guest.isActive()
    return diskOn(await guest.xml(!active), device)?.path
  }

  /** How the driver waits for a block job of QEMU's (blockJobTimeoutMs). */
  private blockJobPoll(what: string): PollOptions {
    return { deadlineMs: this.options.blockJobTimeoutMs ?? DEFAULT_BLOCK_JOB_TIMEOUT_MS, pauseMs: BLOCK_JOB_POLL_MS, what, where: 'QEMU' }
  }

  async pullDisk(uuid: string, device: string): Promise<boolean> {
    const guest = await this.host.lookupGuest(uuid)
    if (!(await guest.isActive())) return false
    const disk = diskOn(await guest.xml(), device)
    if (!disk || disk.network) throw new NotFound(`guest ${uuid} has no file disk ${device}`)
    this.logger?.info({ instance: uuid, device, path: disk.path }, 'pulling the disk\'s backing chain into its file (block-stream)')
    await guest.blockPull(device)
    await this.blockJobEnded(guest, device)
    if (await this.hasBackingChain(guest, device)) throw new Internal(`the pull of the backing chain of disk ${device} of guest ${uuid} into ${disk.path} ended without merging it (QEMU's block-stream job failed or was cancelled; see the guest's QEMU log)`)
    await this.dropBackingChain(guest, device)
    this.logger?.info({ instance: uuid, device, path: disk.path }, 'backing chain pulled: the disk\'s file stands alone')
    return true
  }

  async settleDiskPull(uuid: string, device: string): Promise<void> {
    const guest = await this.host.findGuest(uuid)
    if (!guest) return
    if (await guest.isActive()) await this.blockJobEnded(guest, device)
    if (!(await guest.isActive()) || !(await this.hasBackingChain(guest, device))) await this.dropBackingChain(guest, device)
  }

  /** Waits until disk `device` of `guest` has no block job (libvirt drops a pull's job once QEMU concluded it), or the guest stopped. */
  private async blockJobEnded(guest: Guest, device: string): Promise<void> {
    await pollUntil<void>(async () => {
      const job = (await guest.isActive()) ? await guest.blockJob(device) : undefined
      return job ? new Pending(`${job.cur} of ${job.end} bytes`) : undefined
    }, this.blockJobPoll(`the block job on disk ${device} of guest ${guest.uuid}`))
  }

  /** Whether the live disk `device` of `guest` still has a backing file (libvirt's live chain). */
  private async hasBackingChain(guest: Guest, device: string): Promise<boolean> {
    return (await this.liveChain(guest, device)).length > 1
  }

  /** The files of the live disk `device` of `guest`, top first, as libvirt knows them (the names QEMU opened them by). */
  private async liveChain(guest: Guest, device: string): Promise<string[]> {
    let node = childrenNamed(child(parseXml(await guest.xml()), 'devices'), 'disk').find((d) => child(d, 'target')?.attrs.dev === device)
    const files = []
    for (let file = child(node, 'source')?.attrs.file; file !== undefined; file = child(node, 'source')?.attrs.file) {
      files.push(file)
      node = child(node, 'backingStore')
    }
    return files
  }

  /**
   * Drops a backing chain the persistent definition names for disk `device`
   * (one recorded there would outlive a pull that merged it away); without
   * it libvirt reads the chain from the headers at start.
   */
  private async dropBackingChain(guest: Guest, device: string): Promise<void> {
    const def = parseXml(await guest.xml(true))
    const disk = childrenNamed(child(def, 'devices'), 'disk').find((d) => child(d, 'target')?.attrs.dev === device)
    if (!disk || !child(disk, 'backingStore')) return
    disk.children = disk.children.filter((c) => c.name !== 'backingStore')
    await this.host.defineGuest(serializeXml(def))
  }
}

/** How often a block job's progress is read. */
const BLOCK_JOB_POLL_MS = 250

/** How many reads a network disk's resize makes QEMU try to reconnect with (half a second apart). */
const RECONNECT_ATTEMPTS = 60

/** The file disk on target `device` in a domain XML, if any. */
function diskOn(xml: string, device: string): DomainDisk | undefined {
  return parseDomainXml(xml).disks.find((d) => d.device === device)
}

const directIo = new Map<string, boolean>()

/**
 * Whether files in `dir` open with O_DIRECT (tmpfs refuses it), so cache=none
 * works there — nova's `_supports_direct_io`, asked once per directory.
 */
async function supportsDirectIo(dir: string): Promise<boolean> {
  const known = directIo.get(dir)
  if (known !== undefined) return known
  const probe = path.join(dir, `.directio.${process.pid}.${Math.random().toString(36).slice(2)}`)
  let ok = false
  try {
    const h = await open(probe, fsConstants.O_CREAT | fsConstants.O_WRONLY | fsConstants.O_DIRECT, 0o600)
    await h.close()
    ok = true
  } catch {
    ok = false
  } finally {
    await rm(probe, { force: true })
  }
  directIo.set(dir, ok)
  return ok
}


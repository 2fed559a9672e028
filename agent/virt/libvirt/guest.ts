/**
 * One libvirt domain (after nova `virt/libvirt/guest.py`): create, destroy,
 * shutdown, reboot, undefine, info and XML. Policy (timeouts, fallbacks) is
 * the driver's; this class only speaks to libvirt through the host's thread.
 */
import { PowerState } from '../../../proto/power-state.js'
import { VirDomainBlockResizeFlags, VirDomainModificationImpact, VirDomainQemuMonitorCommandFlags, VirDomainSnapshotCreateFlags, VirDomainShutdownFlags, VirDomainState, VirDomainUndefineFlags } from './constants.js'
import type { Host } from './host.js'
import type { BlockJobInfo } from './ffi.js'
import type { DomainRecord } from './worker.js'

/** libvirt domain state → Nova power state (nova's `LIBVIRT_POWER_STATE`). */
const POWER_STATE: Record<number, PowerState> = {
  [VirDomainState.NOSTATE]: PowerState.NOSTATE,
  [VirDomainState.RUNNING]: PowerState.RUNNING,
  // BLOCKED means "waiting on I/O" for Xen; it is still running.
  [VirDomainState.BLOCKED]: PowerState.RUNNING,
  [VirDomainState.PAUSED]: PowerState.PAUSED,
  // SHUTDOWN is "being shut down": Nova reports it as SHUTDOWN already.
  [VirDomainState.SHUTDOWN]: PowerState.SHUTDOWN,
  [VirDomainState.SHUTOFF]: PowerState.SHUTDOWN,
  [VirDomainState.CRASHED]: PowerState.CRASHED,
  [VirDomainState.PMSUSPENDED]: PowerState.SUSPENDED,
}

export function powerStateOf(libvirtState: number): PowerState {
  return POWER_STATE[libvirtState] ?? PowerState.NOSTATE
}

export class Guest {
  constructor(
    private readonly host: Host,
    readonly uuid: string,
    readonly name: string,
  ) {}

  /** `virDomainCreate`: starts the defined domain. */
  async create(): Promise<void> {
    await this.host.call('create', `start guest ${this.uuid}`, this.uuid)
  }

  /** `virDomainDestroy`: pulls the plug. */
  async destroy(): Promise<void> {
    await this.host.call('destroy', `power off guest ${this.uuid}`, this.uuid)
  }

  /** Presses the ACPI power button; returns at once, the guest may ignore it. */
  async shutdown(): Promise<void> {
    await this.host.call('shutdown', `shut down guest ${this.uuid}`, this.uuid, VirDomainShutdownFlags.ACPI_POWER_BTN)
  }

  /** Asks the guest to reboot via ACPI; returns at once. */
  async reboot(): Promise<void> {
    await this.host.call('reboot', `reboot guest ${this.uuid}`, this.uuid, VirDomainShutdownFlags.ACPI_POWER_BTN)
  }

  /** Hardware reset (the QEMU process stays). */
  async reset(): Promise<void> {
    await this.host.call('reset', `reset guest ${this.uuid}`, this.uuid)
  }

  /** `virDomainSuspend`: stops the vCPUs; QEMU drains and flushes the disks first. */
  async suspend(): Promise<void> {
    await this.host.call('suspend', `pause guest ${this.uuid}`, this.uuid)
  }

  /** `virDomainResume` */
  async resume(): Promise<void> {
    await this.host.call('resume', `unpause guest ${this.uuid}`, this.uuid)
  }

  /** Removes the definition, with managed-save images, snapshot and checkpoint metadata. */
  async undefine(): Promise<void> {
    const flags =
      VirDomainUndefineFlags.MANAGED_SAVE | VirDomainUndefineFlags.SNAPSHOTS_METADATA | VirDomainUndefineFlags.CHECKPOINTS_METADATA
    await this.host.call('undefine', `undefine guest ${this.uuid}`, this.uuid, flags)
  }

  /** The domain's state and figures, straight from libvirt. */
  info(): Promise<DomainRecord> {
    return this.host.call('lookupByUUID', `read guest ${this.uuid}`, this.uuid)
  }

  /** Nova power state now. */
  async powerState(): Promise<PowerState> {
    return powerStateOf((await this.info()).state)
  }

  /** The live domain XML (or the persistent definition with `inactive`). */
  xml(inactive = false): Promise<string> {
    return this.host.call('xml', `read XML of guest ${this.uuid}`, this.uuid, inactive)
  }

  /** Whether QEMU runs for it (running, paused, …: it has a live definition). */
  isActive(): Promise<boolean> {
    return this.host.call('isActive', `read guest ${this.uuid}`, this.uuid)
  }

  /** `virDomainAttachDeviceFlags` into the running guest (`live`) or its persistent definition. */
  async attachDevice(xml: string, where: 'live' | 'config'): Promise<void> {
    await this.host.call('attachDevice', `attach a device to guest ${this.uuid} (${where})`, this.uuid, xml, where === 'live' ? VirDomainModificationImpact.LIVE : VirDomainModificationImpact.CONFIG)
  }

  /** `virDomainDetachDeviceFlags`; a live removal is only asked for: it is done once the guest lets go. */
  async detachDevice(xml: string, where: 'live' | 'config'): Promise<void> {
    await this.host.call('detachDevice', `detach a device from guest ${this.uuid} (${where})`, this.uuid, xml, where === 'live' ? VirDomainModificationImpact.LIVE : VirDomainModificationImpact.CONFIG)
  }

  /** `virDomainBlockResize` of the disk on target `device`, in bytes. */
  async blockResize(device: string, bytes: number): Promise<void> {
    await this.host.call('blockResize', `resize disk ${device} of guest ${this.uuid}`, this.uuid, device, bytes, VirDomainBlockResizeFlags.BYTES)
  }

  /**
   * Reads the first sector of block node `node` in QEMU (HMP `qemu-io`; what
   * it prints goes to QEMU's log, errors come back): an NBD client that lost
   * its connection reconnects on a request, and learns the export's size then.
   */
  async readSector(node: string): Promise<string> {
    return this.host.call('qemuMonitorCommand', `read from block node ${node} of guest ${this.uuid}`, this.uuid, `qemu-io ${node} "read 0 512"`, VirDomainQemuMonitorCommandFlags.HMP)
  }

  /**
   * `virDomainSnapshotCreateXML`, disk-only and external onto overlay files
   * that exist already (REUSE_EXT), with no snapshot metadata, atomically:
   * the disks `xml` marks external write to their new files from now on.
   */
  async snapshotDisks(xml: string): Promise<void> {
    const f = VirDomainSnapshotCreateFlags
    await this.host.call('snapshotCreate', `take a disk snapshot of guest ${this.uuid}`, this.uuid, xml, f.DISK_ONLY | f.REUSE_EXT | f.NO_METADATA | f.ATOMIC)
  }

  /**
   * `virDomainBlockPull` of the disk on target `device`: a block job (QEMU's
   * block-stream) copies every block its backing chain shows into its active
   * file, which then has no backing file; the guest keeps running and
   * writing. Returns once the job started ({@link blockJob} follows it).
   */
  async blockPull(device: string): Promise<void> {
    await this.host.call('blockPull', `pull the backing chain of disk ${device} of guest ${this.uuid} into it`, this.uuid, device, 0)
  }

  /** The block job of the disk on target `device`, or null when it has none. */
  blockJob(device: string): Promise<BlockJobInfo | null> {
    return this.host.call('blockJobInfo', `read the block job of disk ${device} of guest ${this.uuid}`, this.uuid, device)
  }
}

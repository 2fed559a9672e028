/**
 * The agent's compute manager (after nova `compute/manager.py`): builds,
 * powers, reboots and deletes the servers the controller placed on this host,
 * through the VirtDriver, with their disks (image cache + qcow2 overlay) and
 * NICs (a Linux bridge per network). Transport-free: `service.ts` feeds it
 * casts from NATS and publishes what it returns.
 *
 * Operations on one server run one at a time, in the order they were asked
 * (Incus' operation locks); different servers proceed concurrently. Every
 * operation is idempotent, because a cast may be delivered again after a
 * restart: a build finds the guest it already made, a delete of a missing
 * guest succeeds.
 *
 * What is the agent's: the directory `<instancesDir>/<uuid>` it makes for each
 * server (disk, console log). Guests without such a directory belong to
 * somebody else (another agent on a shared hypervisor) and are never touched.
 */
import { readdir, rm } from 'node:fs/promises'
import path from 'node:path'
import { AlreadyExists, FailedPrecondition, NotFound } from '../proto/errors.js'
import { withReverter, type UndoLog } from '../proto/revert.js'
import { ensureBridge } from './net/bridge.js'
import { tapName } from './net/firewall.js'
import { networkDiskPath, type DiskSpec, type GuestInfo, type GuestSpec, type NicSpec, type VirtDriver, type VolumeDiskSpec } from './virt/driver.js'
import type { ExportRef, VolumeExport } from './volume/driver.js'
import { isUuid } from '../proto/ids.js'
import { PowerState } from '../proto/power-state.js'
import { ImageCache, type ImageSource, type KnownImage } from './disk/image-cache.js'
import { GuestDirs } from './disk/guest-dirs.js'
import { configDriveFiles, writeConfigDrive } from './disk/config-drive.js'
import type { BuildSpec } from '../proto/build-spec.js'
import { createRootDisk } from './disk/root-disk.js'
import { convertImage, sparseCopy } from '../native/index.js'
import { volumeSerial } from '../proto/volume-attach.js'
import type { CastState } from '../proto/volume-work.js'
import type { Cast } from '../proto/gen/strato/agent/v1/agent.js'

/** The build spec the conductor hands out (agent.v1 BuildSpec). */
export type { BuildSpec }

/** What the controller believes about a server of this host. */
export interface KnownInstance {
  instanceUuid: string
  host: string
  vmState: string
  taskState: string
  /** The cast of the action in progress, '' when none. */
  pendingCastId: string
  /** The request id of the API call behind that cast, '' when none. */
  pendingRequestId: string
}

/** What the manager asks the controller (the conductor). */
export interface Conductor {
  buildSpec(instanceUuid: string): Promise<BuildSpec>
  /** Servers placed on this host, and the state of `also` wherever they are. */
  hostInstances(also: string[]): Promise<KnownInstance[]>
  /**
   * Reports a step of the snapshot `castId` of a server (its task_state) and
   * learns the snapshot's image; the image_uploading step also brings the
   * image-upload token. Absent: this agent makes no snapshots.
   */
  snapshotStep?(instanceUuid: string, castId: string, taskState: 'image_snapshot' | 'image_pending_upload' | 'image_uploading'): Promise<{ imageId: string; imageUploadToken: string }>
  /**
   * Start-up sync of the volume disks of this host's guests (`seen`) with
   * the attachments: the disks to detach, and the volume work pending here.
   * Absent: no volume sync.
   */
  hostVolumes?(seen: string[], disks: HostVolumeDisk[], exports?: ExportRef[]): Promise<{ detach: HostVolumeDisk[]; resume: Cast[]; unexport?: ExportRef[] }>
  /** Whether a volume-role cast (volume or snapshot work, an attach, detach or extend_volume) is still the one its row waits for, and why not. Absent: always. */
  volumeCast?(castId: string): Promise<CastState>
}

/** A volume disk of a guest (serial: the volume id cut to 20 characters; volumeId: the volume it names, when known). */
export interface HostVolumeDisk {
  instanceUuid: string
  device: string
  serial: string
  volumeId: string
}

/** Uploads a file as an image's data with an image-upload token (the image service's UploadImage). */
export type ImageUpload = (imageId: string, file: string, token: string) => Promise<{ status: string; checksum: string; size: number }>

export interface ComputeManagerOptions {
  host: string
  instancesDir: string
  /** How the directories of guests' files are made (QEMU's group, or private). @default private (no QEMU) */
  dirs?: GuestDirs
  /** Physical network → bridge of this host (flat networks); vlan and local networks get `brq<network id>`. */
  bridgeMappings: Record<string, string>
  /** Create missing bridges (off for the fake driver, which plugs nothing). */
  manageBridges: boolean
  /** How long a stop waits for the guest to shut down before pulling the plug (Nova `shutdown_timeout`). */
  shutdownTimeoutMs: number
  /**
   * Image data, downloaded with the build's image-read token; `known` is what
   * the build spec says of the image (so no GetImage is needed).
   */
  images: (token: string, known?: KnownImage) => ImageSource
  /** Where server snapshots are uploaded; absent: snapshots fail (FailedPrecondition). */
  upload?: ImageUpload
  /** Brings the host's security-group filtering up to date (before a guest first runs, after one is deleted). */
  refreshFirewall?: () => Promise<void>
  /**
   * Brings the host's DHCP up to date before a guest first runs, so its
   * first DISCOVER is answered (Neutron's DHCP provisioning block). Never
   * fails a build: the caller logs what goes wrong.
   */
  refreshDhcp?: () => Promise<void>
  /** Where undo steps that fail while a build is rolled back are logged. @default process warnings on stderr */
  log?: UndoLog
  /**
   * Where the volumes this host's servers attach are: `export` gives the
   * local file of a volume this host's backend keeps (`volumeHost` is this
   * host), or a network export of it by `volumeHost` (another host, or this
   * one when the agent forces the network path, or for a `multiattach`
   * volume: one process, the export's, opens its file for all its guests);
   * `unexport` ends what `export` gave (`volumeHost` '': the controller
   * ends it once no attachment on this host needs it). Absent: no volume
   * can be attached here.
   */
  volumes?: {
    export(volumeId: string, volumeHost: string, o?: { multiattach?: boolean }): Promise<VolumeExport>
    unexport(volumeId: string, volumeHost: string): Promise<void>
  }
}

export interface Reconciled {
  /** Guests and directories removed because the controller no longer has them here. */
  removed: string[]
  /** Casts of actions in progress on this host's servers, to resume (they may have been interrupted). */
  resume: Array<{ castId: string; requestId: string }>
}

/** One queue per key: tasks with the same key run one after another, in order. */
export class KeyedQueue {
  private readonly tails = new Map<string, Promise<unknown>>()

  run<T>(key: string, task: () => Promise<T>): Promise<T> {
    const prev = this.tails.get(key) ?? Promise.resolve()
    const next = prev.then(task, task)
    const tail = next.then(() => {}, () => {})
    this.tails.set(key, tail)
    void tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key)
    })
    return next
  }
}

export class ComputeManager {
  readonly cache: ImageCache
  readonly dirs: GuestDirs
  private readonly locks = new KeyedQueue()
  /** The image-read token of the build waiting for each image (any will do: they all read that image). */
  private readonly imageTokens = new Map<string, { token: string; known?: KnownImage }>()

  constructor(
    readonly driver: VirtDriver,
    private readonly conductor: Conductor,
    private readonly o: ComputeManagerOptions,
  ) {
    this.dirs = o.dirs ?? new GuestDirs(undefined)
    this.cache = new ImageCache(path.join(o.instancesDir, '_base'), {
      download: (imageId) => {
        const grant = this.imageTokens.get(imageId)
        return o.images(grant?.token ?? '', grant?.known).download(imageId)
      },
    }, this.dirs)
  }

  /**
   * The cached qcow2 base of an image (a volume made from it), downloaded
   * with `grant` (an image-read token and what the controller knows of the
   * image) when this host has not got it.
   */
  imageBase(imageId: string, grant: { token: string; known?: KnownImage }): Promise<string> {
    this.imageTokens.set(imageId, grant)
    return this.cache.ensure(imageId).finally(() => this.imageTokens.delete(imageId))
  }

  private dir(uuid: string): string {
    if (!isUuid(uuid)) throw new NotFound(`'${uuid}' is not a server uuid`)
    return path.join(this.o.instancesDir, uuid)
  }

  /** Builds the server; a guest that is already running is not built twice. Returns its power state. */
  build(uuid: string): Promise<PowerState> {
    return this.locks.run(uuid, async () => {
      const existing = await this.info(uuid)
      if (existing?.powerState === PowerState.RUNNING) return existing.powerState
      const spec = await this.conductor.buildSpec(uuid)
      // A guest left defined but not running by an interrupted build is made again from scratch.
      if (existing) await this.driver.destroy(uuid)
      const dir = this.dir(uuid)
      return withReverter(async (revert) => {
        // A failed build leaves no guest behind, whoever defined it (see the retry below).
        revert.add(`destroy guest ${uuid}`, () => this.driver.destroy(uuid))
        await rm(dir, { recursive: true, force: true })
        this.dirs.ensure(dir)
        revert.add(`remove ${dir}`, () => rm(dir, { recursive: true, force: true }))
        const root = await this.rootDisk(spec, dir)
        // Its other volumes (block device mappings), attached as they are to a running guest once it exists.
        const volumes = await this.volumeDisks(spec.volumes.filter((v) => v.device !== 'vda'))
        const nics: NicSpec[] = []
        for (const nic of spec.nics) {
          const bridge = this.bridgeFor(nic)
          if (this.o.manageBridges) await ensureBridge(bridge)
          nics.push({ mac: nic.macAddress, bridge, model: 'virtio', device: tapName(nic.portId) })
        }
        const guest: GuestSpec = {
          uuid,
          name: spec.name,
          vcpus: spec.vcpus,
          memoryMiB: spec.memoryMb,
          disks: [root],
          nics,
          consoleLogPath: path.join(dir, 'console.log'),
        }
        // The guest's ports are filtered before it first runs.
        await this.o.refreshFirewall?.()
        await this.o.refreshDhcp?.()
        if (spec.configDrive) {
          guest.configDrive = path.join(dir, 'disk.config')
          await writeConfigDrive(guest.configDrive, configDriveFiles(spec))
        }
        try {
          await this.driver.spawn(guest)
        } catch (err) {
          // An agent killed mid-spawn leaves libvirtd finishing its define and start: the guest can
          // appear after the check above. It is this server's, from the interrupted build: replace it.
          if (!(err instanceof AlreadyExists)) throw err
          await this.driver.destroy(uuid)
          await this.driver.spawn(guest)
        }
        for (const v of volumes) await this.driver.attachDisk(uuid, v)
        return (await this.driver.getInfo(uuid)).powerState
      }, { log: this.o.log, context: { instance: uuid, host: this.o.host, action: 'build' } })
    })
  }

  /**
   * The server's root disk: its boot volume (the volume backend's file on
   * this host) when it boots from one, else a qcow2 overlay in `dir` on the
   * image's cached base.
   */
  private async rootDisk(spec: BuildSpec, dir: string): Promise<DiskSpec> {
    const boot = spec.volumes.find((v) => v.device === 'vda')
    if (boot) return (await this.volumeDisks([boot]))[0]!
    if (spec.imageReadToken) {
      const known = spec.imageDiskFormat ? { checksum: spec.imageChecksum, diskFormat: spec.imageDiskFormat, status: 'active' } : undefined
      this.imageTokens.set(spec.imageId, { token: spec.imageReadToken, ...(known ? { known } : {}) })
    }
    const base = await this.cache.ensure(spec.imageId).finally(() => this.imageTokens.delete(spec.imageId))
    const disk = path.join(dir, 'disk')
    await createRootDisk(disk, base, spec.diskGb)
    return { path: disk, format: 'qcow2', bus: 'virtio', device: 'vda' }
  }

  /** The disks of a server's volumes (exported to this host: files or network exports), serial = the volume id. */
  private async volumeDisks(volumes: BuildSpec['volumes']): Promise<VolumeDiskSpec[]> {
    const out: VolumeDiskSpec[] = []
    for (const v of volumes) out.push(await this.volumeDisk(v.volumeId, v.volumeHost, v.device, v.multiattach))
    return out
  }

  /**
   * Volume `volumeId` of `volumeHost`'s backend as a disk of this host's
   * guests on `device`. A multiattach volume is its host's network export
   * here too (when that host serves exports), and shareable (Nova's
   * `<shareable/>`): QEMU refuses a second guest writing its qcow2 file,
   * while the export's daemon opens it once and serves every guest raw.
   */
  private async volumeDisk(volumeId: string, volumeHost: string, device: string, multiattach = false): Promise<VolumeDiskSpec> {
    if (!this.o.volumes) throw new FailedPrecondition(`host '${this.o.host}' attaches no volumes (no volume role here, and no way to ask for network exports), so volume ${volumeId} cannot be attached`)
    const where = await this.o.volumes.export(volumeId, volumeHost || this.o.host, { multiattach })
    const disk = { bus: 'virtio' as const, device, serial: volumeSerial(volumeId) }
    if (where.kind === 'file') return { ...disk, path: where.path, format: where.format }
    const network = { protocol: 'nbd' as const, address: where.address, port: where.port, name: where.name, tls: true }
    return { ...disk, path: networkDiskPath(network), format: where.format, network, ...(multiattach ? { shareable: true } : {}) }
  }

  /** Bridge of a NIC's network on this host (Neutron linuxbridge: a mapped bridge for flat, `brq<net id>` otherwise). */
  bridgeFor(nic: { networkId: string; networkType: string; physicalNetwork: string }): string {
    if (nic.networkType === 'flat') {
      const bridge = this.o.bridgeMappings[nic.physicalNetwork]
      if (!bridge) {
        throw new FailedPrecondition(`host '${this.o.host}' has no bridge for physical network '${nic.physicalNetwork}'; map one in the agent's bridgeMappings (STRATO_AGENT_BRIDGE_MAPPINGS=${nic.physicalNetwork}:br-…)`)
      }
      return bridge
    }
    return `brq${nic.networkId.slice(0, 11)}`
  }

  start(uuid: string): Promise<PowerState> {
    return this.locks.run(uuid, async () => {
      await this.driver.powerOn(uuid)
      return (await this.driver.getInfo(uuid)).powerState
    })
  }

  stop(uuid: string): Promise<PowerState> {
    return this.locks.run(uuid, async () => {
      await this.driver.powerOff(uuid, { timeoutMs: this.o.shutdownTimeoutMs })
      return (await this.driver.getInfo(uuid)).powerState
    })
  }

  reboot(uuid: string, hard: boolean): Promise<PowerState> {
    return this.locks.run(uuid, async () => {
      await this.driver.reboot(uuid, { type: hard ? 'hard' : 'soft', timeoutMs: this.o.shutdownTimeoutMs })
      return (await this.driver.getInfo(uuid)).powerState
    })
  }

  /** Destroys the guest and removes its disk and log; nothing there is fine. */
  delete(uuid: string): Promise<PowerState> {
    return this.locks.run(uuid, async () => {
      // Its network disks' exports end with it (their volume hosts serve them; the controller knows which).
      const networkDisks = (await this.driver.listDisks(uuid).catch(() => [])).filter((d) => d.network && d.serial)
      await this.driver.destroy(uuid)
      await rm(this.dir(uuid), { recursive: true, force: true })
      for (const d of networkDisks) {
        const volumeId = d.network!.name.replace(/^volume-/, '')
        await this.o.volumes?.unexport(volumeId, '').catch((err: Error) => this.o.log?.warn({ instance: uuid, volume: volumeId, err }, 'the export of a deleted server\'s volume stays until its host\'s start-up sync'))
      }
      return PowerState.NOSTATE
    })
  }

  /**
   * Snapshots the server's root disk into the image the controller made for
   * it (Nova's snapshot_instance with the libvirt driver's cold snapshot):
   * a running guest is paused only while its overlay is copied (its base is
   * immutable, so the copy with the same backing file is the disk at that
   * instant), then resumed; a stopped one is read as it is. The overlay
   * chain is flattened by the native engine into one qcow2 (compressed when
   * asked) and uploaded with the conductor's image-upload token. Temporary
   * files are removed whatever happens. Returns the guest's power state.
   */
  snapshot(uuid: string, castId: string, compress: boolean): Promise<PowerState> {
    return this.locks.run(uuid, async () => {
      const step = this.conductor.snapshotStep?.bind(this.conductor)
      const upload = this.o.upload
      if (!step || !upload) throw new FailedPrecondition(`host '${this.o.host}' cannot upload images: server snapshots are not available here`)
      const dir = this.dir(uuid)
      const disk = path.join(dir, 'disk')
      const { imageId } = await step(uuid, castId, 'image_snapshot')
      const copy = path.join(dir, `snapshot-${imageId}.overlay`)
      const flat = path.join(dir, `snapshot-${imageId}.qcow2`)
      try {
        const guest = await this.driver.getInfo(uuid)
        let source = disk
        if (guest.powerState === PowerState.RUNNING || guest.powerState === PowerState.PAUSED) {
          // Strato has no paused servers (no pause action): a guest found PAUSED was left so by a
          // snapshot an agent restart interrupted, and runs again after this one like any other.
          await this.driver.pause(uuid)
          try {
            await sparseCopy(disk, copy)
          } finally {
            await this.driver.unpause(uuid)
          }
          source = copy
        }
        await rm(flat, { force: true })
        await convertImage(source, flat, { srcFormat: 'qcow2', dstFormat: 'qcow2', compress })
        await rm(copy, { force: true })
        await step(uuid, castId, 'image_pending_upload')
        const { imageUploadToken } = await step(uuid, castId, 'image_uploading')
        const image = await upload(imageId, flat, imageUploadToken)
        if (image.status !== 'active') throw new FailedPrecondition(`image ${imageId} is ${image.status} after its upload, not active`)
        return (await this.driver.getInfo(uuid)).powerState
      } finally {
        await rm(copy, { force: true })
        await rm(flat, { force: true })
      }
    })
  }

  /**
   * Attaches a volume of this host's backend to the server (Nova's
   * attach_volume): hot-plugged when the guest runs, into its definition in
   * any case. Returns the guest's power state.
   */
  attachVolume(uuid: string, volumeId: string, device: string, volumeHost = '', multiattach = false): Promise<PowerState> {
    return this.locks.run(uuid, async () => {
      await this.driver.attachDisk(uuid, await this.volumeDisk(volumeId, volumeHost, device, multiattach))
      return (await this.driver.getInfo(uuid)).powerState
    })
  }

  /**
   * Detaches a volume from the server (Nova's detach_volume); a guest that is
   * gone has nothing attached any more. Returns the guest's power state.
   */
  detachVolume(uuid: string, volumeId: string, device: string, volumeHost = ''): Promise<PowerState> {
    return this.locks.run(uuid, async () => {
      let power: PowerState = PowerState.NOSTATE
      let network: boolean | undefined
      try {
        const disk = (await this.driver.listDisks(uuid)).find((d) => d.device === device)
        // Only this volume's disk: the device may have been given to another since.
        if (disk && disk.serial && disk.serial !== volumeSerial(volumeId)) throw new FailedPrecondition(`device ${device} of server ${uuid} holds another volume (serial ${disk.serial}), not ${volumeId}`)
        if (disk) await this.driver.detachDisk(uuid, device)
        network = disk ? Boolean(disk.network) : undefined
        power = (await this.driver.getInfo(uuid)).powerState
      } catch (err) {
        if (!(err instanceof NotFound)) throw err
      }
      // A network export may serve other guests of this host too (a multiattach volume): the controller
      // ends it once no attachment here needs it (''). So does a disk gone already (what it was is unknown).
      await this.o.volumes?.unexport(volumeId, network === false ? volumeHost : '')
      return power
    })
  }

  /** A volume attached to the server grew (Cinder's in-use extend): the running guest is told its new size. */
  /**
   * A volume the server attaches from another host grew there (Nova's
   * volume-extended event): the guest's QEMU learns the new size. Returns
   * the guest's power state.
   * @throws NotFound when the guest or its disk of that volume is gone.
   */
  extendVolume(uuid: string, volumeId: string, device: string, bytes: number): Promise<PowerState> {
    return this.locks.run(uuid, async () => {
      const disk = (await this.driver.listDisks(uuid)).find((d) => d.device === device)
      if (!disk || (disk.serial && disk.serial !== volumeSerial(volumeId))) throw new NotFound(`server ${uuid} has no disk of volume ${volumeId} on ${device}`)
      await this.driver.resizeDisk(uuid, device, bytes)
      return (await this.driver.getInfo(uuid)).powerState
    })
  }

  resizeVolume(uuid: string, device: string, bytes: number): Promise<void> {
    return this.locks.run(uuid, () => this.driver.resizeDisk(uuid, device, bytes))
  }

  /**
   * Runs `fn` holding the locks of servers `uuids` (in one order, so two
   * callers cannot each hold one the other waits for): none of them starts,
   * stops, or attaches meanwhile.
   */
  holdingGuests<T>(uuids: string[], fn: () => Promise<T>): Promise<T> {
    const [first, ...rest] = [...new Set(uuids)].sort()
    return first === undefined ? fn() : this.locks.run(first, () => this.holdingGuests(rest, fn))
  }

  /**
   * A snapshot of a volume guest `uuid` has open: its disk `device` moved onto
   * the volume's new active file `overlay` (VirtDriver.snapshotDisk). Not
   * under the guest's lock: the volume role calls it holding it already
   * (holdingGuests, so the guest cannot start between a move that found it
   * stopped and the file becoming the snapshot); libvirt orders the jobs of
   * one domain itself.
   */
  snapshotVolumeDisk(uuid: string, device: string, overlay: string): Promise<boolean> {
    return this.driver.snapshotDisk(uuid, device, overlay)
  }

  /** The file guest `uuid`'s disk `device` has (VirtDriver.diskSource), for a crash's settling. */
  volumeDiskSource(uuid: string, device: string): Promise<string | undefined> {
    return this.driver.diskSource(uuid, device)
  }

  /**
   * A snapshot deleted under a volume guest `uuid` has open on `device`: its
   * data is pulled into the volume's file live (VirtDriver.pullDisk). Not
   * under the guest's lock, as snapshotVolumeDisk.
   */
  pullVolumeDisk(uuid: string, device: string): Promise<boolean> {
    return this.driver.pullDisk(uuid, device)
  }

  /** After a crash: waits for a pull still running on guest `uuid`'s disk `device` (VirtDriver.settleDiskPull). */
  settleVolumeDiskPull(uuid: string, device: string): Promise<void> {
    return this.driver.settleDiskPull(uuid, device)
  }

  consoleOutput(uuid: string, maxBytes: number): Promise<string> {
    return this.driver.getConsoleOutput(uuid, { maxBytes })
  }

  /** The servers this agent made (a directory under instancesDir). */
  async ownUuids(): Promise<string[]> {
    const names = await readdir(this.o.instancesDir).catch(() => [] as string[])
    return names.filter(isUuid)
  }

  /** Power state of every guest of this agent the hypervisor knows. */
  async ownGuests(): Promise<GuestInfo[]> {
    const own = new Set(await this.ownUuids())
    return (await this.driver.listGuests()).filter((g) => own.has(g.uuid))
  }

  /**
   * Start-up reconciliation (nova `_init_instance`): a guest or directory of
   * a server the controller no longer places here (deleted, or elsewhere) is
   * removed; actions in progress (builds and deletes interrupted by the
   * restart, or not started yet) are returned to be resumed at once rather
   * than when their cast is delivered again.
   */
  async reconcile(): Promise<Reconciled> {
    const own = await this.ownUuids()
    const known = await this.conductor.hostInstances(own)
    const byUuid = new Map(known.map((k) => [k.instanceUuid, k]))
    const removed: string[] = []
    for (const uuid of own) {
      const k = byUuid.get(uuid)
      if (k && k.host === this.o.host && k.vmState !== 'deleted') continue
      await this.delete(uuid)
      removed.push(uuid)
    }
    const resume = known.filter((k) => k.host === this.o.host && k.vmState !== 'deleted' && k.pendingCastId).map((k) => ({ castId: k.pendingCastId, requestId: k.pendingRequestId }))
    return { removed, resume }
  }

  /**
   * Start-up sync of volume attachments (after `reconcile`): libvirt is the
   * truth for what is attached here, so the volume disks of this agent's
   * guests go to the controller, which fixes its records; disks no
   * attachment asks for are detached (an attach the controller gave up on
   * while this host was down). Returns the volume work pending here, to
   * resume at once.
   */
  async reconcileVolumes(exports: ExportRef[] = []): Promise<{ detached: HostVolumeDisk[]; resume: Cast[]; unexport: ExportRef[] }> {
    if (!this.conductor.hostVolumes) return { detached: [], resume: [], unexport: [] }
    const seen: string[] = []
    const disks: HostVolumeDisk[] = []
    for (const g of await this.ownGuests()) {
      let listed
      try {
        listed = await this.driver.listDisks(g.uuid)
      } catch (err) {
        if (err instanceof NotFound) continue
        throw err
      }
      seen.push(g.uuid)
      for (const d of listed) if (d.serial && d.device !== 'vda') disks.push({ instanceUuid: g.uuid, device: d.device, serial: d.serial, volumeId: '' })
    }
    const r = await this.conductor.hostVolumes(seen, disks, exports)
    const detached: HostVolumeDisk[] = []
    for (const d of r.detach) {
      await this.locks.run(d.instanceUuid, async () => {
        // Only the disk that was reported: the serial says it is still the same volume's.
        const disk = (await this.driver.listDisks(d.instanceUuid)).find((x) => x.device === d.device)
        if (!disk || disk.serial !== d.serial) return
        await this.driver.detachDisk(d.instanceUuid, d.device)
        // A network disk's export is the volume host's: the controller knows which ('').
        if (d.volumeId) await this.o.volumes?.unexport(d.volumeId, disk.network ? '' : this.o.host)
        detached.push(d)
      })
    }
    return { detached, resume: r.resume, unexport: r.unexport ?? [] }
  }

  /** Whether a volume-role cast is still wanted (its row waits for it: not done before, replaced or given up on), and why not. */
  async volumeCastState(castId: string): Promise<CastState> {
    return this.conductor.volumeCast ? this.conductor.volumeCast(castId) : { current: true, reason: '' }
  }

  private async info(uuid: string): Promise<GuestInfo | undefined> {
    try {
      return await this.driver.getInfo(uuid)
    } catch (err) {
      if (err instanceof NotFound) return undefined
      throw err
    }
  }
}

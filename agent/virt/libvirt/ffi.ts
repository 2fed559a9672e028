/**
 * The koffi declarations of libvirt's C API (`libvirt.so.0`,
 * Debian `libvirt0`), with libvirt-go naming — `virDomainCreate(dom)` is
 * `domain.create()`, `virConnectListAllDomains(conn)` is `connect.listAllDomains()`.
 * (The only other koffi declarations are libc's few in agent/net/netns.ts.)
 *
 * Every call here is synchronous and may block for as long as libvirtd takes
 * (hundreds of ms to start a domain). Load this module only inside the
 * libvirt worker thread (`worker.ts`), never on the main thread.
 *
 * libvirt keeps its last error per thread. Each wrapper checks the return
 * value and, on failure, reads `virGetLastError()` immediately, on the same
 * thread, before any other libvirt call can overwrite it. The failure is
 * thrown as an `Internal` whose `cause` is the raw {@link VirErrorDetails};
 * `host.ts` translates it into the project's error classes.
 */
import koffi from 'koffi'
import { Internal } from '../../../proto/errors.js'
import { VirConnectListAllDomainsFlags, type VirErrorDetails } from './constants.js'

/** `virDomainInfo` */
export interface DomainInfo {
  state: number
  /** KiB */
  maxMem: number
  /** KiB */
  memory: number
  nrVirtCpu: number
  /** ns */
  cpuTime: number
}

/** `virDomainBlockJobInfo`: a disk's block job and how far it got. */
export interface BlockJobInfo {
  /** `virDomainBlockJobType` (1: pull) */
  type: number
  cur: number
  end: number
}

/** `virNodeInfo` */
export interface NodeInfo {
  model: string
  /** KiB */
  memory: number
  cpus: number
  mhz: number
  nodes: number
  sockets: number
  cores: number
  threads: number
}

// Opaque handle types: a pointer is a bigint in koffi 3; the brand keeps a
// connection pointer from being passed where a domain pointer is expected.
type ConnectPtr = bigint & { readonly __brand: 'virConnectPtr' }
type DomainPtr = bigint & { readonly __brand: 'virDomainPtr' }

const lib = koffi.load('libvirt.so.0')

koffi.pointer('virConnectPtr', koffi.opaque('virConnect'))
koffi.pointer('virDomainPtr', koffi.opaque('virDomain'))
koffi.pointer('virDomainSnapshotPtr', koffi.opaque('virDomainSnapshot'))
const virError = koffi.struct('virError', {
  code: 'int',
  domain: 'int',
  message: 'char *',
  level: 'int',
  conn: 'void *',
  dom: 'void *',
  str1: 'char *',
  str2: 'char *',
  str3: 'char *',
  int1: 'int',
  int2: 'int',
  net: 'void *',
})
koffi.struct('virDomainInfo', {
  state: 'uint8_t',
  maxMem: 'unsigned long',
  memory: 'unsigned long',
  nrVirtCpu: 'unsigned short',
  cpuTime: 'unsigned long long',
})
koffi.struct('virNodeInfo', {
  model: koffi.array('char', 32),
  memory: 'unsigned long',
  cpus: 'unsigned int',
  mhz: 'unsigned int',
  nodes: 'unsigned int',
  sockets: 'unsigned int',
  cores: 'unsigned int',
  threads: 'unsigned int',
})
koffi.struct('virDomainBlockJobInfo', {
  type: 'int',
  bandwidth: 'unsigned long',
  cur: 'unsigned long long',
  end: 'unsigned long long',
})
const virNodeMemoryStats = koffi.struct('virNodeMemoryStats', {
  field: koffi.array('char', 80),
  value: 'unsigned long long',
})
const virErrorFunc = koffi.proto('void virErrorFunc(void *userData, virError *error)')

// koffi functions are untyped; each wrapper below states the real types.
type Fn = (...args: any[]) => any
const c = {
  virInitialize: lib.func('int virInitialize(void)') as Fn,
  virConnSetErrorFunc: lib.func('void virConnSetErrorFunc(virConnectPtr conn, void *userData, virErrorFunc *handler)') as Fn,
  virGetLastError: lib.func('virError *virGetLastError(void)') as Fn,
  virResetLastError: lib.func('void virResetLastError(void)') as Fn,

  virConnectOpen: lib.func('virConnectPtr virConnectOpen(const char *name)') as Fn,
  virConnectClose: lib.func('int virConnectClose(virConnectPtr conn)') as Fn,
  virConnectGetType: lib.func('const char *virConnectGetType(virConnectPtr conn)') as Fn,
  virConnectGetVersion: lib.func('int virConnectGetVersion(virConnectPtr conn, _Out_ unsigned long *hvVer)') as Fn,
  virConnectGetLibVersion: lib.func('int virConnectGetLibVersion(virConnectPtr conn, _Out_ unsigned long *libVer)') as Fn,
  virConnectGetHostname: lib.func('char *! virConnectGetHostname(virConnectPtr conn)') as Fn,
  virConnectGetCapabilities: lib.func('char *! virConnectGetCapabilities(virConnectPtr conn)') as Fn,
  virConnectIsAlive: lib.func('int virConnectIsAlive(virConnectPtr conn)') as Fn,
  virNodeGetMemoryStats: lib.func(
    'int virNodeGetMemoryStats(virConnectPtr conn, int cellNum, void *params, _Inout_ int *nparams, unsigned int flags)',
  ) as Fn,
  virNodeGetInfo: lib.func('int virNodeGetInfo(virConnectPtr conn, _Out_ virNodeInfo *info)') as Fn,
  virConnectListAllDomains: lib.func(
    'int virConnectListAllDomains(virConnectPtr conn, _Out_ virDomainPtr **domains, unsigned int flags)',
  ) as Fn,
  virDomainDefineXML: lib.func('virDomainPtr virDomainDefineXML(virConnectPtr conn, const char *xml)') as Fn,
  virDomainLookupByUUIDString: lib.func(
    'virDomainPtr virDomainLookupByUUIDString(virConnectPtr conn, const char *uuid)',
  ) as Fn,
  virDomainLookupByName: lib.func('virDomainPtr virDomainLookupByName(virConnectPtr conn, const char *name)') as Fn,

  virDomainCreate: lib.func('int virDomainCreate(virDomainPtr domain)') as Fn,
  virDomainDestroy: lib.func('int virDomainDestroy(virDomainPtr domain)') as Fn,
  virDomainDestroyFlags: lib.func('int virDomainDestroyFlags(virDomainPtr domain, unsigned int flags)') as Fn,
  virDomainShutdownFlags: lib.func('int virDomainShutdownFlags(virDomainPtr domain, unsigned int flags)') as Fn,
  virDomainReboot: lib.func('int virDomainReboot(virDomainPtr domain, unsigned int flags)') as Fn,
  virDomainReset: lib.func('int virDomainReset(virDomainPtr domain, unsigned int flags)') as Fn,
  virDomainSuspend: lib.func('int virDomainSuspend(virDomainPtr domain)') as Fn,
  virDomainResume: lib.func('int virDomainResume(virDomainPtr domain)') as Fn,
  virDomainUndefineFlags: lib.func('int virDomainUndefineFlags(virDomainPtr domain, unsigned int flags)') as Fn,
  virDomainGetInfo: lib.func('int virDomainGetInfo(virDomainPtr domain, _Out_ virDomainInfo *info)') as Fn,
  virDomainGetState: lib.func(
    'int virDomainGetState(virDomainPtr domain, _Out_ int *state, _Out_ int *reason, unsigned int flags)',
  ) as Fn,
  virDomainGetXMLDesc: lib.func('char *! virDomainGetXMLDesc(virDomainPtr domain, unsigned int flags)') as Fn,
  virDomainGetUUIDString: lib.func('int virDomainGetUUIDString(virDomainPtr domain, _Out_ void *buf)') as Fn,
  virDomainGetName: lib.func('const char *virDomainGetName(virDomainPtr domain)') as Fn,
  virDomainIsActive: lib.func('int virDomainIsActive(virDomainPtr domain)') as Fn,
  virDomainFree: lib.func('int virDomainFree(virDomainPtr domain)') as Fn,

  // Devices of a defined domain (volumes attached and detached).
  virDomainAttachDeviceFlags: lib.func('int virDomainAttachDeviceFlags(virDomainPtr domain, const char *xml, unsigned int flags)') as Fn,
  virDomainDetachDeviceFlags: lib.func('int virDomainDetachDeviceFlags(virDomainPtr domain, const char *xml, unsigned int flags)') as Fn,
  virDomainBlockResize: lib.func('int virDomainBlockResize(virDomainPtr domain, const char *disk, unsigned long long size, unsigned int flags)') as Fn,
  // libvirt-qemu.so.0 (Debian `libvirt0`): a monitor command, for what libvirt 9.0 has no API for.
  virDomainQemuMonitorCommand: koffi.load('libvirt-qemu.so.0').func(
    'int virDomainQemuMonitorCommand(virDomainPtr domain, const char *cmd, _Out_ void **result, unsigned int flags)',
  ) as Fn,
  virDomainSnapshotCreateXML: lib.func('virDomainSnapshotPtr virDomainSnapshotCreateXML(virDomainPtr domain, const char *xmlDesc, unsigned int flags)') as Fn,
  virDomainSnapshotFree: lib.func('int virDomainSnapshotFree(virDomainSnapshotPtr snapshot)') as Fn,
  virDomainBlockPull: lib.func('int virDomainBlockPull(virDomainPtr domain, const char *disk, unsigned long bandwidth, unsigned int flags)') as Fn,
  virDomainGetBlockJobInfo: lib.func('int virDomainGetBlockJobInfo(virDomainPtr domain, const char *disk, _Out_ virDomainBlockJobInfo *info, unsigned int flags)') as Fn,
}

/** Reads this thread's libvirt error right now and wraps it. */
function lastError(call: string): Internal {
  const ptr = c.virGetLastError() as bigint | null
  const raw = ptr ? (koffi.decode(ptr, virError) as { code: number; domain: number; level: number; message: string | null }) : null
  const details: VirErrorDetails = {
    code: raw?.code ?? 1,
    domain: raw?.domain ?? 0,
    level: raw?.level ?? 2,
    message: raw?.message ?? `${call} failed without a libvirt error`,
    call,
  }
  c.virResetLastError()
  return new Internal(`${call}: ${details.message}`, { cause: details })
}

/** Checks an `int` status return (-1 = failure). */
function check(call: string, status: number): number {
  if (status < 0) throw lastError(call)
  return status
}

/** Checks a pointer return (NULL = failure). */
function checkPtr<T extends bigint>(call: string, ptr: bigint | null): T {
  if (!ptr) throw lastError(call)
  return ptr as T
}

let initialized = false
// One per thread, kept referenced for the life of the thread.
let silentErrorHandler: bigint | undefined

/** `virInitialize()` once per thread. */
export function initialize(): void {
  if (initialized) return
  check('virInitialize', c.virInitialize() as number)
  silentErrorHandler = koffi.register(() => {}, koffi.pointer(virErrorFunc))
  initialized = true
}

/** A connection (`virConnectPtr`). */
export class Connect {
  private constructor(private ptr: ConnectPtr | null) {}

  /** `virConnectOpen` */
  static open(uri: string): Connect {
    initialize()
    const ptr = checkPtr<ConnectPtr>('virConnectOpen', c.virConnectOpen(uri) as bigint | null)
    // libvirt prints every error to stderr unless a handler is set; errors are
    // read and thrown instead. The handler is set on this connection, not
    // process-wide (virSetErrorFunc): another thread's handler would outlive
    // its thread and be called after that thread is gone.
    c.virConnSetErrorFunc(ptr, null, silentErrorHandler)
    return new Connect(ptr)
  }

  private get handle(): ConnectPtr {
    if (this.ptr === null) throw new Internal('libvirt connection is closed')
    return this.ptr
  }

  /** `virConnectClose` */
  close(): void {
    if (this.ptr === null) return
    const ptr = this.ptr
    this.ptr = null
    check('virConnectClose', c.virConnectClose(ptr) as number)
  }

  /** `virConnectIsAlive` */
  isAlive(): boolean {
    return check('virConnectIsAlive', c.virConnectIsAlive(this.handle) as number) === 1
  }

  /** `virConnectGetType`, e.g. `QEMU` */
  getType(): string {
    const type = c.virConnectGetType(this.handle) as string | null
    if (type === null) throw lastError('virConnectGetType')
    return type
  }

  /** `virConnectGetVersion`: hypervisor version number. */
  getVersion(): number {
    const out = [0]
    check('virConnectGetVersion', c.virConnectGetVersion(this.handle, out) as number)
    return Number(out[0])
  }

  /** `virConnectGetLibVersion`: libvirtd's version number. */
  getLibVersion(): number {
    const out = [0]
    check('virConnectGetLibVersion', c.virConnectGetLibVersion(this.handle, out) as number)
    return Number(out[0])
  }

  /** `virConnectGetHostname` */
  getHostname(): string {
    const name = c.virConnectGetHostname(this.handle) as string | null
    if (name === null) throw lastError('virConnectGetHostname')
    return name
  }

  /** `virConnectGetCapabilities`: the capabilities XML. */
  getCapabilities(): string {
    const xml = c.virConnectGetCapabilities(this.handle) as string | null
    if (xml === null) throw lastError('virConnectGetCapabilities')
    return xml
  }

  /** `virNodeGetInfo` */
  getNodeInfo(): NodeInfo {
    const info: Record<string, unknown> = {}
    check('virNodeGetInfo', c.virNodeGetInfo(this.handle, info) as number)
    return {
      model: String(info.model),
      memory: Number(info.memory),
      cpus: Number(info.cpus),
      mhz: Number(info.mhz),
      nodes: Number(info.nodes),
      sockets: Number(info.sockets),
      cores: Number(info.cores),
      threads: Number(info.threads),
    }
  }

  /** `virNodeGetMemoryStats` for all cells: `{ total, free, buffers, cached }` in KiB. */
  getMemoryStats(): Record<string, number> {
    const ALL_CELLS = -1
    const count = [0]
    check('virNodeGetMemoryStats', c.virNodeGetMemoryStats(this.handle, ALL_CELLS, null, count, 0) as number)
    const n = Number(count[0])
    if (n <= 0) return {}
    const buffer = Buffer.alloc(n * koffi.sizeof(virNodeMemoryStats))
    check('virNodeGetMemoryStats', c.virNodeGetMemoryStats(this.handle, ALL_CELLS, buffer, count, 0) as number)
    const stats = koffi.decode(buffer, virNodeMemoryStats, Number(count[0])) as { field: string; value: number | bigint }[]
    return Object.fromEntries(stats.map((stat) => [stat.field, Number(stat.value)]))
  }

  /** `virConnectListAllDomains`. The caller frees every returned domain. */
  listAllDomains(flags: number = VirConnectListAllDomainsFlags.ALL): Domain[] {
    const out: (bigint | null)[] = [null]
    const count = check('virConnectListAllDomains', c.virConnectListAllDomains(this.handle, out, flags) as number)
    const array = out[0]
    if (!array) return []
    try {
      const ptrs = count > 0 ? (koffi.decode(array, 'virDomainPtr', count) as bigint[]) : []
      return ptrs.map((ptr) => new Domain(ptr as DomainPtr))
    } finally {
      koffi.free(array)
    }
  }

  /** `virDomainDefineXML`: defines (or redefines) a persistent domain. */
  domainDefineXML(xml: string): Domain {
    return new Domain(checkPtr<DomainPtr>('virDomainDefineXML', c.virDomainDefineXML(this.handle, xml) as bigint | null))
  }

  /** `virDomainLookupByUUIDString` */
  lookupDomainByUUIDString(uuid: string): Domain {
    return new Domain(
      checkPtr<DomainPtr>('virDomainLookupByUUIDString', c.virDomainLookupByUUIDString(this.handle, uuid) as bigint | null),
    )
  }

  /** `virDomainLookupByName` */
  lookupDomainByName(name: string): Domain {
    return new Domain(checkPtr<DomainPtr>('virDomainLookupByName', c.virDomainLookupByName(this.handle, name) as bigint | null))
  }
}

/** A domain reference (`virDomainPtr`); `free()` it when done. */
export class Domain {
  constructor(private ptr: DomainPtr | null) {}

  private get handle(): DomainPtr {
    if (this.ptr === null) throw new Internal('libvirt domain handle already freed')
    return this.ptr
  }

  /** `virDomainFree` */
  free(): void {
    if (this.ptr === null) return
    const ptr = this.ptr
    this.ptr = null
    check('virDomainFree', c.virDomainFree(ptr) as number)
  }

  /** `virDomainCreate`: starts a defined domain. */
  create(): void {
    check('virDomainCreate', c.virDomainCreate(this.handle) as number)
  }

  /** `virDomainDestroy`: hard power off. */
  destroy(): void {
    check('virDomainDestroy', c.virDomainDestroy(this.handle) as number)
  }

  /** `virDomainDestroyFlags` */
  destroyFlags(flags: number): void {
    check('virDomainDestroyFlags', c.virDomainDestroyFlags(this.handle, flags) as number)
  }

  /** `virDomainShutdownFlags`: asks the guest to shut down. */
  shutdownFlags(flags: number): void {
    check('virDomainShutdownFlags', c.virDomainShutdownFlags(this.handle, flags) as number)
  }

  /** `virDomainReboot`: asks the guest to reboot. */
  reboot(flags: number): void {
    check('virDomainReboot', c.virDomainReboot(this.handle, flags) as number)
  }

  /** `virDomainReset`: hardware reset, the QEMU process stays. */
  reset(): void {
    check('virDomainReset', c.virDomainReset(this.handle, 0) as number)
  }

  /** `virDomainSuspend`: stops the vCPUs (the QEMU process and its memory stay). */
  suspend(): void {
    check('virDomainSuspend', c.virDomainSuspend(this.handle) as number)
  }

  /** `virDomainResume`: lets a suspended domain run again. */
  resume(): void {
    check('virDomainResume', c.virDomainResume(this.handle) as number)
  }

  /** `virDomainUndefineFlags` */
  undefineFlags(flags: number): void {
    check('virDomainUndefineFlags', c.virDomainUndefineFlags(this.handle, flags) as number)
  }

  /** `virDomainGetInfo` */
  getInfo(): DomainInfo {
    const info: Record<string, unknown> = {}
    check('virDomainGetInfo', c.virDomainGetInfo(this.handle, info) as number)
    return {
      state: Number(info.state),
      maxMem: Number(info.maxMem),
      memory: Number(info.memory),
      nrVirtCpu: Number(info.nrVirtCpu),
      cpuTime: Number(info.cpuTime),
    }
  }

  /** `virDomainGetState`: `[state, reason]` */
  getState(): [number, number] {
    const state = [0]
    const reason = [0]
    check('virDomainGetState', c.virDomainGetState(this.handle, state, reason, 0) as number)
    return [Number(state[0]), Number(reason[0])]
  }

  /** `virDomainGetXMLDesc` */
  getXMLDesc(flags = 0): string {
    const xml = c.virDomainGetXMLDesc(this.handle, flags) as string | null
    if (xml === null) throw lastError('virDomainGetXMLDesc')
    return xml
  }

  /** `virDomainGetUUIDString` */
  getUUIDString(): string {
    const buf = Buffer.alloc(37)
    check('virDomainGetUUIDString', c.virDomainGetUUIDString(this.handle, buf) as number)
    return buf.toString('latin1', 0, 36)
  }

  /** `virDomainGetName` */
  getName(): string {
    const name = c.virDomainGetName(this.handle) as string | null
    if (name === null) throw lastError('virDomainGetName')
    return name
  }

  /** `virDomainIsActive` */
  isActive(): boolean {
    return check('virDomainIsActive', c.virDomainIsActive(this.handle) as number) === 1
  }

  /** `virDomainAttachDeviceFlags`: adds a device (`flags`: live, config or both). */
  attachDeviceFlags(xml: string, flags: number): void {
    check('virDomainAttachDeviceFlags', c.virDomainAttachDeviceFlags(this.handle, xml, flags) as number)
  }

  /** `virDomainDetachDeviceFlags`: asks for a device's removal (live removal completes when the guest lets go). */
  detachDeviceFlags(xml: string, flags: number): void {
    check('virDomainDetachDeviceFlags', c.virDomainDetachDeviceFlags(this.handle, xml, flags) as number)
  }

  /** `virDomainBlockResize`: tells QEMU a disk's new size. */
  blockResize(disk: string, size: number, flags: number): void {
    check('virDomainBlockResize', c.virDomainBlockResize(this.handle, disk, size, flags) as number)
  }

  /** `virDomainQemuMonitorCommand` (libvirt-qemu; flags 1: HMP): QEMU's answer. libvirt marks the domain tainted (custom-monitor). */
  qemuMonitorCommand(cmd: string, flags: number): string {
    const out: (bigint | null)[] = [null]
    check('virDomainQemuMonitorCommand', c.virDomainQemuMonitorCommand(this.handle, cmd, out, flags) as number)
    const answer = out[0]
    if (!answer) return ''
    try {
      return koffi.decode(answer, 'char', -1) as string
    } finally {
      koffi.free(answer)
    }
  }

  /** `virDomainSnapshotCreateXML` (the snapshot handle is freed at once: Strato keeps no libvirt snapshot objects). */
  snapshotCreateXML(xml: string, flags: number): void {
    const snapshot = c.virDomainSnapshotCreateXML(this.handle, xml, flags) as unknown
    if (snapshot === null) throw lastError('virDomainSnapshotCreateXML')
    c.virDomainSnapshotFree(snapshot)
  }

  /** `virDomainBlockPull`: starts a block job copying the disk's whole backing chain into its active file (which then has no backing file). */
  blockPull(disk: string, flags: number): void {
    check('virDomainBlockPull', c.virDomainBlockPull(this.handle, disk, 0, flags) as number)
  }

  /** `virDomainGetBlockJobInfo`: the disk's block job, or null when it has none (finished, or never started). */
  getBlockJobInfo(disk: string): BlockJobInfo | null {
    const info: Record<string, unknown> = {}
    if (check('virDomainGetBlockJobInfo', c.virDomainGetBlockJobInfo(this.handle, disk, info, 0) as number) === 0) return null
    return { type: Number(info.type), cur: Number(info.cur), end: Number(info.end) }
  }
}

/**
 * The libvirt thread. It owns the one libvirt connection, makes every FFI call
 * synchronously (so a slow `virDomainCreate` blocks this thread, not the
 * agent's event loop) and reads libvirt's thread-local error right after the
 * failing call (in `ffi.ts`). The main thread talks to it through `host.ts`
 * with a small request/response protocol over the worker's message port.
 *
 * Operations address domains by uuid: each one looks the domain up, acts and
 * frees the handle, so no native handle outlives a call.
 */
import { parentPort } from 'node:worker_threads'
import { Connect, Domain, type BlockJobInfo } from './ffi.js'
import { VirDomainXMLFlags, VirErrorCode, isVirErrorDetails, type VirErrorDetails } from './constants.js'

/** A domain as the worker reports it. */
export interface DomainRecord {
  uuid: string
  name: string
  /** `virDomainState` */
  state: number
  /** `virDomainState` reason */
  reason: number
  maxMemKiB: number
  vcpus: number
  cpuTimeNs: number
}

export interface HostRecord {
  hostname: string
  type: string
  version: number
  libVersion: number
  capabilitiesXml: string
  node: { model: string; memoryKiB: number; cpus: number; mhz: number }
}

export interface WorkerRequest {
  id: number
  op: keyof typeof ops
  args: unknown[]
}

export type WorkerResponse =
  | { id: number; ok: true; value: unknown }
  | { id: number; ok: false; message: string; virError?: VirErrorDetails; connectionLost: boolean }

let connection: Connect | null = null

function conn(): Connect {
  if (connection === null) throw new Error('libvirt connection is not open')
  return connection
}

/** After a failure: is there a connection and is it dead (libvirtd restarted, socket closed)? */
function connectionLost(): boolean {
  if (connection === null) return false
  try {
    return !connection.isAlive()
  } catch {
    return true
  }
}

function record(domain: Domain): DomainRecord {
  const info = domain.getInfo()
  const [state, reason] = domain.getState()
  return {
    uuid: domain.getUUIDString(),
    name: domain.getName(),
    state,
    reason,
    maxMemKiB: info.maxMem,
    vcpus: info.nrVirtCpu,
    cpuTimeNs: info.cpuTime,
  }
}

function withDomain<T>(uuid: string, action: (domain: Domain) => T): T {
  const domain = conn().lookupDomainByUUIDString(uuid)
  try {
    return action(domain)
  } finally {
    domain.free()
  }
}

function isNoDomain(error: unknown): boolean {
  const cause = error instanceof Error ? error.cause : undefined
  return isVirErrorDetails(cause) && cause.code === VirErrorCode.NO_DOMAIN
}

const ops = {
  open(uri: string): void {
    if (connection !== null) return
    connection = Connect.open(uri)
  },
  close(): void {
    const open = connection
    connection = null
    open?.close()
  },
  host(): HostRecord {
    const c = conn()
    const node = c.getNodeInfo()
    // virNodeGetInfo sums NUMA-cell memory from sysfs, which containers can
    // misreport (it varied between calls here); the memory stats total is
    // /proc/meminfo's MemTotal.
    const memoryKiB = c.getMemoryStats().total ?? node.memory
    return {
      hostname: c.getHostname(),
      type: c.getType(),
      version: c.getVersion(),
      libVersion: c.getLibVersion(),
      capabilitiesXml: c.getCapabilities(),
      node: { model: node.model, memoryKiB, cpus: node.cpus, mhz: node.mhz },
    }
  },
  listDomains(): DomainRecord[] {
    const records: DomainRecord[] = []
    let failure: unknown
    for (const domain of conn().listAllDomains()) {
      try {
        records.push(record(domain))
      } catch (error) {
        // A domain undefined between listing and reading is simply gone.
        if (!isNoDomain(error)) failure ??= error
      } finally {
        domain.free()
      }
    }
    if (failure !== undefined) throw failure
    return records
  },
  define(xml: string): DomainRecord {
    const domain = conn().domainDefineXML(xml)
    try {
      return record(domain)
    } finally {
      domain.free()
    }
  },
  lookupByUUID(uuid: string): DomainRecord {
    return withDomain(uuid, record)
  },
  lookupByName(name: string): DomainRecord {
    const domain = conn().lookupDomainByName(name)
    try {
      return record(domain)
    } finally {
      domain.free()
    }
  },
  create(uuid: string): void {
    withDomain(uuid, (d) => d.create())
  },
  destroy(uuid: string): void {
    withDomain(uuid, (d) => d.destroy())
  },
  shutdown(uuid: string, flags: number): void {
    withDomain(uuid, (d) => d.shutdownFlags(flags))
  },
  reboot(uuid: string, flags: number): void {
    withDomain(uuid, (d) => d.reboot(flags))
  },
  reset(uuid: string): void {
    withDomain(uuid, (d) => d.reset())
  },
  suspend(uuid: string): void {
    withDomain(uuid, (d) => d.suspend())
  },
  resume(uuid: string): void {
    withDomain(uuid, (d) => d.resume())
  },
  undefine(uuid: string, flags: number): void {
    withDomain(uuid, (d) => d.undefineFlags(flags))
  },
  xml(uuid: string, inactive: boolean): string {
    return withDomain(uuid, (d) => d.getXMLDesc(inactive ? VirDomainXMLFlags.INACTIVE : 0))
  },
  isActive(uuid: string): boolean {
    return withDomain(uuid, (d) => d.isActive())
  },
  attachDevice(uuid: string, xml: string, flags: number): void {
    withDomain(uuid, (d) => d.attachDeviceFlags(xml, flags))
  },
  detachDevice(uuid: string, xml: string, flags: number): void {
    withDomain(uuid, (d) => d.detachDeviceFlags(xml, flags))
  },
  blockResize(uuid: string, disk: string, bytes: number, flags: number): void {
    withDomain(uuid, (d) => d.blockResize(disk, bytes, flags))
  },
  qemuMonitorCommand(uuid: string, cmd: string, flags: number): string {
    return withDomain(uuid, (d) => d.qemuMonitorCommand(cmd, flags))
  },
  snapshotCreate(uuid: string, xml: string, flags: number): void {
    withDomain(uuid, (d) => d.snapshotCreateXML(xml, flags))
  },
  blockPull(uuid: string, disk: string, flags: number): void {
    withDomain(uuid, (d) => d.blockPull(disk, flags))
  },
  blockJobInfo(uuid: string, disk: string): BlockJobInfo | null {
    return withDomain(uuid, (d) => d.getBlockJobInfo(disk))
  },
}

export type WorkerOps = typeof ops

const port = parentPort
if (port !== null) {
  port.on('message', (request: WorkerRequest) => {
    let response: WorkerResponse
    try {
      const op = ops[request.op] as (...args: unknown[]) => unknown
      if (typeof op !== 'function') throw new Error(`unknown libvirt worker op ${String(request.op)}`)
      response = { id: request.id, ok: true, value: op(...request.args) }
    } catch (error) {
      const cause = (error as Error).cause
      response = {
        id: request.id,
        ok: false,
        message: error instanceof Error ? error.message : String(error),
        ...(isVirErrorDetails(cause) ? { virError: cause } : {}),
        connectionLost: connectionLost(),
      }
    }
    port.postMessage(response)
  })
}

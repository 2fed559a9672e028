/**
 * The libvirt host (after nova `virt/libvirt/host.py`): the connection, domain
 * lookups, host capabilities and the translation of libvirt errors into the
 * project's error classes.
 *
 * The connection lives in one worker thread (`worker.ts`) that makes the
 * blocking FFI calls; this class is its main-thread face. Calls are queued
 * and run one at a time on that thread, in order.
 */
import { Worker } from 'node:worker_threads'
import { constants as fsConstants } from 'node:fs'
import { access, stat } from 'node:fs/promises'
import {
  AlreadyExists,
  FailedPrecondition,
  Internal,
  InvalidArgument,
  NotFound,
  ResourceExhausted,
  StratoError,
  Unavailable,
} from '../../../proto/errors.js'
import type { Accelerator } from '../driver.js'
import { Guest } from './guest.js'
import { child, childrenNamed, parseXml, path } from './xml.js'
import type { DomainRecord, HostRecord, WorkerOps, WorkerRequest, WorkerResponse } from './worker.js'
import { VirErrorCode, type VirErrorDetails } from './constants.js'

type ErrorClass = new (message: string, options?: { cause?: unknown }) => StratoError

const ERROR_CLASSES: Partial<Record<number, ErrorClass>> = {
  [VirErrorCode.NO_DOMAIN]: NotFound,
  [VirErrorCode.DOM_EXIST]: AlreadyExists,
  [VirErrorCode.INVALID_ARG]: InvalidArgument,
  [VirErrorCode.XML_ERROR]: InvalidArgument,
  [VirErrorCode.XML_DETAIL]: InvalidArgument,
  [VirErrorCode.XML_INVALID_SCHEMA]: InvalidArgument,
  [VirErrorCode.INVALID_MAC]: InvalidArgument,
  [VirErrorCode.OPERATION_INVALID]: FailedPrecondition,
  [VirErrorCode.CONFIG_UNSUPPORTED]: FailedPrecondition,
  [VirErrorCode.NO_SUPPORT]: FailedPrecondition,
  [VirErrorCode.OPERATION_UNSUPPORTED]: FailedPrecondition,
  [VirErrorCode.ARGUMENT_UNSUPPORTED]: FailedPrecondition,
  [VirErrorCode.NO_MEMORY]: ResourceExhausted,
  [VirErrorCode.NO_CONNECT]: Unavailable,
  [VirErrorCode.INVALID_CONN]: Unavailable,
  [VirErrorCode.RPC]: Unavailable,
  [VirErrorCode.AUTH_FAILED]: Unavailable,
  [VirErrorCode.OPERATION_TIMEOUT]: Unavailable,
  [VirErrorCode.AGENT_UNRESPONSIVE]: Unavailable,
  [VirErrorCode.RESOURCE_BUSY]: Unavailable,
}

/**
 * Maps a libvirt error to a Strato error. `what` says what was being done
 * (e.g. `start guest <uuid>`); libvirt's own message follows it.
 */
export function translateLibvirtError(error: VirErrorDetails, what: string): StratoError {
  const Class = ERROR_CLASSES[error.code] ?? Internal
  return new Class(`${what}: ${error.message}`, { cause: error })
}

/** The host as libvirt describes it. */
export interface HostInfo {
  hostname: string
  /** `QEMU` */
  hypervisorType: string
  /** libvirt's encoding: major * 1e6 + minor * 1e3 + micro */
  hypervisorVersion: number
  libvirtVersion: number
  /** Host CPU model from the capabilities XML, e.g. `EPYC-Rome`. */
  cpuModel: string
  arch: string
  cpus: number
  memoryMiB: number
  /** Domain types the capabilities offer for the host arch, e.g. `['qemu', 'kvm']`. */
  domainTypes: string[]
}

export interface HostOptions {
  /** @default 'qemu:///system' */
  uri?: string
  /**
   * A libvirt call taking longer than this fails with Unavailable, and the
   * libvirt thread is replaced (calls run one at a time, so a hung call would
   * block all others). @default 120000
   */
  callTimeoutMs?: number
}

/** Is `/dev/kvm` there and usable by QEMU (which runs as a non-root user, through group or other permissions)? */
export async function kvmDeviceUsable(device = '/dev/kvm'): Promise<boolean> {
  try {
    const info = await stat(device)
    if (!info.isCharacterDevice()) return false
    await access(device, fsConstants.R_OK | fsConstants.W_OK)
    return (info.mode & 0o060) === 0o060 || (info.mode & 0o006) === 0o006
  } catch {
    return false
  }
}

/** Picks the accelerator: KVM when libvirt offers it and the device is usable, else TCG. */
export function chooseAccelerator(info: HostInfo, kvmUsable: boolean): Accelerator {
  return kvmUsable && info.domainTypes.includes('kvm') ? 'kvm' : 'tcg'
}

function workerUrl(): URL {
  // Under tsx (tests, `node --import tsx`) the sources are .ts; compiled, .js.
  const ts = import.meta.url.endsWith('.ts')
  const entry = new URL(ts ? './worker.ts' : './worker.js', import.meta.url)
  if (!ts) return entry
  // Worker threads do not inherit tsx's loader: register it inside the worker first.
  const tsxApi = import.meta.resolve('tsx/esm/api')
  const bootstrap = `import { register } from ${JSON.stringify(tsxApi)}; register(); await import(${JSON.stringify(entry.href)});`
  return new URL(`data:text/javascript,${encodeURIComponent(bootstrap)}`)
}

type Pending = {
  resolve: (value: unknown) => void
  reject: (error: unknown) => void
  what: string
  timer: NodeJS.Timeout
}

export class Host {
  readonly uri: string
  private readonly callTimeoutMs: number
  private worker: Worker | null = null
  private readonly pending = new Map<number, Pending>()
  private nextId = 1
  /** connect() succeeded and close() was not called: a lost thread or connection is restored on demand. */
  private wanted = false
  private reopen = false
  private restoring: Promise<void> | null = null

  constructor(options: HostOptions = {}) {
    this.uri = options.uri ?? 'qemu:///system'
    this.callTimeoutMs = options.callTimeoutMs ?? 120_000
  }

  /**
   * Starts the libvirt thread and opens the connection.
   * @throws Unavailable when libvirtd cannot be reached.
   */
  async connect(): Promise<void> {
    if (this.wanted) return
    try {
      await this.startWorker()
    } catch (error) {
      await this.close()
      throw error instanceof Unavailable ? error : new Unavailable((error as Error).message, { cause: error })
    }
    this.wanted = true
  }

  /** Closes the connection and stops the thread. Idempotent. */
  async close(): Promise<void> {
    this.wanted = false
    const worker = this.worker
    if (worker === null) return
    try {
      await this.send('close', 'close the libvirt connection', [])
    } catch {
      // Closing a broken connection: nothing more to do.
    }
    this.worker = null
    await worker.terminate()
  }

  private async startWorker(): Promise<void> {
    const worker = new Worker(workerUrl())
    worker.unref()
    worker.on('message', (response: WorkerResponse) => this.settle(response))
    worker.on('error', (error) => this.abandon(worker, new Unavailable(`libvirt thread failed: ${error.message}`, { cause: error })))
    worker.on('exit', (code) => this.abandon(worker, new Unavailable(`libvirt thread exited with code ${code}`)))
    this.worker = worker
    await this.open()
  }

  private async open(): Promise<void> {
    try {
      await this.send('open', `connect to ${this.uri}`, [this.uri])
      this.reopen = false
    } catch (error) {
      this.reopen = true
      throw error instanceof Unavailable ? error : new Unavailable((error as Error).message, { cause: error })
    }
  }

  /** After a lost connection or a dead or stuck thread: reconnect, once, whoever asks first. */
  private restore(): Promise<void> {
    this.restoring ??= (async () => {
      try {
        if (this.worker === null) {
          await this.startWorker()
        } else {
          await this.send('close', 'close a lost libvirt connection', []).catch(() => undefined)
          await this.open()
        }
      } finally {
        this.restoring = null
      }
    })()
    return this.restoring
  }

  /** Runs one worker operation; libvirt errors come back translated. */
  async call<K extends keyof WorkerOps>(op: K, what: string, ...args: Parameters<WorkerOps[K]>): Promise<ReturnType<WorkerOps[K]>> {
    if (this.wanted && (this.reopen || this.worker === null || this.restoring !== null)) await this.restore()
    return (await this.send(op, what, args)) as ReturnType<WorkerOps[K]>
  }

  private send(op: keyof WorkerOps, what: string, args: unknown[]): Promise<unknown> {
    const worker = this.worker
    if (worker === null) return Promise.reject(new Unavailable(`libvirt is not connected (${what})`))
    const id = this.nextId++
    return new Promise((resolve, reject) => {
      // A call that never returns (libvirtd hung) would block every later call
      // on the thread: give up on the thread and start a fresh one next time.
      const timer = setTimeout(() => {
        this.abandon(worker, new Unavailable(`${what}: libvirt did not answer within ${this.callTimeoutMs} ms`))
        void worker.terminate()
      }, this.callTimeoutMs)
      timer.unref()
      this.pending.set(id, { resolve, reject, what, timer })
      // Keep the process alive while a call is in flight, not while idle.
      if (this.pending.size === 1) worker.ref()
      worker.postMessage({ id, op, args } satisfies WorkerRequest)
    })
  }

  private settle(response: WorkerResponse): void {
    const pending = this.pending.get(response.id)
    if (pending === undefined) return
    clearTimeout(pending.timer)
    this.pending.delete(response.id)
    if (this.pending.size === 0) this.worker?.unref()
    if (response.ok) {
      pending.resolve(response.value)
      return
    }
    if (response.connectionLost) {
      // libvirtd went away (restart, crash): reconnect before the next call.
      this.reopen = true
      pending.reject(new Unavailable(`${pending.what}: lost the connection to libvirt: ${response.message}`, { cause: response.virError }))
      return
    }
    if (response.virError === undefined) {
      pending.reject(new Internal(`${pending.what}: ${response.message}`))
      return
    }
    pending.reject(translateLibvirtError(response.virError, pending.what))
  }

  private abandon(worker: Worker, error: StratoError): void {
    if (this.worker !== worker) return
    this.worker = null
    for (const pending of this.pending.values()) {
      clearTimeout(pending.timer)
      pending.reject(error)
    }
    this.pending.clear()
  }

  /** Host facts from libvirt: node info, version, capabilities XML. */
  async getInfo(): Promise<HostInfo> {
    const record: HostRecord = await this.call('host', 'read host information')
    return parseHostRecord(record)
  }

  /** Every domain libvirt knows, running or not. */
  listDomains(): Promise<DomainRecord[]> {
    return this.call('listDomains', 'list domains')
  }

  /** Defines (persists) a domain from XML. */
  async defineGuest(xml: string): Promise<Guest> {
    const record = await this.call('define', 'define domain', xml)
    return new Guest(this, record.uuid, record.name)
  }

  /** @throws NotFound when no domain has this uuid. */
  async lookupGuest(uuid: string): Promise<Guest> {
    const record = await this.call('lookupByUUID', `look up guest ${uuid}`, uuid)
    return new Guest(this, record.uuid, record.name)
  }

  /** The guest with this uuid, or undefined. */
  async findGuest(uuid: string): Promise<Guest | undefined> {
    return this.lookupGuest(uuid).catch((error: unknown) => {
      if (error instanceof NotFound) return undefined
      throw error
    })
  }

  /** The guest with this domain name, or undefined. */
  async findGuestByName(name: string): Promise<Guest | undefined> {
    try {
      const record = await this.call('lookupByName', `look up guest named ${name}`, name)
      return new Guest(this, record.uuid, record.name)
    } catch (error) {
      if (error instanceof NotFound) return undefined
      throw error
    }
  }
}

/** Turns the worker's raw host record into {@link HostInfo}. Exported for tests. */
export function parseHostRecord(record: HostRecord): HostInfo {
  const caps = parseXml(record.capabilitiesXml)
  const hostCpu = path(caps, 'host', 'cpu')
  const arch = child(hostCpu, 'arch')?.text || record.node.model
  const domainTypes = new Set<string>()
  for (const guest of childrenNamed(caps, 'guest')) {
    if (child(guest, 'os_type')?.text !== 'hvm') continue
    const guestArch = child(guest, 'arch')
    if (guestArch?.attrs.name !== arch) continue
    for (const domain of childrenNamed(guestArch, 'domain')) if (domain.attrs.type) domainTypes.add(domain.attrs.type)
  }
  return {
    hostname: record.hostname,
    hypervisorType: record.type,
    hypervisorVersion: record.version,
    libvirtVersion: record.libVersion,
    cpuModel: child(hostCpu, 'model')?.text || record.node.model,
    arch,
    cpus: record.node.cpus,
    memoryMiB: Math.floor(record.node.memoryKiB / 1024),
    domainTypes: [...domainTypes].sort(),
  }
}

/**
 * Network exports of volume files: one `qemu-storage-daemon` per exported
 * volume (only one process may write a qcow2 file), recorded with the hosts
 * whose attachments use it, serving the volume's guest data over NBD on `address:port`, TLS
 * only, with x509 certificates both ways (`verify-peer=on`): a client with no
 * certificate of the cloud's CA is refused before it can name an export, so
 * a local user who can reach the port reads and writes nothing (issue 15's
 * rule). Nor may another host of the cloud: the export's `tls-authz`
 * (an `authz-list` object) accepts only the client certificates whose
 * distinguished name is {@link clientIdentity} of a host the export is for
 * (libvirt's NBD client certificate of each host, /etc/pki/qemu, names the
 * host: `CN=<host>`), kept up to date over the daemon's QMP socket as hosts
 * come and go (`qom-set`: QEMU checks it at each TLS handshake). The daemon runs detached from the agent (a restarted agent finds
 * its exports still served) and is recorded in `<stateDir>/<volume>.json`;
 * an export recorded whose daemon is gone is served again on the same
 * address and port, so the client's QEMU finds it where it was.
 *
 * The TLS directory has QEMU's layout: `ca-cert.pem`, `server-cert.pem`,
 * `server-key.pem` (the key readable by root only).
 */
import { execFile } from 'node:child_process'
import { createHash, X509Certificate } from 'node:crypto'
import { connect, createServer } from 'node:net'
import { mkdir, readdir, readFile, rm, stat } from 'node:fs/promises'
import path from 'node:path'
import { promisify } from 'node:util'
import { FailedPrecondition, Internal, Unavailable } from '../../proto/errors.js'
import { writePrivateFile } from '../../proto/private-file.js'
import { Pending, pollUntil, type PollOptions } from '../poll.js'
import type { ExportRef } from './driver.js'

const run = promisify(execFile)

export interface NbdExportsOptions {
  /** Where export records live. */
  stateDir: string
  /** The address exports listen on and clients dial (the volume host's storage address). */
  address: string
  /** The x509 directory of the NBD server (ca-cert.pem, server-cert.pem, server-key.pem). */
  tlsDir: string
  /** @default 'qemu-storage-daemon' */
  command?: string
}

/** The export of one volume, as recorded: where it listens, and the hosts it is for. */
export interface NbdExport {
  volumeId: string
  /** The hosts that attach the volume through it (a multiattach volume may have several). */
  hosts: string[]
  address: string
  port: number
  name: string
  pid: number
  /** The SHA-256 fingerprint of the server certificate its daemon loaded (absent: an older agent's). */
  tlsCert?: string
}

const TLS_FILES = ['ca-cert.pem', 'server-cert.pem', 'server-key.pem']

/** The longest path of a unix socket (sun_path less its NUL). */
const MAX_SOCKET_PATH = 107

/** The job id of a pull in an export's daemon (one at a time: the volume backend works on one thing at a time). */
const PULL_JOB = 'pull0'
/**
 * The job and target node of a full copy of a served volume (blockdev-backup) an agent before
 * copy-on-write snapshots ran in the export's daemon; one a crash left there is cleared on adoption.
 */
const [COPY_JOB, COPY_NODE] = ['copy0', 'copy0-target']

/** How long a pull may take (it copies a volume's data). */
const PULL_TIMEOUT_MS = 30 * 60_000
/** How long a copy a crash left may take to stop once cancelled. */
const SETTLE_TIMEOUT_MS = 60_000
/** How often a job of the daemon is looked at while it runs. */
const JOB_POLL_MS = 250

/**
 * The distinguished name a host's NBD client certificate has (QEMU compares
 * the x509 DN as GnuTLS prints it): its common name is the host's name.
 */
export function clientIdentity(host: string): string {
  return `CN=${host}`
}

/** The `authz-list` rules of an export for `hosts`: each one's certificate, nothing else. */
function authzRules(hosts: string[]): Array<{ match: string; policy: 'allow'; format: 'exact' }> {
  return hosts.map((h) => ({ match: clientIdentity(h), policy: 'allow', format: 'exact' }))
}

export class NbdExports {
  constructor(private readonly o: NbdExportsOptions) {}

  private recordPath(volumeId: string): string {
    return path.join(this.o.stateDir, `${volumeId}.json`)
  }

  private pidPath(volumeId: string): string {
    return path.join(this.o.stateDir, `${volumeId}.pid`)
  }

  /** The daemon's QMP socket (root only: the state dir is 0700). */
  private qmpPath(volumeId: string): string {
    return path.join(this.o.stateDir, `${volumeId}.qmp`)
  }

  /**
   * The export of `file` (volume `volumeId`, a `format` image) for `host`:
   * the volume's one export (one daemon may write a qcow2 file; several would
   * corrupt it), served if it is not, with `host` added to those it is for.
   */
  async serve(volumeId: string, host: string, file: string, format: 'qcow2' | 'raw'): Promise<NbdExport> {
    const known = await this.read(volumeId)
    const hosts = [...new Set([...(known?.hosts ?? []), host])].sort()
    if (known && (await this.serving(known))) {
      if (hosts.length === known.hosts.length) return { ...known, hosts }
      if (await this.controllable(known)) {
        await this.authorize(known, hosts)
        this.write({ ...known, hosts })
        return { ...known, hosts }
      }
      // Started by an older agent, with no QMP socket: its hosts cannot change while it runs. It is
      // served again below with one (same file, address, port and name): its clients reconnect on their next request.
      await this.halt(known)
    }
    await this.checkTls()
    const tlsCert = await this.tlsCert()
    await mkdir(this.o.stateDir, { recursive: true, mode: 0o700 })
    const name = `volume-${volumeId}`
    // The same port again for an export that was served (its clients reconnect there); a free one otherwise.
    const port = known?.port ?? (await freePort(this.o.address))
    const pidFile = this.pidPath(volumeId)
    const qmpSocket = this.qmpPath(volumeId)
    if (qmpSocket.length > MAX_SOCKET_PATH) throw new FailedPrecondition(`cannot export volume ${volumeId}: the export's control socket ${qmpSocket} is longer than a unix socket path may be (${MAX_SOCKET_PATH}); use a shorter agent state dir`)
    await rm(pidFile, { force: true })
    await rm(qmpSocket, { force: true })
    const args = [
      '--object', `tls-creds-x509,id=tls0,dir=${this.o.tlsDir},endpoint=server,verify-peer=on`,
      // Only the certificates of the hosts the export is for (QEMU 7.2's authz-listfile cannot be created: its QAPI and QOM names differ).
      '--object', JSON.stringify({ 'qom-type': 'authz-list', id: 'authz0', policy: 'deny', rules: authzRules(hosts) }),
      '--blockdev', `driver=file,filename=${file},node-name=file0`,
      '--blockdev', `driver=${format},file=file0,node-name=vol0`,
      '--nbd-server', `addr.type=inet,addr.host=${this.o.address},addr.port=${port},tls-creds=tls0,tls-authz=authz0`,
      '--export', `type=nbd,id=export0,node-name=vol0,name=${name},writable=on`,
      '--chardev', `socket,id=qmp0,path=${qmpSocket},server=on,wait=off`, '--monitor', 'chardev=qmp0',
      '--pidfile', pidFile, '--daemonize',
    ]
    try {
      // --daemonize: the command returns once the export is listening.
      await run(this.o.command ?? 'qemu-storage-daemon', args, { timeout: 60_000 })
    } catch (err) {
      const e = err as Error & { stderr?: string }
      throw new Internal(`cannot export volume ${volumeId} for host '${host}' on ${this.o.address}:${port}: ${(e.stderr || e.message).trim()}`, { cause: err })
    }
    const pid = Number((await readFile(pidFile, 'utf8')).trim())
    const e: NbdExport = { volumeId, hosts, address: this.o.address, port, name, pid, tlsCert }
    this.write(e)
    return e
  }

  /** `host` no longer needs the volume's export; the last host gone, the export ends (its daemon stopped, its record gone). */
  async stop(volumeId: string, host?: string): Promise<void> {
    const e = await this.read(volumeId)
    if (!e) return
    const hosts = host === undefined ? [] : e.hosts.filter((h) => h !== host)
    if (hosts.length) {
      if (await this.serving(e)) await this.authorize(e, hosts)
      this.write({ ...e, hosts })
      return
    }
    await this.halt(e)
    await rm(this.recordPath(volumeId), { force: true })
    await rm(this.pidPath(volumeId), { force: true })
    await rm(this.qmpPath(volumeId), { force: true })
  }

  /**
   * Grows the served export of volume `volumeId` (its `format` image `file`)
   * to `bytes` through its daemon, the one process that has the file open:
   * the export is taken down (its clients' connections dropped), the image
   * grown (`block_resize`: QEMU rewrites the qcow2 tables itself), and the
   * export added again under the same name. An NBD client learns a size
   * only when it connects, and the export refuses a resize while it serves
   * (QEMU 7.2 unshares the permission), so clients see the new size when
   * they reconnect — a guest's QEMU on its next request. False when the
   * volume is not exported (the caller grows the file itself).
   */
  async grow(volumeId: string, bytes: number, file: string, format: 'qcow2' | 'raw'): Promise<boolean> {
    const e = await this.controlled(volumeId, file, format)
    if (!e) return false
    const socket = this.qmpPath(volumeId)
    try {
      const node = await exportNode(socket)
      await qmp(socket, [{ execute: 'block-export-del', arguments: { id: 'export0', mode: 'hard' } }])
      // The export lets go of the image when its last client is gone.
      for (let i = 0; i < 600 && (await qmp(socket, [{ execute: 'query-block-exports' }])).some((x) => x.id === 'export0'); i++) await new Promise((r) => setTimeout(r, 50))
      await qmp(socket, [{ execute: 'block_resize', arguments: { 'node-name': node, size: bytes } }]).finally(() =>
        qmp(socket, [{ execute: 'block-export-add', arguments: { type: 'nbd', id: 'export0', 'node-name': node, name: e.name, writable: true } }]))
    } catch (err) {
      throw new Internal(`cannot grow the export of volume ${volumeId} to ${bytes} bytes: its daemon (pid ${e.pid}) refused over QMP: ${(err as Error).message}`, { cause: err })
    }
    return true
  }

  /** The served export of volume `volumeId` with a QMP socket (an older agent's daemon has none: served again with one first); undefined when not served. */
  private async controlled(volumeId: string, file: string, format: 'qcow2' | 'raw'): Promise<NbdExport | undefined> {
    const e = await this.read(volumeId)
    if (!e || !(await this.serving(e))) return undefined
    if (await this.controllable(e)) return e
    await this.halt(e)
    return this.serve(volumeId, e.hosts[0]!, file, format).then(() => this.read(volumeId))
  }

  /** Whether volume `volumeId` is exported now (its daemon runs and has the file open). */
  async served(volumeId: string): Promise<boolean> {
    const e = await this.read(volumeId)
    return e !== undefined && (await this.serving(e))
  }

  /**
   * Merges the whole backing chain of the served export of volume
   * `volumeId` (its `format` image `file`) into the file through its daemon,
   * the one process that has it open: QMP `block-stream` on the export's
   * node, its clients reading and writing on (Cinder's online snapshot
   * delete, done by the export's QEMU instead of a guest's). Returns once
   * QEMU dropped the job; whether it got through is the file's header's to
   * say. False when the volume is not exported (the caller merges it itself).
   */
  async pull(volumeId: string, file: string, format: 'qcow2' | 'raw', timeoutMs = PULL_TIMEOUT_MS): Promise<boolean> {
    const e = await this.controlled(volumeId, file, format)
    if (!e) return false
    try {
      const socket = this.qmpPath(volumeId)
      await qmp(socket, [{ execute: 'block-stream', arguments: { 'job-id': PULL_JOB, device: await exportNode(socket) } }])
    } catch (err) {
      throw new Internal(`cannot merge the backing files of volume ${volumeId} into it: its export's daemon (pid ${e.pid}) refused the block-stream over QMP: ${(err as Error).message}`, { cause: err })
    }
    await this.pullEnded(e, timeoutMs)
    return true
  }

  /**
   * Moves the served export of volume `volumeId` (its `format` image `file`) onto `overlay` — an empty
   * qcow2 image whose backing file is the one the export serves, with a name of its own — through its
   * daemon, the one process that has the file open: QMP `blockdev-add` of the overlay (backing null),
   * then `blockdev-snapshot` of the export's node onto it; the export follows the node (its clients
   * read and write on, now into the overlay) and the old file, read-only from now on, keeps its name.
   * False when the volume is not exported.
   * @throws Internal when the daemon refused (the overlay node, if added, is removed again).
   */
  async snapshot(volumeId: string, file: string, format: 'qcow2' | 'raw', overlay: string): Promise<boolean> {
    const e = await this.controlled(volumeId, file, format)
    if (!e) return false
    const socket = this.qmpPath(volumeId)
    const node = layerNode(overlay)
    try {
      const top = await exportNode(socket)
      await qmp(socket, [{ execute: 'blockdev-add', arguments: { driver: 'qcow2', 'node-name': node, file: { driver: 'file', filename: overlay }, backing: null } }])
      await qmp(socket, [{ execute: 'blockdev-snapshot', arguments: { node: top, overlay: node } }]).catch(async (err: unknown) => {
        await qmp(socket, [{ execute: 'blockdev-del', arguments: { 'node-name': node } }]).catch(() => undefined)
        throw err
      })
    } catch (err) {
      throw new Internal(`cannot move the export of volume ${volumeId} onto ${path.basename(overlay)}: its daemon (pid ${e.pid}) refused over QMP: ${(err as Error).message}`, { cause: err })
    }
    return true
  }

  /**
   * After a crash around {@link snapshot}: whether the export of volume `volumeId` serves `overlay`
   * now (true) or still the file under it (false: also a daemon with no QMP socket, which no snapshot
   * moved); undefined when its daemon is gone and cannot say.
   */
  async serves(volumeId: string, overlay: string): Promise<boolean | undefined> {
    const e = await this.read(volumeId)
    if (!e || !(await this.serving(e))) return undefined
    if (!(await this.controllable(e))) return false
    return (await exportNode(this.qmpPath(volumeId))) === layerNode(overlay)
  }

  /**
   * After a crash of an older agent in the middle of a full copy of the
   * export (its snapshots copied a served volume: blockdev-backup to
   * COPY_NODE): the copy's job and target node the adopted daemon still holds
   * go — a job still running is cancelled first (its target file was that
   * agent's, gone with the crash's other work files) — so the daemon writes
   * no more to a file nothing keeps and holds no node of it.
   */
  private async settleCopy(e: NbdExport): Promise<void> {
    const socket = this.qmpPath(e.volumeId)
    const copyJob = async () => (await qmp(socket, [{ execute: 'query-jobs' }])).find((j) => j.id === COPY_JOB)
    try {
      const job = await copyJob()
      if (job && job.status !== 'concluded') {
        await qmp(socket, [{ execute: 'job-cancel', arguments: { id: COPY_JOB } }])
        await pollUntil<void>(async () => {
          const j = await copyJob()
          return j && j.status !== 'concluded' ? new Pending(`it is ${String(j.status)}`) : undefined
        }, this.jobPoll(e, `the cancel of the copy of volume ${e.volumeId} a crash left`, SETTLE_TIMEOUT_MS))
      }
      await dropCopy(socket)
    } catch (err) {
      if (!(await this.serving(e))) return // gone meanwhile: served again, with nothing left in it, on the next start or export
      if (err instanceof Unavailable) throw err
      throw new Internal(`cannot clear the copy a crash left in the export of volume ${e.volumeId}: its daemon (pid ${e.pid}) refused over QMP: ${(err as Error).message}`, { cause: err })
    }
  }

  /** After a crash in the middle of {@link pull}: waits for a pull the export's daemon still runs (QEMU goes on without the agent). */
  async settlePull(volumeId: string): Promise<void> {
    const e = await this.read(volumeId)
    if (e && (await this.serving(e)) && (await this.controllable(e))) await this.pullEnded(e, PULL_TIMEOUT_MS)
  }

  /** Waits until the export's daemon runs no pull job (QEMU dismisses a job once it concluded). */
  private async pullEnded(e: NbdExport, timeoutMs: number): Promise<void> {
    await pollUntil<void>(async () => {
      const job = (await qmp(this.qmpPath(e.volumeId), [{ execute: 'query-block-jobs' }])).find((j) => j.device === PULL_JOB)
      return job ? new Pending(`${String(job.offset)} of ${String(job.len)} bytes`) : undefined
    }, this.jobPoll(e, `the merge of the backing files of volume ${e.volumeId} into it`, timeoutMs))
  }

  /** How a job of the export's daemon is waited for (one whose wait gives up goes on there). */
  private jobPoll(e: NbdExport, what: string, deadlineMs: number): PollOptions {
    return { deadlineMs, pauseMs: JOB_POLL_MS, what, where: `its export's daemon (pid ${e.pid})` }
  }

  /** Every export recorded (served or not). */
  async list(): Promise<NbdExport[]> {
    const names = await readdir(this.o.stateDir).catch(() => [] as string[])
    const out: NbdExport[] = []
    for (const f of names) {
      if (!f.endsWith('.json')) continue
      const e = await readRecord(path.join(this.o.stateDir, f))
      if (e) out.push(e)
    }
    return out
  }

  /** The (volume, host) pairs exported. */
  async refs(): Promise<ExportRef[]> {
    return (await this.list()).flatMap((e) => e.hosts.map((host) => ({ volumeId: e.volumeId, host })))
  }

  /**
   * At the agent's start: serves again every export recorded whose daemon is
   * gone (after a restart of the host or a crash), and clears what a crash in
   * the middle of a copy left in the daemons that still serve.
   */
  async reserve(fileOf: (volumeId: string) => Promise<{ path: string; format: 'qcow2' | 'raw' } | undefined>): Promise<NbdExport[]> {
    const again: NbdExport[] = []
    for (const e of await this.list()) {
      if (await this.serving(e)) {
        // Adopted: still served, perhaps with a copy a crash of the last agent interrupted.
        if (await this.controllable(e)) await this.settleCopy(e)
        continue
      }
      const f = await fileOf(e.volumeId)
      if (!f || !e.hosts.length) {
        await this.stop(e.volumeId)
        continue
      }
      for (const host of e.hosts) await this.serve(e.volumeId, host, f.path, f.format)
      again.push((await this.read(e.volumeId))!)
    }
    return again
  }

  /**
   * Serves again, with the server certificate in the TLS directory now,
   * each export whose daemon loaded another (QEMU reads its x509 files once,
   * when it starts, and cannot swap a serving NBD server's) and that no
   * client is connected to (it would be cut off); one with a client keeps
   * the certificate it has until a later call finds it idle. Returns the
   * volumes served again.
   */
  async reloadTls(fileOf: (volumeId: string) => Promise<{ path: string; format: 'qcow2' | 'raw' } | undefined>): Promise<string[]> {
    const exports = await this.list()
    if (!exports.length) return []
    const current = await this.tlsCert()
    const again: string[] = []
    for (const e of exports) {
      if (e.tlsCert === current || !(await this.serving(e)) || (await connectedTo(e.port))) continue
      const f = await fileOf(e.volumeId)
      if (!f) continue
      await this.halt(e)
      for (const host of e.hosts) await this.serve(e.volumeId, host, f.path, f.format)
      again.push(e.volumeId)
    }
    return again
  }

  /** The fingerprint of the server certificate in the TLS directory (what a daemon started now loads). */
  private async tlsCert(): Promise<string> {
    return new X509Certificate(await readFile(path.join(this.o.tlsDir, 'server-cert.pem'))).fingerprint256
  }

  /** Whether the export's daemon runs (the pid is a qemu-storage-daemon serving that export). */
  async serving(e: NbdExport): Promise<boolean> {
    const cmdline = await readFile(`/proc/${e.pid}/cmdline`, 'utf8').catch(() => '')
    return cmdline.includes('qemu-storage-daemon') && cmdline.includes(`name=${e.name},`)
  }

  /** Whether the export's daemon has the QMP socket its hosts are changed through (older agents started none). */
  private async controllable(e: NbdExport): Promise<boolean> {
    const cmdline = await readFile(`/proc/${e.pid}/cmdline`, 'utf8').catch(() => '')
    return cmdline.includes(`path=${this.qmpPath(e.volumeId)},`)
  }

  /** Stops the export's daemon, if it runs (SIGTERM, SIGKILL after 30 s). */
  private async halt(e: NbdExport): Promise<void> {
    if (!(await this.serving(e))) return
    process.kill(e.pid, 'SIGTERM')
    for (let i = 0; i < 600 && (await this.serving(e)); i++) await new Promise((r) => setTimeout(r, 50))
    if (await this.serving(e)) process.kill(e.pid, 'SIGKILL')
  }

  /** The running export accepts the certificates of `hosts` from its next connection on. */
  private async authorize(e: NbdExport, hosts: string[]): Promise<void> {
    try {
      await qmp(this.qmpPath(e.volumeId), [{ execute: 'qom-set', arguments: { path: '/objects/authz0', property: 'rules', value: authzRules(hosts) } }])
    } catch (err) {
      throw new Internal(`cannot let hosts ${hosts.map((h) => `'${h}'`).join(', ')} reach the export of volume ${e.volumeId}: its daemon (pid ${e.pid}) did not take the change over QMP: ${(err as Error).message}`, { cause: err })
    }
  }

  private read(volumeId: string): Promise<NbdExport | undefined> {
    return readRecord(this.recordPath(volumeId))
  }

  private write(e: NbdExport): void {
    writePrivateFile(this.recordPath(e.volumeId), JSON.stringify(e))
  }

  private async checkTls(): Promise<void> {
    for (const f of TLS_FILES) {
      const file = path.join(this.o.tlsDir, f)
      if (!(await stat(file).then(() => true, () => false))) {
        throw new FailedPrecondition(`network exports need ${file}: the NBD server's TLS directory (volumeExportTlsDir, STRATO_AGENT_VOLUME_EXPORT_TLS_DIR) must hold ${TLS_FILES.join(', ')} issued by the cloud's CA`)
      }
    }
  }
}

async function readRecord(file: string): Promise<NbdExport | undefined> {
  try {
    const e = JSON.parse(await readFile(file, 'utf8')) as NbdExport
    return typeof e.volumeId === 'string' && typeof e.port === 'number' && Array.isArray(e.hosts) ? e : undefined
  } catch {
    return undefined
  }
}

/**
 * Runs `commands` on the QMP socket `socket` (after qmp_capabilities), one
 * at a time; the first error QEMU answers rejects with its description.
 * Resolves with the last command's answer when it is a list (else empty).
 */
export function qmp(socket: string, commands: Array<{ execute: string; arguments?: object }>): Promise<Array<Record<string, unknown>>> {
  return new Promise((resolve, reject) => {
    const c = connect(socket)
    const queue = [{ execute: 'qmp_capabilities' }, ...commands]
    let buf = ''
    let greeted = false
    let last: unknown
    const fail = (err: Error) => {
      c.destroy()
      reject(err)
    }
    c.setTimeout(30_000, () => fail(new Error(`no answer on ${socket} within 30 s`)))
    c.on('error', fail)
    c.on('data', (d) => {
      buf += d.toString('utf8')
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const msg = JSON.parse(buf.slice(0, nl)) as { QMP?: unknown; return?: unknown; error?: { desc?: string }; event?: string }
        buf = buf.slice(nl + 1)
        if (msg.event) continue
        if (msg.error) return fail(new Error(msg.error.desc ?? JSON.stringify(msg.error)))
        if (msg.QMP) greeted = true
        else if (!greeted || msg.return === undefined) continue
        else last = msg.return
        const next = queue.shift()
        if (!next) {
          c.end()
          return resolve(Array.isArray(last) ? last as Array<Record<string, unknown>> : [])
        }
        c.write(`${JSON.stringify(next)}\n`)
      }
    })
  })
}

/** The node the export serves now: `vol0` as started, or the overlay a snapshot moved it onto. */
async function exportNode(socket: string): Promise<string> {
  const x = (await qmp(socket, [{ execute: 'query-block-exports' }])).find((b) => b.id === 'export0')
  if (!x) throw new Error('the daemon serves no export0')
  return String(x['node-name'])
}

/** The daemon's node name of a volume's overlay file (≤ 31 characters, from its name). */
function layerNode(overlay: string): string {
  return `layer-${createHash('sha256').update(path.basename(overlay)).digest('hex').slice(0, 24)}`
}

/**
 * Drops the copy's job and target node from the daemon on `socket`, when
 * there (one connection when both are; the node alone after a copy that
 * failed before its job began). A job still running stays: QEMU refuses to
 * dismiss it and to remove the node it writes to.
 */
async function dropCopy(socket: string): Promise<void> {
  const del = { execute: 'blockdev-del', arguments: { 'node-name': COPY_NODE } }
  await qmp(socket, [{ execute: 'job-dismiss', arguments: { id: COPY_JOB } }, del]).catch(() => qmp(socket, [del])).catch(() => undefined)
}

/** Whether a TCP connection to local port `port` is established now (an NBD client of the export on it). */
async function connectedTo(port: number): Promise<boolean> {
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    const lines = (await readFile(table, 'utf8').catch(() => '')).split('\n').slice(1)
    // "sl local_address rem_address st …": the local port in hex after the address; st 01 is ESTABLISHED.
    if (lines.some((l) => {
      const [, local, , st] = l.trim().split(/\s+/)
      return st === '01' && parseInt(local?.split(':').at(-1) ?? '', 16) === port
    })) return true
  }
  return false
}

/** A TCP port nothing listens on at `address` now. */
function freePort(address: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer()
    s.once('error', reject)
    s.listen(0, address, () => {
      const a = s.address()
      s.close(() => (a && typeof a === 'object' ? resolve(a.port) : reject(new Error('no port'))))
    })
  })
}

/**
 * Network exports of volume files: one `qemu-storage-daemon` per exported
 * volume (only one process may write a qcow2 file), recorded with the hosts
 * whose attachments use it, serving the volume's guest data over NBD on `address:port`, TLS
 * only, with x509 certificates both ways (`verify-peer=on`): a client with no
 * certificate of the cloud's CA is refused before it can name an export, so
 * a local user who can reach the port reads and writes nothing (issue 15's
 * rule). The daemon runs detached from the agent (a restarted agent finds
 * its exports still served) and is recorded in `<stateDir>/<volume>.json`;
 * an export recorded whose daemon is gone is served again on the same
 * address and port, so the client's QEMU finds it where it was.
 *
 * The TLS directory has QEMU's layout: `ca-cert.pem`, `server-cert.pem`,
 * `server-key.pem` (the key readable by root only).
 */
import { execFile } from 'node:child_process'
import { createServer } from 'node:net'
import { mkdir, readdir, readFile, rm, stat } from 'node:fs/promises'
import path from 'node:path'
import { promisify } from 'node:util'
import { FailedPrecondition, Internal } from '../../proto/errors.js'
import { writePrivateFile } from '../../proto/private-file.js'
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
}

const TLS_FILES = ['ca-cert.pem', 'server-cert.pem', 'server-key.pem']

export class NbdExports {
  constructor(private readonly o: NbdExportsOptions) {}

  private recordPath(volumeId: string): string {
    return path.join(this.o.stateDir, `${volumeId}.json`)
  }

  private pidPath(volumeId: string): string {
    return path.join(this.o.stateDir, `${volumeId}.pid`)
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
      if (hosts.length !== known.hosts.length) this.write({ ...known, hosts })
      return { ...known, hosts }
    }
    await this.checkTls()
    await mkdir(this.o.stateDir, { recursive: true, mode: 0o700 })
    const name = `volume-${volumeId}`
    // The same port again for an export that was served (its clients reconnect there); a free one otherwise.
    const port = known?.port ?? (await freePort(this.o.address))
    const pidFile = this.pidPath(volumeId)
    await rm(pidFile, { force: true })
    const args = [
      '--object', `tls-creds-x509,id=tls0,dir=${this.o.tlsDir},endpoint=server,verify-peer=on`,
      '--blockdev', `driver=file,filename=${file},node-name=file0`,
      '--blockdev', `driver=${format},file=file0,node-name=vol0`,
      '--nbd-server', `addr.type=inet,addr.host=${this.o.address},addr.port=${port},tls-creds=tls0`,
      '--export', `type=nbd,id=export0,node-name=vol0,name=${name},writable=on`,
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
    const e: NbdExport = { volumeId, hosts, address: this.o.address, port, name, pid }
    this.write(e)
    return e
  }

  /** `host` no longer needs the volume's export; the last host gone, the export ends (its daemon stopped, its record gone). */
  async stop(volumeId: string, host?: string): Promise<void> {
    const e = await this.read(volumeId)
    if (!e) return
    const hosts = host === undefined ? [] : e.hosts.filter((h) => h !== host)
    if (hosts.length) {
      this.write({ ...e, hosts })
      return
    }
    if (await this.serving(e)) {
      process.kill(e.pid, 'SIGTERM')
      for (let i = 0; i < 600 && (await this.serving(e)); i++) await new Promise((r) => setTimeout(r, 50))
      if (await this.serving(e)) process.kill(e.pid, 'SIGKILL')
    }
    await rm(this.recordPath(volumeId), { force: true })
    await rm(this.pidPath(volumeId), { force: true })
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

  /** Serves again every export recorded whose daemon is gone (after a restart of the host or a crash). */
  async reserve(fileOf: (volumeId: string) => Promise<{ path: string; format: 'qcow2' | 'raw' } | undefined>): Promise<NbdExport[]> {
    const again: NbdExport[] = []
    for (const e of await this.list()) {
      if (await this.serving(e)) continue
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

  /** Whether the export's daemon runs (the pid is a qemu-storage-daemon serving that export). */
  async serving(e: NbdExport): Promise<boolean> {
    const cmdline = await readFile(`/proc/${e.pid}/cmdline`, 'utf8').catch(() => '')
    return cmdline.includes('qemu-storage-daemon') && cmdline.includes(`name=${e.name},`)
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

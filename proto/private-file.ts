/**
 * Writing a file only its owner reads (keys, NATS seeds, tokens, dnsmasq's
 * guest lists): one way for the controller, the agent and the CLI, since
 * neither imports the other.
 */
import { randomBytes } from 'node:crypto'
import { closeSync, fchmodSync, fchownSync, fsyncSync, mkdirSync, openSync, renameSync, rmSync, writeSync } from 'node:fs'
import path from 'node:path'

export interface PrivateFileOptions {
  /** Permission bits of the file, set whatever the umask. @default 0o600 */
  mode?: number
  /**
   * When set, missing parent directories are made with this mode. A directory
   * that exists is left as it is (it may be the operator's, e.g. /etc/strato).
   */
  dirMode?: number
  /** When set, the file's group (e.g. QEMU's, for a key it must read), set before it appears under its name. */
  gid?: number
}

/**
 * Writes `data` to `file` atomically: into a temporary file beside it (private
 * from its first byte), flushed to disk, then renamed over `file`. A reader
 * sees the old content or the new, never half a key, and a crash leaves no
 * empty file behind. The temporary file is removed when any step fails.
 */
export function writePrivateFile(file: string, data: string | Uint8Array, o: PrivateFileOptions = {}): void {
  const mode = o.mode ?? 0o600
  if (o.dirMode !== undefined) mkdirSync(path.dirname(file), { recursive: true, mode: o.dirMode })
  // Unique per writer: two processes saving the same file never write into one temporary file.
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`
  const fd = openSync(tmp, 'wx', mode)
  try {
    try {
      if (o.gid !== undefined) fchownSync(fd, -1, o.gid)
      fchmodSync(fd, mode) // open() applies the umask; a wider `mode` (0644) is meant as given
      const buf = typeof data === 'string' ? Buffer.from(data) : data
      for (let off = 0; off < buf.length; ) off += writeSync(fd, buf, off, buf.length - off)
      fsyncSync(fd)
    } finally {
      closeSync(fd)
    }
    renameSync(tmp, file)
  } catch (err) {
    rmSync(tmp, { force: true })
    throw err
  }
}

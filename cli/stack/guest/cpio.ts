/**
 * A cpio archive in the "newc" format (what the Linux kernel unpacks as an
 * initramfs), written in memory. Pure: entries in, bytes out; the same entries
 * give the same bytes (times come from the entries, inode numbers from their
 * order), so the guest image can be reproducible.
 */

export interface CpioEntry {
  /** Path inside the archive, without a leading slash (`bin/busybox`). */
  path: string
  type: 'file' | 'dir' | 'symlink' | 'char'
  /** Permission bits (e.g. 0o755). */
  mode: number
  uid?: number
  gid?: number
  /** Modification time, seconds since the epoch. */
  mtime: number
  /** The file's contents, or the symlink's target. */
  data?: Buffer | string
  /** A character device's major and minor numbers (`/dev/console` is 5:1). */
  rdev?: [number, number]
}

const TYPE_BITS = { file: 0o100000, dir: 0o040000, symlink: 0o120000, char: 0o020000 } as const

const hex8 = (n: number) => n.toString(16).padStart(8, '0')
const pad4 = (n: number) => (4 - (n % 4)) % 4

function record(ino: number, mode: number, uid: number, gid: number, nlink: number, mtime: number, name: string, data: Buffer, rdev: [number, number] = [0, 0]): Buffer {
  const nameBytes = Buffer.from(`${name}\0`)
  const header =
    '070701' +
    [ino, mode, uid, gid, nlink, mtime, data.length, 0, 0, rdev[0], rdev[1], nameBytes.length, 0].map(hex8).join('')
  return Buffer.concat([
    Buffer.from(header, 'ascii'),
    nameBytes,
    Buffer.alloc(pad4(110 + nameBytes.length)),
    data,
    Buffer.alloc(pad4(data.length)),
  ])
}

/** The archive: every entry in the given order, then the `TRAILER!!!` record. */
export function cpioNewc(entries: readonly CpioEntry[]): Buffer {
  const parts: Buffer[] = []
  entries.forEach((e, i) => {
    if (e.path === '' || e.path.startsWith('/')) throw new Error(`cpio: path must be relative and not empty: '${e.path}'`)
    const data = e.type === 'dir' || e.type === 'char' ? Buffer.alloc(0) : Buffer.isBuffer(e.data) ? e.data : Buffer.from(e.data ?? '')
    parts.push(record(i + 1, TYPE_BITS[e.type] | (e.mode & 0o7777), e.uid ?? 0, e.gid ?? 0, e.type === 'dir' ? 2 : 1, e.mtime, e.path, data, e.rdev))
  })
  parts.push(record(0, 0, 0, 0, 1, 0, 'TRAILER!!!', Buffer.alloc(0)))
  return Buffer.concat(parts)
}

/**
 * Who may read a host's guest files (disks, config drives with user data,
 * console logs, the image cache's bases of private images): root, and QEMU
 * for exactly what it opens. Nothing here is readable or traversable by other
 * local users.
 *
 * QEMU runs as libvirt-qemu, group libvirt-qemu (Debian's qemu.conf `user` and
 * `group`), under libvirt's DAC security driver with `dynamic_ownership`:
 * before a guest starts, libvirt chowns every file it gives QEMU — the disk,
 * its whole backing chain (our cached base), the config drive — to
 * libvirt-qemu; at stop it gives the writable disk back to root and leaves the
 * read-only ones (base, config drive) as they are, since other guests may
 * still use them. The console log is opened by virtlogd (root) and handed to
 * QEMU as a descriptor. So files stay 0600 whoever owns them, and libvirt does
 * not touch directories: QEMU only needs to pass through them. Every directory
 * on the way to a guest's files is therefore root:<qemu group>, mode 0710 —
 * search for QEMU, no listing, nothing for others. A group rather than POSIX
 * ACLs: no `acl` package, and a mode that `ls -l` shows is easier to audit.
 */
import { execFileSync } from 'node:child_process'
import { chmodSync, chownSync, lstatSync, mkdirSync, readdirSync, statSync } from 'node:fs'
import path from 'node:path'
import { FailedPrecondition } from '../../proto/errors.js'

/** Directories only the agent (root) uses. */
export const PRIVATE_DIR_MODE = 0o700
/** Directories QEMU passes through (group: QEMU's). */
export const QEMU_DIR_MODE = 0o710
/** Every file the agent makes: disks, bases, config drives, state. */
export const PRIVATE_FILE_MODE = 0o600

/** The gid of a group by name (through NSS, as libvirt resolves qemu.conf's `group`). */
export function groupId(name: string): number {
  if (/^\+?\d+$/.test(name)) return Number(name.replace('+', ''))
  let line = ''
  try {
    line = execFileSync('getent', ['group', name], { encoding: 'utf8', timeout: 10_000 }).trim()
  } catch {
    throw new FailedPrecondition(`group '${name}' does not exist on this host: QEMU's group (qemu.conf 'group') is needed to let QEMU reach the guests' disks; set STRATO_AGENT_QEMU_GROUP to it`)
  }
  const gid = Number(line.split(':')[2])
  if (!Number.isInteger(gid)) throw new FailedPrecondition(`getent group ${name} answered '${line}', which has no gid`)
  return gid
}

/**
 * Makes the directories that hold guests' files, with their modes: 0710
 * root:<qemu group> when QEMU must reach into them (`qemuGid` given: the
 * libvirt driver), else 0700 (the fake driver: no QEMU). Existing directories
 * are fixed too (an older agent made them 0755).
 */
export class GuestDirs {
  constructor(readonly qemuGid: number | undefined) {}

  ensure(dir: string): void {
    mkdirSync(dir, { recursive: true, mode: PRIVATE_DIR_MODE })
    if (this.qemuGid === undefined) {
      chmodSync(dir, PRIVATE_DIR_MODE)
      return
    }
    chownSync(dir, statSync(dir).uid, this.qemuGid)
    chmodSync(dir, QEMU_DIR_MODE)
  }

  /**
   * The agent's own state dir and the instances dir under it (when it is), in
   * order, then a check that QEMU can pass through every directory above:
   * other users' search bit, or group search for QEMU's group. Checked at
   * start, so the failure names the directory instead of every build failing
   * with "Permission denied".
   */
  ensureTree(stateDir: string, instancesDir: string): void {
    const inside = path.relative(stateDir, instancesDir)
    const top = inside && !inside.startsWith('..') && !path.isAbsolute(inside) ? stateDir : instancesDir
    let dir = top
    this.ensure(dir)
    for (const part of path.relative(top, instancesDir).split(path.sep).filter(Boolean)) this.ensure((dir = path.join(dir, part)))
    this.tighten(instancesDir)
    if (this.qemuGid === undefined) return
    for (let up = path.dirname(top); ; up = path.dirname(up)) {
      if (!qemuCanSearch(up, this.qemuGid)) {
        const mode = (statSync(up).mode & 0o777).toString(8).padStart(4, '0')
        throw new FailedPrecondition(`QEMU (group ${this.qemuGid}) cannot reach ${instancesDir}: ${up} has mode ${mode}; run 'chgrp ${this.qemuGid} ${up} && chmod g+x ${up}' (or o+x), or set STRATO_AGENT_INSTANCES_DIR (or STRATO_AGENT_STATE_DIR) to a path QEMU can traverse`)
      }
      if (up === path.dirname(up)) return
    }
  }

  /**
   * What an older agent left open under the instances dir (0755 directories,
   * 0644 disks and config drives): its directories made as `ensure` makes
   * them, its files 0600 (their owner stays: libvirt's while a guest runs).
   */
  private tighten(instancesDir: string): void {
    for (const name of readdirSync(instancesDir)) {
      const dir = path.join(instancesDir, name)
      if (!lstatSync(dir).isDirectory()) continue
      this.ensure(dir)
      for (const file of readdirSync(dir)) {
        const st = lstatSync(path.join(dir, file))
        if (st.isFile() && (st.mode & 0o077) !== 0) chmodSync(path.join(dir, file), PRIVATE_FILE_MODE)
      }
    }
  }
}

/** Whether a process of group `gid` (not the owner) may search `dir`. */
export function qemuCanSearch(dir: string, gid: number): boolean {
  const st = statSync(dir)
  return (st.mode & 0o001) !== 0 || (st.gid === gid && (st.mode & 0o010) !== 0)
}

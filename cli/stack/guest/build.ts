/**
 * The Strato demo guest: a CirrOS-like qcow2 built here from Debian packages
 * (nothing else is downloaded), cached, and registered by `npm start` as the
 * seed's `cirros-0.3.4-x86_64-disk`.
 *
 * What is in it:
 *   - Debian's cloud kernel (`linux-image-cloud-amd64`), booted from the disk
 *     by syslinux on a FAT16 partition (an MBR from syslinux-common);
 *   - an initramfs (cpio newc, gzip): busybox-static (init, udhcpc, acpid,
 *     wget, ping, ip, sh …), dropbear with the libraries its ELF NEEDED
 *     entries name, the kernel modules a QEMU guest needs (virtio, IDE/SCSI
 *     disks and CD-ROMs, ISO 9660/FAT, the ACPI button) in load order, and
 *     the scripts of `rootfs/` (init, rcS, the DHCP hook, …);
 *   - an ext4 partition labelled `strato-data` (made by `mke2fs -d`, no loop
 *     mount) that the guest mounts for /home, /root and dropbear's host keys,
 *     so what a user writes survives a reboot and host keys are made once.
 *
 * The image is built once per key — the versions of the Debian packages plus
 * the builder's own sources — into `<checkout>/.strato/guest/<key>/`; a re-run
 * with the same key only looks. Finding the key asks apt (~2 s), so the last
 * key is kept beside the cache with a stamp of its inputs' file metadata (apt's
 * lists and configuration, dpkg's status, these sources): while the stamp
 * holds, the check costs a few stats. Building needs apt (`apt-get download`,
 * `dpkg-deb`), `depmod`, `readelf`, `sfdisk`, `mkfs.fat`, `mtools`,
 * `syslinux`, `mke2fs` (cli/stack/setup.sh installs them). Times in the image
 * are fixed (SOURCE_DATE_EPOCH, by default 2025-01-01), and so are the disk
 * ids, so two builds from the same packages give the same bytes.
 *
 * As a command (what setup.sh runs): `node dist/cli/stack/guest/build.js
 * [--cache-dir DIR] [--check]` prints the image's path; `--check` only looks.
 */
import { execFile } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { chmod, chown, copyFile, lstat, mkdir, open, readdir, readFile, readlink, rename, rm, stat, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { gzipSync } from 'node:zlib'
import { FailedPrecondition } from '../../../proto/errors.js'
import { convertImage } from '../../../native/index.js'
import { cpioNewc, type CpioEntry } from './cpio.js'
import { loadOrder, moduleName } from './modules.js'

/** The first words of the line the guest prints on its serial console once SSH is up. */
export const GUEST_READY = 'Strato demo guest ready:'
/** The guest's login user (as CirrOS's). */
export const GUEST_USER = 'cirros'
/** Smallest RAM the cloud kernel boots in (it unpacks the initramfs into RAM); the flavor gives more. */
export const GUEST_MIN_RAM_MIB = 80

/** The kernel's metapackage (it depends on the versioned image) and the user-space packages. */
const KERNEL_META = 'linux-image-cloud-amd64'
const USERSPACE = ['busybox-static', 'dropbear-bin']
/** dropbear's libraries come from these; which files are taken follows the NEEDED entries. */
const LIBRARIES = ['libc6', 'libcrypt1', 'libtomcrypt1', 'libtommath1', 'libgmp10', 'zlib1g']
/** Driver modules, loaded in this order (each after its dependencies). */
const MODULES = ['virtio_pci', 'virtio_blk', 'virtio_scsi', 'virtio_net', 'ata_piix', 'sd_mod', 'sr_mod', 'isofs', 'nls_cp437', 'nls_utf8', 'vfat', 'virtio_rng', 'button', 'evdev']
/** Kernel command line: the serial console is the console log libvirt keeps. */
const CMDLINE = 'console=ttyS0,115200n8 quiet panic=10'
const DROPBEAR = ['usr/sbin/dropbear', 'usr/bin/dropbearkey', 'usr/bin/dbclient']

/** Disk layout, in 512-byte sectors: MBR, FAT16 boot partition, ext4 data partition. */
const SECTOR = 512
const BOOT_START = 2048
const BOOT_SECTORS = 32 * 2048
const DATA_START = BOOT_START + BOOT_SECTORS
const DATA_SECTORS = 64 * 2048
const DISK_BYTES = (DATA_START + DATA_SECTORS) * SECTOR
/** Fixed ids, so the bytes do not change from build to build. */
const DISK_ID = '0x5374726f'
const FAT_SERIAL = '53545241'
const DATA_UUID = '5374726f-6775-6573-7400-000000000001'
const DATA_HASH_SEED = '5374726f-6775-6573-7400-000000000002'
/** 2025-01-01T00:00:00Z: every time in the image, unless SOURCE_DATE_EPOCH says otherwise. */
const DEFAULT_EPOCH = 1735689600

const here = path.dirname(fileURLToPath(import.meta.url))
/** The checkout (where package.json is), from src or dist alike. */
export const checkoutRoot = (() => {
  for (let dir = here; ; dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, 'package.json'))) return dir
    if (dir === path.dirname(dir)) throw new Error(`no package.json above ${here}`)
  }
})()
const sourceDir = path.join(checkoutRoot, 'cli', 'stack', 'guest')
const rootfsDir = path.join(sourceDir, 'rootfs')
export const DEFAULT_CACHE_DIR = path.join(checkoutRoot, '.strato', 'guest')

export interface GuestImage {
  /** The qcow2 file. */
  path: string
  key: string
  /** `name=version` of every Debian package in it. */
  packages: string[]
  /** Built by this call (false: found in the cache). */
  built: boolean
  /** Seconds this call took. */
  seconds: number
}

export interface GuestBuildOptions {
  /** @default `<checkout>/.strato/guest` */
  cacheDir?: string
  /** Progress lines. */
  log?: (line: string) => void
  /** Seconds since the epoch for every time in the image. @default 2025-01-01 */
  epoch?: number
}

interface Run {
  stdout: string
  stderr: string
}

function run(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; input?: string } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = execFile(cmd, args, { cwd: opts.cwd, env: opts.env, maxBuffer: 64 * 1024 * 1024, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err) {
        const why = (err as NodeJS.ErrnoException).code === 'ENOENT' ? `${cmd} is not installed (cli/stack/setup.sh installs it)` : `${stderr || stdout || err.message}`.trim().split('\n').slice(-8).join('\n')
        reject(new FailedPrecondition(`guest image: \`${cmd} ${args.join(' ')}\` failed: ${why}`, { cause: err }))
      } else resolve({ stdout, stderr })
    })
    if (opts.input !== undefined) child.stdin!.end(opts.input)
  })
}

/** `apt-cache policy` → candidate version per package. */
export function parseCandidates(policy: string): Map<string, string> {
  const out = new Map<string, string>()
  let name = ''
  for (const line of policy.split('\n')) {
    const head = /^(\S+):$/.exec(line)
    if (head) name = head[1]!
    const cand = /^\s+Candidate:\s+(\S+)/.exec(line)
    if (cand && name && cand[1] !== '(none)') out.set(name, cand[1]!)
  }
  return out
}

/** The Debian packages of the image, `name=version`, as apt would download them now. */
async function resolvePackages(): Promise<string[]> {
  const deps = (await run('apt-cache', ['depends', KERNEL_META])).stdout
  const kernel = /Depends:\s+(linux-image-\S+)/.exec(deps)?.[1]
  if (kernel === undefined) throw new FailedPrecondition(`guest image: apt knows no kernel for ${KERNEL_META} (is apt's package list there? apt-get update)`)
  const names = [kernel, ...USERSPACE, ...LIBRARIES]
  const versions = parseCandidates((await run('apt-cache', ['policy', ...names])).stdout)
  const missing = names.filter((n) => !versions.has(n))
  if (missing.length > 0) throw new FailedPrecondition(`guest image: apt has no candidate for ${missing.join(', ')} (apt-get update?)`)
  return names.map((n) => `${n}=${versions.get(n)}`)
}

async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = []
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name)
    if (e.isDirectory()) out.push(...(await filesUnder(p)))
    else out.push(p)
  }
  return out.sort()
}

/** The cache key: the packages and the builder's sources (TypeScript and rootfs). */
async function cacheKey(packages: string[]): Promise<string> {
  const h = createHash('sha256')
  h.update(`${packages.join('\n')}\n${CMDLINE}\n${MODULES.join(' ')}\n`)
  for (const f of await filesUnder(sourceDir)) {
    if (!f.endsWith('.ts') && !f.startsWith(rootfsDir + path.sep)) continue
    const s = await stat(f)
    h.update(`${path.relative(sourceDir, f)} ${s.mode & 0o111 ? 'x' : '-'}\n`)
    h.update(await readFile(f))
  }
  return h.digest('hex').slice(0, 16)
}

const imageIn = (cacheDir: string, key: string) => path.join(cacheDir, key, 'disk.qcow2')

/** What apt's candidate versions follow: its package lists, its configuration, dpkg's status. */
const APT_INPUTS = ['/var/lib/apt/lists', '/etc/apt', '/var/lib/dpkg/status']
/** `<cacheDir>/.key.json`: the last key, and the stamp of the inputs it was computed from. */
const KEY_MEMO = '.key.json'

/** Every file and directory under `root` (itself included), with its metadata; what cannot be read is skipped. */
async function statsUnder(root: string, out: string[] = []): Promise<string[]> {
  const s = await stat(root).catch(() => undefined)
  out.push(`${root} ${s ? `${s.ino} ${s.size} ${s.mtimeMs} ${s.ctimeMs} ${s.mode}` : '-'}`)
  if (s?.isDirectory()) {
    const names = await readdir(root).catch(() => [])
    for (const name of names.sort()) await statsUnder(path.join(root, name), out)
  }
  return out
}

/**
 * A stamp of what the key is made from, from file metadata alone (no apt-cache,
 * no reading): apt's state and the builder's sources. A file written, replaced
 * or touched changes its ctime, so an equal stamp means the key is unchanged.
 */
async function inputsStamp(): Promise<string> {
  const h = createHash('sha256')
  for (const root of [...APT_INPUTS, sourceDir]) for (const line of await statsUnder(root)) h.update(`${line}\n`)
  return h.digest('hex')
}

/**
 * The cache key and the packages it is for. apt is asked (`resolve`:
 * apt-cache depends and policy, ~2 s) only when the stamp of the inputs
 * differs from the one the last call kept beside the cache; otherwise the
 * kept key is the answer.
 */
export async function currentKey(cacheDir: string, resolve: () => Promise<string[]> = resolvePackages): Promise<{ key: string; packages: string[] }> {
  const stamp = await inputsStamp()
  const memoFile = path.join(cacheDir, KEY_MEMO)
  try {
    const memo = JSON.parse(await readFile(memoFile, 'utf8')) as { stamp?: unknown; key?: unknown; packages?: unknown }
    if (memo.stamp === stamp && typeof memo.key === 'string' && Array.isArray(memo.packages)) return { key: memo.key, packages: memo.packages as string[] }
  } catch {
    // None yet, or unreadable: computed below.
  }
  const packages = await resolve()
  const key = await cacheKey(packages)
  const tmp = `${memoFile}.${process.pid}.tmp`
  try {
    await mkdir(cacheDir, { recursive: true })
    await writeFile(tmp, `${JSON.stringify({ stamp, key, packages })}\n`)
    await rename(tmp, memoFile)
  } catch {
    // A cache directory we cannot write: apt is asked again next time, nothing worse.
    await rm(tmp, { force: true }).catch(() => undefined)
  }
  return { key, packages }
}

/**
 * The cached image for today's package versions and these sources, without
 * building; undefined when there is none (or apt cannot say the versions).
 */
export async function cachedGuestImage(options: Pick<GuestBuildOptions, 'cacheDir'> = {}): Promise<string | undefined> {
  const cacheDir = options.cacheDir ?? DEFAULT_CACHE_DIR
  try {
    const file = imageIn(cacheDir, (await currentKey(cacheDir)).key)
    return existsSync(file) ? file : undefined
  } catch {
    return undefined
  }
}

/** Builds the guest image unless the cache has it; returns where it is. */
export async function buildGuestImage(options: GuestBuildOptions = {}): Promise<GuestImage> {
  const started = Date.now()
  const cacheDir = options.cacheDir ?? DEFAULT_CACHE_DIR
  const log = options.log ?? (() => undefined)
  const epoch = options.epoch ?? DEFAULT_EPOCH
  const { key, packages } = await currentKey(cacheDir)
  const done = (built: boolean): GuestImage => ({ path: imageIn(cacheDir, key), key, packages, built, seconds: (Date.now() - started) / 1000 })
  if (existsSync(imageIn(cacheDir, key))) return done(false)

  await mkdir(cacheDir, { recursive: true })
  const work = path.join(cacheDir, `.build-${process.pid}-${randomBytes(4).toString('hex')}`)
  try {
    await mkdir(work)
    log(`building the demo guest image ${key} from ${packages.join(' ')}`)
    const debs = path.join(work, 'debs')
    const tree = path.join(work, 'tree')
    await mkdir(debs)
    await mkdir(tree)
    await run('apt-get', ['download', '-q', '-o', 'APT::Sandbox::User=root', ...packages], { cwd: debs })
    for (const deb of (await readdir(debs)).filter((f) => f.endsWith('.deb')).sort()) {
      await run('dpkg-deb', ['-x', path.join(debs, deb), tree])
    }
    const kver = packages[0]!.split('=')[0]!.replace(/^linux-image-/, '')

    const initrd = gzipSync(cpioNewc(await initramfsEntries(tree, kver, epoch)), { level: 9 })
    log(`initramfs: ${(initrd.length / 1e6).toFixed(1)} MB (gzip)`)
    const disk = path.join(work, 'disk.raw')
    await diskImage(work, disk, path.join(tree, 'boot', `vmlinuz-${kver}`), initrd, epoch)

    const out = path.join(work, 'out')
    await mkdir(out)
    await convertImage(disk, path.join(out, 'disk.qcow2'), { srcFormat: 'raw', dstFormat: 'qcow2', compress: true, level: 9, threads: 1 }) // one thread: clusters in order, the same bytes each time
    await writeFile(path.join(out, 'manifest.json'), `${JSON.stringify({ key, packages, kernel: kver, cmdline: CMDLINE, modules: MODULES, epoch }, null, 2)}\n`)
    try {
      await rename(out, path.join(cacheDir, key))
    } catch (e) {
      // Another build of the same key finished first: same bytes, keep theirs.
      if (!existsSync(imageIn(cacheDir, key))) throw e
    }
    for (const old of await readdir(cacheDir)) {
      if (old !== key && !old.startsWith('.')) await rm(path.join(cacheDir, old), { recursive: true, force: true })
    }
    const image = done(true)
    log(`built ${image.path} (${((await stat(image.path)).size / 1e6).toFixed(1)} MB) in ${image.seconds.toFixed(1)} s`)
    return image
  } finally {
    await rm(work, { recursive: true, force: true })
  }
}

/** A path inside the extracted tree, following symlinks (absolute ones stay inside the tree). */
async function inTree(tree: string, rel: string, hops = 0): Promise<string> {
  if (hops > 16) throw new FailedPrecondition(`guest image: too many symlinks at ${rel}`)
  const parts = rel.split('/').filter(Boolean)
  let cur = ''
  for (let i = 0; i < parts.length; i++) {
    const next = path.posix.join(cur, parts[i]!)
    const st = await lstat(path.join(tree, next)).catch(() => undefined)
    if (st === undefined) throw new FailedPrecondition(`guest image: ${rel} is not in the extracted packages`)
    if (st.isSymbolicLink()) {
      const target = await readlink(path.join(tree, next))
      const resolved = target.startsWith('/') ? target.slice(1) : path.posix.join(cur, target)
      return inTree(tree, path.posix.join(resolved, ...parts.slice(i + 1)), hops + 1)
    }
    cur = next
  }
  return path.join(tree, cur)
}

const LIB_DIRS = ['lib/x86_64-linux-gnu', 'usr/lib/x86_64-linux-gnu', 'lib64', 'lib', 'usr/lib']

/** The shared libraries `binaries` need, by soname, following NEEDED entries recursively. */
async function neededLibraries(tree: string, binaries: string[]): Promise<Map<string, string>> {
  const found = new Map<string, string>()
  const queue = [...binaries]
  while (queue.length > 0) {
    const file = queue.shift()!
    const dyn = (await run('readelf', ['-d', '-W', file])).stdout
    for (const m of dyn.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)) {
      const soname = m[1]!
      if (found.has(soname)) continue
      let where: string | undefined
      for (const dir of LIB_DIRS) {
        if (existsSync(path.join(tree, dir, soname))) {
          where = await inTree(tree, `${dir}/${soname}`)
          break
        }
      }
      if (where === undefined) throw new FailedPrecondition(`guest image: ${path.basename(file)} needs ${soname}, which none of ${LIBRARIES.join(', ')} has`)
      found.set(soname, where)
      queue.push(where)
    }
  }
  return found
}

/** Every file of the initramfs, in a fixed order. */
async function initramfsEntries(tree: string, kver: string, mtime: number): Promise<CpioEntry[]> {
  const entries: CpioEntry[] = []
  const dir = (p: string, mode = 0o755) => entries.push({ path: p, type: 'dir', mode, mtime })
  const file = (p: string, data: Buffer | string, mode = 0o644) => entries.push({ path: p, type: 'file', mode, mtime, data })
  const link = (p: string, target: string) => entries.push({ path: p, type: 'symlink', mode: 0o777, mtime, data: target })

  for (const d of ['bin', 'dev', 'etc', 'home', 'lib', 'lib/modules', 'lib/x86_64-linux-gnu', 'lib64', 'mnt', 'proc', 'run', 'sbin', 'sys', 'usr', 'usr/bin', 'usr/sbin', 'var', 'var/log', 'data']) dir(d)
  dir('root', 0o700)
  dir('tmp', 0o1777)
  entries.push({ path: 'dev/console', type: 'char', mode: 0o600, mtime, rdev: [5, 1] })
  entries.push({ path: 'dev/null', type: 'char', mode: 0o666, mtime, rdev: [1, 3] })

  file('bin/busybox', await readFile(await inTree(tree, 'bin/busybox')), 0o755)
  link('bin/sh', 'busybox')

  // dropbear and its libraries; the loader where PT_INTERP says it is.
  const binaries = await Promise.all(DROPBEAR.map((b) => inTree(tree, b)))
  for (const [i, b] of DROPBEAR.entries()) file(b, await readFile(binaries[i]!), 0o755)
  const libs = await neededLibraries(tree, binaries)
  libs.set('ld-linux-x86-64.so.2', await inTree(tree, 'lib64/ld-linux-x86-64.so.2'))
  for (const [soname, where] of [...libs].sort(([a], [b]) => a.localeCompare(b))) file(`lib/x86_64-linux-gnu/${soname}`, await readFile(where), 0o755)
  link('lib64/ld-linux-x86-64.so.2', '/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2')

  // Kernel modules, flat, and the order to load them in.
  // depmod -b BASE reads BASE/lib/modules/KVER (Debian 12's kernels ship there).
  const modRoot = path.join(tree, 'lib/modules', kver)
  await run('depmod', ['-b', tree, kver])
  const builtin = new Set((await readFile(path.join(modRoot, 'modules.builtin'), 'utf8').catch(() => '')).split('\n').filter(Boolean).map(moduleName))
  const order = loadOrder(await readFile(path.join(modRoot, 'modules.dep'), 'utf8'), MODULES, builtin)
  const names: string[] = []
  for (const rel of order) {
    const name = path.basename(rel).replace(/\.ko$/, '')
    if (rel.endsWith('.ko') === false) throw new FailedPrecondition(`guest image: ${rel} is compressed; busybox insmod wants plain .ko files`)
    file(`lib/modules/${name}.ko`, await readFile(path.join(modRoot, rel)))
    names.push(name)
  }
  file('etc/modules', `${names.join('\n')}\n`)

  // The scripts and configuration of rootfs/, with normalized modes.
  const seenDirs = new Set(entries.filter((e) => e.type === 'dir').map((e) => e.path))
  for (const f of await filesUnder(rootfsDir)) {
    const rel = path.relative(rootfsDir, f).split(path.sep).join('/')
    const parts = rel.split('/')
    for (let i = 1; i < parts.length; i++) {
      const d = parts.slice(0, i).join('/')
      if (!seenDirs.has(d)) (seenDirs.add(d), dir(d))
    }
    const exec = ((await stat(f)).mode & 0o100) !== 0
    file(rel, await readFile(f), rel === 'etc/shadow' ? 0o600 : exec ? 0o755 : 0o644)
  }
  return entries
}

/** The raw disk: MBR + syslinux on FAT16 (kernel, initramfs, syslinux.cfg) + the ext4 data partition. */
async function diskImage(work: string, disk: string, kernel: string, initrd: Buffer, epoch: number): Promise<void> {
  const env = { ...process.env, MTOOLS_SKIP_CHECK: '1', SOURCE_DATE_EPOCH: String(epoch), E2FSPROGS_FAKE_TIME: String(epoch), TZ: 'UTC' }
  const fd = await open(disk, 'w')
  await fd.truncate(DISK_BYTES)
  await fd.close()
  await run('sfdisk', ['--quiet', '--no-reread', '--no-tell-kernel', disk], {
    input: `label: dos\nlabel-id: ${DISK_ID}\nunit: sectors\n\nstart=${BOOT_START}, size=${BOOT_SECTORS}, type=6, bootable\nstart=${DATA_START}, size=${DATA_SECTORS}, type=83\n`,
  })
  // The MBR's boot code (it boots the active partition): 440 bytes, before the disk id and table.
  const mbr = await readFile(['/usr/lib/syslinux/mbr/mbr.bin', '/usr/lib/SYSLINUX/mbr.bin'].find((p) => existsSync(p)) ?? '/usr/lib/syslinux/mbr/mbr.bin')
  const w = await open(disk, 'r+')
  try {
    await w.write(mbr.subarray(0, 440), 0, 440, 0)
  } finally {
    await w.close()
  }

  await run('mkfs.fat', ['-F', '16', '-n', 'STRATOBOOT', '-i', FAT_SERIAL, '--offset', String(BOOT_START), disk, String(BOOT_SECTORS / 2)], { env })
  const boot = path.join(work, 'boot')
  await mkdir(boot)
  await copyFile(kernel, path.join(boot, 'vmlinuz'))
  await writeFile(path.join(boot, 'initrd.img'), initrd)
  await writeFile(path.join(boot, 'syslinux.cfg'), `DEFAULT strato\nPROMPT 0\nTIMEOUT 0\nLABEL strato\n  KERNEL /vmlinuz\n  INITRD /initrd.img\n  APPEND ${CMDLINE}\n`)
  const at = `${disk}@@${BOOT_START * SECTOR}`
  for (const f of ['vmlinuz', 'initrd.img', 'syslinux.cfg']) {
    await run('touch', ['-d', `@${epoch}`, path.join(boot, f)])
    await run('mcopy', ['-m', '-i', at, path.join(boot, f), `::/${f}`], { env })
  }
  await run('syslinux', ['--offset', String(BOOT_START * SECTOR), '--install', disk], { env })
  await fixFatTimes(disk, BOOT_START * SECTOR, epoch) // syslinux stamps ldlinux.* with the time of the build

  // The persistent filesystem, filled from a staging tree (owners as in the guest).
  const stage = path.join(work, 'data')
  for (const d of ['home/cirros/.ssh', 'root/.ssh', 'etc/dropbear']) await mkdir(path.join(stage, d), { recursive: true })
  await chmod(path.join(stage, 'root'), 0o700)
  await chmod(path.join(stage, 'root/.ssh'), 0o700)
  await chmod(path.join(stage, 'home/cirros/.ssh'), 0o700)
  if (process.getuid?.() === 0) {
    await chown(path.join(stage, 'home/cirros'), 1000, 1000)
    await chown(path.join(stage, 'home/cirros/.ssh'), 1000, 1000)
  }
  await run('find', [stage, '-exec', 'touch', '-h', '-d', `@${epoch}`, '{}', '+'])
  const data = path.join(work, 'data.ext4')
  await run('mke2fs', ['-q', '-F', '-t', 'ext4', '-L', 'strato-data', '-U', DATA_UUID, '-E', `hash_seed=${DATA_HASH_SEED},root_owner=0:0,nodiscard`, '-m', '0', '-d', stage, data, `${DATA_SECTORS / 2}k`], { env })
  // mke2fs -d copies the staging files' ctimes (the time of the build): set them too.
  const inodes = ['home', 'home/cirros', 'home/cirros/.ssh', 'root', 'root/.ssh', 'etc', 'etc/dropbear']
  await run('debugfs', ['-w', '-f', '-', data], { env, input: inodes.map((p) => `set_inode_field /${p} ctime @${epoch}\nset_inode_field /${p} ctime_extra 0\n`).join('') })
  const src = await open(data, 'r')
  const dst = await open(disk, 'r+')
  try {
    const buf = Buffer.alloc(1024 * 1024)
    for (let off = 0; off < DATA_SECTORS * SECTOR; off += buf.length) {
      const { bytesRead } = await src.read(buf, 0, buf.length, off)
      if (bytesRead === 0) break
      if (buf.subarray(0, bytesRead).some((b) => b !== 0)) await dst.write(buf, 0, bytesRead, DATA_START * SECTOR + off)
    }
  } finally {
    await src.close()
    await dst.close()
  }
}

/** A time as FAT stores it (local time = UTC here): [time, date]. */
export function fatTime(epoch: number): [number, number] {
  const d = new Date(epoch * 1000)
  return [(d.getUTCHours() << 11) | (d.getUTCMinutes() << 5) | (d.getUTCSeconds() >> 1), ((d.getUTCFullYear() - 1980) << 9) | ((d.getUTCMonth() + 1) << 5) | d.getUTCDate()]
}

/** Sets every time of the entries of a FAT16 root directory (at byte `offset` of `file`) to `epoch`. */
async function fixFatTimes(file: string, offset: number, epoch: number): Promise<void> {
  const fd = await open(file, 'r+')
  try {
    const bpb = Buffer.alloc(512)
    await fd.read(bpb, 0, 512, offset)
    const bytesPerSector = bpb.readUInt16LE(11)
    const rootStart = offset + (bpb.readUInt16LE(14) + bpb[16]! * bpb.readUInt16LE(22)) * bytesPerSector
    const root = Buffer.alloc(bpb.readUInt16LE(17) * 32)
    await fd.read(root, 0, root.length, rootStart)
    const [time, date] = fatTime(epoch)
    for (let e = 0; e < root.length; e += 32) {
      if (root[e] === 0) break
      if (root[e] === 0xe5 || root[e + 11] === 0x0f) continue // deleted, or a long-name part
      root[e + 13] = 0
      root.writeUInt16LE(time, e + 14)
      root.writeUInt16LE(date, e + 16)
      root.writeUInt16LE(date, e + 18)
      root.writeUInt16LE(time, e + 22)
      root.writeUInt16LE(date, e + 24)
    }
    await fd.write(root, 0, root.length, rootStart)
  } finally {
    await fd.close()
  }
}

async function main(argv: string[]): Promise<number> {
  let cacheDir: string | undefined
  let check = false
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--cache-dir') cacheDir = path.resolve(argv[++i] ?? '')
    else if (argv[i] === '--check') check = true
    else {
      process.stderr.write(`usage: build.js [--cache-dir DIR] [--check]\n`)
      return 2
    }
  }
  if (check) {
    const file = await cachedGuestImage({ cacheDir })
    if (file) process.stdout.write(`${file}\n`)
    return file ? 0 : 1
  }
  const epoch = process.env.SOURCE_DATE_EPOCH ? Number(process.env.SOURCE_DATE_EPOCH) : undefined
  try {
    const image = await buildGuestImage({ cacheDir, epoch, log: (l) => process.stderr.write(`guest: ${l}\n`) })
    process.stdout.write(`${image.path}\n`)
    return 0
  } catch (e) {
    process.stderr.write(`${(e as Error).message}\n`)
    return 1
  }
}

if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  process.exitCode = await main(process.argv.slice(2))
}

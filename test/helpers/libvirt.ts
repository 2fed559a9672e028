/**
 * libvirt for integration tests: start the daemons if needed (the same steps
 * as `agent/virt/libvirt/start-libvirtd.sh`), and look at the hypervisor with
 * `virsh`, independently of the code under test.
 */
import { execFile, spawn } from 'node:child_process'
import { constants as fsConstants } from 'node:fs'
import { access, chmod, chown, mkdir, readFile, stat } from 'node:fs/promises'
import { promisify } from 'node:util'
import { PowerState } from '../../proto/power-state.js'

const run = promisify(execFile)

export const LIBVIRT_URI = 'qemu:///system'

async function exists(path: string): Promise<boolean> {
  return access(path, fsConstants.F_OK).then(
    () => true,
    () => false,
  )
}

async function pidAlive(pidFile: string): Promise<boolean> {
  try {
    const pid = Number((await readFile(pidFile, 'utf8')).trim())
    if (!Number.isInteger(pid) || pid <= 0) return false
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

async function processRunning(name: string): Promise<boolean> {
  return run('pgrep', ['-x', name]).then(
    () => true,
    () => false,
  )
}

/** Starts `command -d` (it daemonises itself) and waits for the parent to exit. */
function daemonize(command: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, ['-d'], { stdio: 'ignore' })
    child.on('error', reject)
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${command} -d exited with ${code}`))))
  })
}

async function kvmGroupId(): Promise<number | undefined> {
  const groups = await readFile('/etc/group', 'utf8').catch(() => '')
  const line = groups.split('\n').find((l) => l.startsWith('kvm:'))
  const gid = Number(line?.split(':')[2])
  return Number.isInteger(gid) ? gid : undefined
}

/** Does virsh answer on `uri`? */
export async function libvirtAnswers(uri = LIBVIRT_URI): Promise<boolean> {
  return run('virsh', ['-c', uri, 'version'], { timeout: 10_000 }).then(
    () => true,
    () => false,
  )
}

export interface EnsureLibvirtdOptions {
  uri?: string
  /** @default 30000 */
  timeoutMs?: number
}

/**
 * Idempotently: make /dev/kvm group kvm, mode 0660 (QEMU runs as
 * libvirt-qemu:kvm); create /var/log/libvirt; start virtlogd and libvirtd if
 * they are not running; wait until `virsh -c qemu:///system version` answers.
 * Daemons it starts are left running.
 */
export async function ensureLibvirtd(options: EnsureLibvirtdOptions = {}): Promise<void> {
  const uri = options.uri ?? LIBVIRT_URI
  const timeoutMs = options.timeoutMs ?? 30_000
  if (await exists('/dev/kvm')) {
    const info = await stat('/dev/kvm')
    const gid = await kvmGroupId()
    if (info.isCharacterDevice() && gid !== undefined) {
      if (info.gid !== gid) await chown('/dev/kvm', info.uid, gid)
      if ((info.mode & 0o777) !== 0o660) await chmod('/dev/kvm', 0o660)
    }
  }
  await mkdir('/var/log/libvirt', { recursive: true })
  await mkdir('/run/libvirt', { recursive: true })
  // Another test file may be starting them at this moment: its daemon then holds the pid file and
  // ours exits "Unable to obtain pidfile". Wait for whichever won; its error matters only if none answers.
  const startErrors: string[] = []
  for (const d of ['virtlogd', 'libvirtd']) {
    if (!(await pidAlive(`/run/${d}.pid`)) && !(await processRunning(d))) await daemonize(d).catch((e: Error) => startErrors.push(e.message))
  }
  const deadline = Date.now() + timeoutMs
  while (!(await libvirtAnswers(uri))) {
    if (Date.now() > deadline) throw new Error(`libvirt at ${uri} did not answer within ${timeoutMs} ms${startErrors.length ? ` (${startErrors.join('; ')})` : ''}`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

/** Runs virsh against the system URI and returns stdout. */
export async function virsh(...args: string[]): Promise<string> {
  const { stdout } = await run('virsh', ['-c', LIBVIRT_URI, ...args], { timeout: 30_000 })
  return stdout
}

/** `virsh list --all --name`: names of every defined domain. */
export async function virshDomainNames(): Promise<string[]> {
  return (await virsh('list', '--all', '--name'))
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line.length > 0)
}

/** The state `virsh list --all` shows for a domain name, mapped to a Nova power state, or 'absent'. */
export async function virshPowerState(name: string): Promise<PowerState | 'absent'> {
  const lines = (await virsh('list', '--all')).split('\n').slice(2)
  for (const line of lines) {
    const match = /^\s*(\S+)\s+(\S+)\s+(.+?)\s*$/.exec(line)
    if (match === null || match[2] !== name) continue
    const state = match[3] ?? ''
    switch (state) {
      case 'running':
      case 'idle':
        return PowerState.RUNNING
      case 'paused':
        return PowerState.PAUSED
      case 'shut off':
      case 'in shutdown':
        return PowerState.SHUTDOWN
      case 'crashed':
        return PowerState.CRASHED
      case 'pmsuspended':
        return PowerState.SUSPENDED
      default:
        return PowerState.NOSTATE
    }
  }
  return 'absent'
}

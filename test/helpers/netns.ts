/**
 * Network namespaces for the L3 tests and the network bench: `ip`, commands
 * run inside a namespace (`ip netns exec`), a namespace plugged into a bridge,
 * and node TCP/HTTP listeners and connections inside one. Needs root.
 */
import { execFile, spawn, type ChildProcess, type StdioOptions } from 'node:child_process'
import { promisify } from 'node:util'

const run = promisify(execFile)

/** `ip …`, its stdout. */
export async function ip(...args: string[]): Promise<string> {
  return (await run('ip', args)).stdout
}

/** Runs `cmd args…` inside namespace `ns`. */
export function inNamespace(ns: string, cmd: string, args: string[], o: { timeout?: number; maxBuffer?: number; env?: NodeJS.ProcessEnv } = {}): Promise<{ stdout: string; stderr: string }> {
  return run('ip', ['netns', 'exec', ns, cmd, ...args], o)
}

/** Starts `cmd args…` inside namespace `ns` (a listener, a server) and returns it running. */
export function spawnInNamespace(ns: string, cmd: string, args: string[], stdio: StdioOptions = ['ignore', 'pipe', 'inherit']): ChildProcess {
  return spawn('ip', ['netns', 'exec', ns, cmd, ...args], { stdio })
}

/**
 * A namespace whose eth0 is the peer of `hostEnd` (plugged into `bridge`
 * when given), with `cidr` on it and a default route via `via` when given.
 */
export async function endpoint(ns: string, hostEnd: string, cidr: string, bridge?: string, via?: string): Promise<void> {
  await ip('netns', 'add', ns)
  await ip('link', 'add', hostEnd, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns)
  if (bridge) await ip('link', 'set', hostEnd, 'master', bridge, 'up')
  await ip('-n', ns, 'link', 'set', 'lo', 'up')
  await ip('-n', ns, 'addr', 'add', cidr, 'dev', 'eth0')
  await ip('-n', ns, 'link', 'set', 'eth0', 'up')
  if (via) await ip('-n', ns, 'route', 'add', 'default', 'via', via)
}

/**
 * Runs node `code` inside `ns` and resolves once it prints `listening`; each
 * other line it prints goes to `onLine`. Rejects if it exits first.
 */
export async function listenIn(ns: string, code: string, onLine?: (line: string) => void): Promise<ChildProcess> {
  const p = spawnInNamespace(ns, process.execPath, ['-e', code])
  await new Promise<void>((resolve, reject) => {
    p.stdout!.on('data', (d: Buffer) => {
      for (const l of d.toString().split('\n').filter(Boolean)) l === 'listening' ? resolve() : onLine?.(l)
    })
    p.once('exit', (c) => reject(new Error(`the listener in ${ns} exited (${c})`)))
  })
  return p
}

/**
 * A TCP listener in `ns` on `port` that answers each connection with
 * `<banner> <the peer's address>` and closes it. A peer that gives up first
 * (a probe's timeout on a loaded machine) resets its connection: that socket's
 * error is ignored, or the listener would die of it and every later probe fail.
 */
export function bannerListener(ns: string, port: number, banner: string): Promise<ChildProcess> {
  return listenIn(ns, `require('net').createServer((s) => { s.on('error', () => undefined); s.end('${banner} ' + (s.remoteAddress ?? '').replace(/^::ffff:/, '') + '\\n') }).listen(${port}, () => console.log('listening'))`)
}

/**
 * What a TCP connection from `ns` to host:port reads — all of it until the
 * peer closes, or with `firstLine` the first line of the first data — or
 * undefined when nothing comes within `timeoutMs`.
 */
export async function connectFrom(ns: string, host: string, port: number, o: { timeoutMs?: number; firstLine?: boolean } = {}): Promise<string | undefined> {
  const timeoutMs = o.timeoutMs ?? 2_000
  const onData = o.firstLine ? `s.on('data', (d) => { process.stdout.write(d.toString().split('\\n')[0]); process.exit(0) })` : `s.on('data', (d) => (out += d)); s.on('end', () => { process.stdout.write(out); process.exit(0) })`
  const code = `const s = require('net').connect({ host: '${host}', port: ${port} }); let out = ''; s.setTimeout(${timeoutMs}, () => process.exit(2)); ${onData}; s.on('error', () => process.exit(1))`
  const r = await inNamespace(ns, process.execPath, ['-e', code], { timeout: timeoutMs + 5_000 }).catch(() => undefined)
  return r?.stdout.trim() || undefined
}

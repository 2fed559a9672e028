/**
 * Listening sockets inside named network namespaces (`/run/netns/<name>`, as
 * `ip netns add` makes them), made by the agent itself with libc through
 * koffi, so no helper process runs per namespace.
 *
 * A network namespace belongs to a thread, and a socket to the namespace it
 * was created in, for its whole life. So, synchronously in one JS turn (no
 * I/O, hence no socket libuv could open meanwhile), the calling thread:
 * enters the namespace (setns), creates, binds and listens on a TCP socket,
 * and goes back to the namespace it came from, through an fd of its own
 * namespace kept open from the first call. The fd is then Node's
 * (`server.listen({ fd })`); connections it accepts live in that namespace
 * whichever thread accepts them. Other threads (libuv's pool, workers) never
 * move.
 *
 * Needs CAP_SYS_ADMIN (setns) and CAP_NET_BIND_SERVICE for ports below 1024.
 */
import { closeSync, openSync, readlinkSync } from 'node:fs'
import { constants, endianness } from 'node:os'
import { isIPv4 } from 'node:net'
import koffi from 'koffi'
import { FailedPrecondition, InvalidArgument, NotFound } from '../../proto/errors.js'

const CLONE_NEWNET = 0x40000000
const AF_INET = 2
const SOCK_STREAM = 1
const SOCK_NONBLOCK = 0o4000
const SOCK_CLOEXEC = 0o2000000
const SOL_SOCKET = 1
const SO_REUSEADDR = 2
const IPPROTO_IP = 0
/** Bind even before the address is on an interface (the namespace's owner may add it later). */
const IP_FREEBIND = 15

type Fn = (...args: unknown[]) => number

let libc: Record<'setns' | 'socket' | 'setsockopt' | 'bind' | 'listen' | 'close', Fn> | undefined
function c(): NonNullable<typeof libc> {
  if (!libc) {
    const lib = koffi.load('libc.so.6')
    libc = {
      setns: lib.func('int setns(int fd, int nstype)') as Fn,
      socket: lib.func('int socket(int domain, int type, int protocol)') as Fn,
      setsockopt: lib.func('int setsockopt(int fd, int level, int optname, const void *optval, uint32_t optlen)') as Fn,
      bind: lib.func('int bind(int fd, const void *addr, uint32_t addrlen)') as Fn,
      listen: lib.func('int listen(int fd, int backlog)') as Fn,
      close: lib.func('int close(int fd)') as Fn,
    }
  }
  return libc
}

const ERRNO_NAMES = new Map(Object.entries(constants.errno).map(([name, n]) => [n, name]))
/** `EPERM (errno 1)` for the errno the last libc call left. */
function lastError(): string {
  const n = koffi.errno()
  return `${ERRNO_NAMES.get(n) ?? 'unknown error'} (errno ${n})`
}

/** This thread's own namespace: an fd kept open for going back, and its identity. */
let own: { fd: number; link: string } | undefined
function ownNamespace(): { fd: number; link: string } {
  own ??= { fd: openSync('/proc/thread-self/ns/net', 'r'), link: currentNetns() }
  return own
}

/** The calling thread's network namespace, as `net:[inode]` (readlink of /proc/thread-self/ns/net). */
export function currentNetns(): string {
  return readlinkSync('/proc/thread-self/ns/net')
}

function validName(name: string): void {
  if (!/^[A-Za-z0-9_.-]{1,200}$/.test(name) || name === '.' || name === '..') {
    throw new InvalidArgument(`'${name}' is not a network namespace name (1-200 of [A-Za-z0-9_.-])`, { field: 'netns' })
  }
}

/** A `struct sockaddr_in` for address:port. */
function sockaddrIn(address: string, port: number): Buffer {
  const sa = Buffer.alloc(16)
  if (endianness() === 'LE') sa.writeUInt16LE(AF_INET, 0)
  else sa.writeUInt16BE(AF_INET, 0)
  sa.writeUInt16BE(port, 2)
  address.split('.').forEach((octet, i) => sa.writeUInt8(Number(octet), 4 + i))
  return sa
}

function int(value: number): Buffer {
  const b = Buffer.alloc(4)
  if (endianness() === 'LE') b.writeInt32LE(value)
  else b.writeInt32BE(value)
  return b
}

export interface NamespaceListen {
  /** The namespace's name under /run/netns. */
  netns: string
  /** IPv4 address to bind; it need not be on an interface yet (IP_FREEBIND). */
  address: string
  port: number
  /** @default 128 */
  backlog?: number
}

/**
 * A listening, non-blocking, close-on-exec TCP socket bound to address:port
 * inside the namespace, for `server.listen({ fd })`. The calling thread is
 * back in its own namespace when this returns or throws.
 * @throws NotFound when the namespace does not exist.
 * @throws FailedPrecondition naming the namespace and errno when entering it or a socket call fails.
 */
export function listenInNamespace(o: NamespaceListen): number {
  validName(o.netns)
  if (!isIPv4(o.address)) throw new InvalidArgument(`listen address '${o.address}' is not an IPv4 address`, { field: 'address' })
  if (!Number.isInteger(o.port) || o.port < 1 || o.port > 65535) throw new InvalidArgument(`listen port ${o.port} is not in 1-65535`, { field: 'port' })
  const home = ownNamespace()
  const libc = c()
  let target: number
  try {
    target = openSync(`/run/netns/${o.netns}`, 'r')
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ENOENT') throw new NotFound(`network namespace '${o.netns}' does not exist (no /run/netns/${o.netns})`, { cause: err })
    throw new FailedPrecondition(`cannot open network namespace '${o.netns}': ${(err as Error).message}`, { cause: err })
  }
  let fd = -1
  let entered = false
  try {
    if (libc.setns(target, CLONE_NEWNET) !== 0) throw new FailedPrecondition(`cannot enter network namespace '${o.netns}': setns: ${lastError()}`)
    entered = true
    const step = (what: string, rc: number) => {
      if (rc < 0) throw new FailedPrecondition(`cannot listen on ${o.address}:${o.port} in network namespace '${o.netns}': ${what}: ${lastError()}`)
    }
    fd = libc.socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)
    step('socket', fd)
    step('setsockopt SO_REUSEADDR', libc.setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, int(1), 4))
    step('setsockopt IP_FREEBIND', libc.setsockopt(fd, IPPROTO_IP, IP_FREEBIND, int(1), 4))
    step('bind', libc.bind(fd, sockaddrIn(o.address, o.port), 16))
    step('listen', libc.listen(fd, o.backlog ?? 128))
    const ok = fd
    fd = -1
    return ok
  } finally {
    if (fd >= 0) libc.close(fd)
    if (entered) goHome(home, o.netns)
    closeSync(target)
  }
}

/**
 * Back to the thread's own namespace. This cannot fail with an fd of it held
 * open; if it ever did, every socket the agent opened afterwards (NATS,
 * gRPC, other namespaces' listeners) would be a guest network's, so the
 * process stops at once rather than run in the wrong place.
 */
function goHome(home: { fd: number; link: string }, from: string): void {
  const rc = c().setns(home.fd, CLONE_NEWNET)
  const err = rc !== 0 ? lastError() : ''
  const now = currentNetns()
  if (rc !== 0 || now !== home.link) {
    process.stderr.write(`strato-agent: FATAL: could not return from network namespace '${from}' to the agent's own (${home.link}; now ${now}${err ? `, setns: ${err}` : ''}); stopping\n`)
    process.abort()
  }
}

/**
 * Integration: listening sockets made inside a network namespace
 * (agent/net/netns.ts), in one this test makes (and deletes): the socket is
 * the namespace's, the thread is back in its own namespace after success and
 * after every failure, and failures name the namespace and the errno.
 * Needs root.
 */
import { execFile } from 'node:child_process'
import { closeSync } from 'node:fs'
import net from 'node:net'
import { promisify } from 'node:util'
import t from 'tap'
import { currentNetns, listenInNamespace } from '../../../../agent/net/netns.js'
import { FailedPrecondition, InvalidArgument, NotFound } from '../../../../proto/errors.js'

const run = promisify(execFile)
const ns = `netns-${process.pid.toString(16)}`

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root for network namespaces')
} else {
  await run('ip', ['netns', 'add', ns])
  t.teardown(() => run('ip', ['netns', 'delete', ns]).then(() => undefined))
  await run('ip', ['-n', ns, 'link', 'set', 'lo', 'up'])
  const home = currentNetns()

  t.test("a socket made in the namespace answers there, and only there; the thread comes home", async (t) => {
    // Bound before the address exists (IP_FREEBIND), as the DHCP side may add it later.
    const fd = listenInNamespace({ netns: ns, address: '10.254.0.1', port: 8080 })
    t.equal(currentNetns(), home, 'back in its own namespace')
    await run('ip', ['-n', ns, 'addr', 'add', '10.254.0.1/32', 'dev', 'lo'])
    const server = net.createServer((s) => s.end('inside\n'))
    await new Promise<void>((resolve) => server.listen({ fd }, resolve))
    t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())))
    const { stdout } = await run('ip', ['netns', 'exec', ns, 'busybox', 'nc', '10.254.0.1', '8080'])
    t.equal(stdout, 'inside\n', 'a client in the namespace reaches it')
    t.notMatch((await run('ss', ['-Htln', 'sport', '= :8080'])).stdout, /10\.254\.0\.1/, 'the own namespace has no such listener')
    t.match((await run('ip', ['netns', 'exec', ns, 'ss', '-Htln', 'sport', '= :8080'])).stdout, /10\.254\.0\.1:8080/, 'the namespace has it')
  })

  t.test('failures name the namespace and errno, and leave the thread at home', async (t) => {
    const fd = listenInNamespace({ netns: ns, address: '10.254.0.2', port: 8081 })
    t.teardown(() => closeSync(fd))
    const busy = (() => {
      try {
        return listenInNamespace({ netns: ns, address: '10.254.0.2', port: 8081 })
      } catch (e) {
        return e
      }
    })()
    t.ok(busy instanceof FailedPrecondition, 'the same address and port twice: FailedPrecondition')
    t.match((busy as Error).message, `cannot listen on 10.254.0.2:8081 in network namespace '${ns}': bind: EADDRINUSE (errno 98)`)
    t.equal(currentNetns(), home, 'home after a failure inside the namespace')
    t.throws(() => listenInNamespace({ netns: `${ns}-missing`, address: '10.254.0.3', port: 80 }), NotFound)
    t.throws(() => listenInNamespace({ netns: '../etc', address: '10.254.0.3', port: 80 }), InvalidArgument)
    t.throws(() => listenInNamespace({ netns: ns, address: 'fe80::1', port: 80 }), InvalidArgument)
    t.throws(() => listenInNamespace({ netns: ns, address: '10.254.0.3', port: 0 }), InvalidArgument)
    t.equal(currentNetns(), home)
  })
}

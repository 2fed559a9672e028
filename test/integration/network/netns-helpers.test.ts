/**
 * The namespace helpers the L3 tests stand on: a banner listener must outlive
 * a peer that resets its connection. The L3 tests probe with short timeouts; on
 * a loaded machine a probe gives up after the listener accepted, its exit
 * resets the connection, and a listener without an 'error' handler died of
 * that ECONNRESET — every later probe of that port then failed, which looked
 * like a floating IP that stopped answering (router.test.ts, CI stop 28).
 * Needs root.
 */
import t from 'tap'
import { bannerListener, connectFrom, inNamespace, ip } from '../../helpers/netns.js'

const ns = `nsh-${process.pid.toString(16)}`

if (process.getuid?.() !== 0) t.plan(0, 'needs root')
else {
  t.before(async () => {
    await ip('netns', 'add', ns)
    await ip('-n', ns, 'link', 'set', 'lo', 'up')
  })
  t.teardown(() => ip('netns', 'delete', ns).catch(() => undefined))

  t.test('a banner listener answers again after a peer reset its connection', async (t) => {
    const listener = await bannerListener(ns, 2222, 'hello')
    t.teardown(() => void listener.kill('SIGKILL'))
    t.equal(await connectFrom(ns, '127.0.0.1', 2222), 'hello 127.0.0.1', 'it answers with its banner and the peer address')
    // A peer that resets once connected (as a probe's process exiting with the banner unread does).
    await inNamespace(ns, process.execPath, ['-e', "const s = require('net').connect(2222, '127.0.0.1', () => s.resetAndDestroy())"])
    t.equal(await connectFrom(ns, '127.0.0.1', 2222, { timeoutMs: 10_000 }), 'hello 127.0.0.1', 'it still answers')
    t.equal(listener.exitCode, null, 'the listener is still running')
  })
}

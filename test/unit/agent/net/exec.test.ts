// agent/net/exec.ts: the one way agent/net runs ip, iptables and dnsmasq, and its one error.
import t from 'tap'
import { Internal } from '../../../../proto/errors.js'
import { ip, run, succeeds } from '../../../../agent/net/exec.js'

t.test('stdout on success; stdin when given', async (t) => {
  t.equal(await run('sh', ['-c', 'echo out; echo noise >&2']), 'out\n')
  t.equal(await run('cat', [], { input: '*filter\nCOMMIT\n' }), '*filter\nCOMMIT\n')
  t.equal(await succeeds('true', []), true)
  t.equal(await succeeds('false', []), false)
})

t.test('a failure names the command line, the exit code and stderr', async (t) => {
  await t.rejects(run('sh', ['-c', 'echo "Device \\"x\\" does not exist." >&2; exit 3']), {
    name: 'Internal',
    message: 'sh -c echo "Device \\"x\\" does not exist." >&2; exit 3 failed (exit 3): Device "x" does not exist.',
  })
  await t.rejects(run('sh', ['-c', 'exit 1'], { what: 'apply the security group rules' }), { message: /^cannot apply the security group rules: sh -c exit 1 failed \(exit 1\): no message$/ })
  await t.rejects(run('sh', ['-c', 'kill -TERM $$']), { message: /failed \(killed by SIGTERM\)/ })
  await t.rejects(run('sleep', ['5'], { timeoutMs: 100 }), { message: /^sleep 5 failed \(timed out after 100 ms\)/ })
  const missing = await run('strato-no-such-tool', ['a']).catch((e: unknown) => e)
  t.type(missing, Internal)
  t.match((missing as Error).message, /^strato-no-such-tool a failed \(could not start: spawn strato-no-such-tool ENOENT\)/)
  t.equal(((missing as Error).cause as NodeJS.ErrnoException).code, 'ENOENT', 'the spawn error is the cause')
  await t.rejects(run('sh', ['-c', 'exit 2'], { input: 'x'.repeat(1 << 20) }), { message: /failed \(exit 2\)/ }, 'input a command did not read: its exit, no EPIPE')
})

t.test('a namespace runs it through ip netns exec, and says so', async (t) => {
  await t.rejects(run('ip', ['link', 'show'], { netns: 'strato-no-such-ns' }), { name: 'Internal', message: /^ip netns exec strato-no-such-ns ip link show failed \(exit \d+\): .+/ })
  await t.rejects(ip('-n', 'strato-no-such-ns', 'link', 'show'), { name: 'Internal', message: /^ip -n strato-no-such-ns link show failed \(exit \d+\): .+/ })
})

t.test('a daemon: done when the command exits, whatever keeps its stderr open', async (t) => {
  const started = Date.now()
  await run('sh', ['-c', 'sleep 20 & exit 0'], { daemon: true })
  t.ok(Date.now() - started < 15_000, `did not wait for the background child (${Date.now() - started} ms; it lives 20 s)`)
  await t.rejects(run('sh', ['-c', 'echo bad config >&2; exit 1'], { daemon: true, what: 'start dnsmasq in qdhcp-x' }), { message: /^cannot start dnsmasq in qdhcp-x: sh -c .* failed \(exit 1\): bad config$/ })
})

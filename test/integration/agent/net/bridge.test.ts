/**
 * Integration: bridge.ts against the real kernel, inside a network namespace
 * this test makes (and deletes). Needs root and iproute2.
 */
import t from 'tap'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { bridgeExists, bridgePorts, deleteBridge, ensureBridge } from '../../../../agent/net/bridge.js'
import { FailedPrecondition, InvalidArgument } from '../../../../proto/errors.js'

const run = promisify(execFile)
const netns = `strato-br-${process.pid}`

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root for network namespaces')
} else {
  await run('ip', ['netns', 'add', netns])
  t.teardown(() => run('ip', ['netns', 'delete', netns]).then(() => undefined))
  const inNs = { netns }

  t.test('ensureBridge creates a bridge once, up, and is idempotent', async (t) => {
    t.equal(await bridgeExists('br-test', inNs), false, 'absent at first')
    t.same(await ensureBridge('br-test', inNs), { created: true }, 'created')
    const [link] = JSON.parse((await run('ip', ['-n', netns, '-j', '-d', 'link', 'show', 'dev', 'br-test'])).stdout) as {
      flags: string[]
      linkinfo: { info_kind: string }
    }[]
    t.equal(link?.linkinfo.info_kind, 'bridge', 'ip link says bridge')
    t.ok(link?.flags.includes('UP'), 'and it is up')
    t.same(await ensureBridge('br-test', inNs), { created: false }, 'second call finds it')
    const results = await Promise.all([ensureBridge('br-race', inNs), ensureBridge('br-race', inNs)])
    t.equal(results.filter((r) => r.created).length, 1, 'concurrent callers: exactly one creates it')
    t.equal(await bridgeExists('br-race', inNs), true)
  })

  t.test('a downed bridge is brought up', async (t) => {
    await ensureBridge('br-down', inNs)
    await run('ip', ['-n', netns, 'link', 'set', 'dev', 'br-down', 'down'])
    await ensureBridge('br-down', inNs)
    const out = (await run('ip', ['-n', netns, '-j', 'link', 'show', 'dev', 'br-down'])).stdout
    t.ok((JSON.parse(out) as { flags: string[] }[])[0]?.flags.includes('UP'), 'up again')
  })

  t.test('ports of a bridge are listed', async (t) => {
    await ensureBridge('br-ports', inNs)
    await run('ip', ['-n', netns, 'link', 'add', 'veth-a', 'type', 'veth', 'peer', 'name', 'veth-b'])
    await run('ip', ['-n', netns, 'link', 'set', 'veth-a', 'master', 'br-ports'])
    t.same(await bridgePorts('br-ports', inNs), ['veth-a'])
  })

  t.test('a non-bridge interface of that name is refused, never touched', async (t) => {
    await run('ip', ['-n', netns, 'link', 'add', 'plain0', 'type', 'veth', 'peer', 'name', 'plain0-peer'])
    const error = await ensureBridge('plain0', inNs).catch((e: unknown) => e)
    t.ok(error instanceof FailedPrecondition, 'ensureBridge: FailedPrecondition')
    const del = await deleteBridge('plain0', inNs).catch((e: unknown) => e)
    t.ok(del instanceof FailedPrecondition, 'deleteBridge: FailedPrecondition')
    t.match((await run('ip', ['-n', netns, 'link', 'show', 'dev', 'plain0'])).stdout, /plain0/, 'still there')
  })

  t.test('bad names are refused before ip runs', async (t) => {
    for (const name of ['', 'a-name-too-long-for-linux', 'br 0', 'br/0']) {
      const error = await ensureBridge(name, inNs).catch((e: unknown) => e)
      t.ok(error instanceof InvalidArgument, `${JSON.stringify(name)}: InvalidArgument`)
    }
  })

  t.test('deleteBridge removes it; a missing one is fine', async (t) => {
    await ensureBridge('br-del', inNs)
    await deleteBridge('br-del', inNs)
    t.equal(await bridgeExists('br-del', inNs), false, 'gone')
    await deleteBridge('br-del', inNs)
    t.pass('deleting again succeeds')
  })
}

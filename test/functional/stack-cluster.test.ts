// `npm run start:cluster` end to end, as a user tries it: PostgreSQL, 3 NATS nodes and 2
// controllers come up with the local agent; `strato host list` and `image list` answer the
// same through either controller (one database, one image store); the streams have 3 replicas
// across the NATS nodes; Ctrl-C stops everything — no nats-server or PostgreSQL of the stack left.
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import t from 'tap'
import { connect, credsAuthenticator } from '@nats-io/transport-node'
import { jetstreamManager } from '@nats-io/jetstream'
import { parseOpenrc } from '../helpers/controller.js'
import { ctrlC, stackLauncher } from '../helpers/stack.js'
import { CAST_STREAM, EVENT_STREAM } from '../../proto/subjects.js'

const root = path.resolve(import.meta.dirname, '../..')
const stacks = stackLauncher(t, 'stack-cluster')

/** `strato <args> -f json` with the environment of `openrc`, as a user who sourced it. */
function strato(openrc: string, ...args: string[]): unknown {
  const r = spawnSync(process.execPath, [path.join(root, 'dist/cli/strato.js'), ...args, '-f', 'json'], { env: { ...process.env, ...parseOpenrc(openrc) }, encoding: 'utf8', timeout: 60_000 })
  if (r.status !== 0) throw new Error(`strato ${args.join(' ')} (${openrc}) failed (${r.status}): ${r.stderr}`)
  return JSON.parse(r.stdout)
}

/** The stack's processes still running: anything whose command line names its home. */
const leftOver = (home: string) => spawnSync('pgrep', ['-af', home], { encoding: 'utf8' }).stdout.split('\n').filter((l) => /nats-server|postgres/.test(l))

t.test('npm run start:cluster: PostgreSQL, 3 NATS nodes, 2 controllers, the agent; both controllers answer; Ctrl-C stops all', async (t) => {
  const home = mkdtempSync(path.join(tmpdir(), 'strato-stack-cluster-'))
  t.teardown(() => rmSync(home, { recursive: true, force: true }))
  const s = await stacks.start(home, { cluster: true, timeoutMs: 180_000 })
  const out = s.output()
  for (const i of [0, 1]) t.match(out, `controller ${i + 1}: grpcs://127.0.0.1:${s.grpcPort + 2 * i}, REST https://127.0.0.1:${s.grpcPort + 2 * i + 1}/identity/v3`, `controller ${i + 1}'s addresses are printed`)
  t.match(out, `NATS: tls://127.0.0.1:${s.natsPort},tls://127.0.0.1:${s.natsPort + 1},tls://127.0.0.1:${s.natsPort + 2}`, 'the NATS URLs are printed')

  const openrcs = [path.join(home, 'admin-openrc'), path.join(home, 'admin-openrc-2')]
  t.equal(statSync(openrcs[1]!).mode & 0o777, 0o600, "the second controller's openrc is 0600")
  t.match(parseOpenrc(openrcs[1]!), { OS_AUTH_URL: `grpcs://127.0.0.1:${s.grpcPort + 2}`, OS_USERNAME: 'admin', OS_PASSWORD: parseOpenrc(openrcs[0]!).OS_PASSWORD }, 'it names the second controller, with the same admin')
  const hosts = openrcs.map((rc) => strato(rc, 'host', 'list') as Array<Record<string, string>>)
  for (const [i, h] of hosts.entries()) {
    // Without a host the stack says why (libvirtd, the agent's exit): show its output.
    if (!t.match(h, [{ 'Host Name': s.agentHost, Service: 'compute' }], `controller ${i + 1}: host list shows the local agent's host`)) t.comment(s.output())
  }
  const images = openrcs.map((rc) => (strato(rc, 'image', 'list') as Array<Record<string, string>>).map((x) => x.ID).sort())
  t.ok(images[0]!.length > 0, 'the demo images are registered')
  t.same(images[1], images[0], 'both controllers list the same images (one database)')
  t.same(strato(openrcs[1]!, 'server', 'list'), strato(openrcs[0]!, 'server', 'list'), 'and the same servers')

  // The bus: both streams with 3 replicas, one on each node.
  const auth = path.join(home, 'nats-cluster', 'auth')
  const nc = await connect({ servers: [0, 1, 2].map((i) => `tls://127.0.0.1:${s.natsPort + i}`), tls: { caFile: path.join(home, 'controller', 'tls', 'ca.pem') }, authenticator: credsAuthenticator(new Uint8Array(readFileSync(path.join(auth, 'controller.creds')))) })
  try {
    const jsm = await jetstreamManager(nc)
    for (const stream of [CAST_STREAM, EVENT_STREAM]) {
      const info = await jsm.streams.info(stream)
      t.equal(info.config.num_replicas, 3, `${stream} has 3 replicas`)
      t.same(new Set([info.cluster?.leader, ...(info.cluster?.replicas ?? []).map((r) => r.name)]), new Set(['n1', 'n2', 'n3']), `${stream}: one on each node`)
    }
  } finally {
    await nc.close()
  }
  t.ok(leftOver(home).length >= 4, 'the 3 nats-servers and PostgreSQL run from the home')

  t.ok(await ctrlC(s), 'Ctrl-C stops the stack cleanly')
  t.same(leftOver(home), [], 'no nats-server or PostgreSQL of the stack is left')
})

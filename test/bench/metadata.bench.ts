/**
 * npm run bench:metadata — what a metadata request costs a guest. A real
 * nats-server, controller and agent (fake virt driver, in this process), one
 * server with a key made through gRPC, and a network namespace made here for
 * its network (169.254.169.254 and the server's address on its loopback),
 * attached to the agent's metadata service. A client inside the namespace
 * (node through `ip netns exec`, from the server's address) times:
 *   cold   every request a cache miss (the cache is dropped before each):
 *          the conductor round trip over NATS and the controller's lookup;
 *          timed by the client (on a kept-alive connection, after a `/`
 *          that needs no lookup), and in the agent alone (`answer()`, no HTTP)
 *   warm   200 requests, a new TCP connection each (what cloud-init does)
 *   warm   200 requests on one keep-alive connection
 * Target (issue 14): ≤ 5 ms at p50. Needs root. Not a test: it prints figures.
 */
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { startCloud } from '../helpers/cloud.js'
import { call } from '../helpers/grpc.js'
import { fetchInNamespace, percentiles } from '../helpers/netns-http.js'
import { tenant } from '../functional/network/fixtures.js'
import type { CreateServerResponse } from '../../proto/gen/strato/compute/v1/servers.js'

const run = promisify(execFile)
const N = Number(process.env.BENCH_REQUESTS ?? 200)
const COLD = Number(process.env.BENCH_COLD ?? 50)

if (process.getuid?.() !== 0) {
  console.log('bench:metadata skipped: needs root (network namespaces)')
  process.exit(0)
}
const ns = `metabench-${process.pid.toString(16)}`
await run('ip', ['netns', 'add', ns])
const cloud = await startCloud({ hosts: ['node1'] })
try {
  await run('ip', ['-n', ns, 'link', 'set', 'lo', 'up'])
  const demo = await tenant(cloud.s, 'demo')
  await call(cloud.c.keypairs, 'createKeypair', { name: 'k', publicKey: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl bench@host' }, demo.token)
  const r = await call<CreateServerResponse>(cloud.c.servers, 'createServer', { name: 'bench', flavorRef: 'm1.nano', imageRef: 'cirros', networks: [{ uuid: cloud.network.id }], keyName: 'k' }, demo.token)
  const server = await cloud.waitFor(r.servers[0]!.id, (s) => s.status === 'ACTIVE', demo.token)
  const ip = server.addresses[0]!.addr
  for (const a of ['169.254.169.254', ip]) await run('ip', ['-n', ns, 'addr', 'add', `${a}/32`, 'dev', 'lo'])
  const metadata = cloud.agents[0]!.agent.metadata
  await metadata.attach(cloud.network.id, ns)

  const path = '/openstack/latest/meta_data.json'
  const cold: number[] = []
  for (let i = 0; i < COLD; i++) {
    metadata.invalidate()
    // '/' first (answered without a lookup) warms the client and its connection up; then the miss.
    const [, g] = await fetchInNamespace(ns, ip, ['/', path], { keepAlive: true })
    if (g!.status !== 200) throw new Error(`cold request: HTTP ${g!.status}`)
    cold.push(g!.ms)
  }
  const miss: number[] = []
  for (let i = 0; i < COLD; i++) {
    metadata.invalidate()
    const t0 = process.hrtime.bigint()
    const a = await metadata.answer(cloud.network.id, ip, 'GET', path)
    miss.push(Number(process.hrtime.bigint() - t0) / 1e6)
    if (a.status !== 200) throw new Error(`cold answer: HTTP ${a.status}`)
  }
  const paths = Array.from({ length: N }, (_, i) => (i % 2 ? path : '/latest/meta-data/public-keys/0/openssh-key'))
  const fresh = await fetchInNamespace(ns, ip, paths)
  const kept = await fetchInNamespace(ns, ip, paths, { keepAlive: true })
  if ([...fresh, ...kept].some((g) => g.status !== 200)) throw new Error('a warm request failed')
  console.log(`metadata service, client in the namespace (${new Date().toISOString()}):`)
  console.log(`  cold, from the client:                    ${percentiles(cold)}`)
  console.log(`  cold, in the agent (answer(), no HTTP):   ${percentiles(miss)}`)
  console.log(`  warm, new TCP connection per request:     ${percentiles(fresh.map((g) => g.ms))}`)
  console.log(`  warm, one keep-alive connection:          ${percentiles(kept.map((g) => g.ms))}`)
  console.log('  target (issue 14): p50 ≤ 5 ms')
} finally {
  await cloud.close()
  await run('ip', ['netns', 'delete', ns]).catch(() => {})
}

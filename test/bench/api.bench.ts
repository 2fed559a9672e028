/**
 * npm run bench:api — authenticated REST GETs per second, and the gRPC
 * figure beside them (issue 18). A real nats-server, the controller and two
 * agents on the fake virt driver in this process (the virt driver plays no
 * part in a GET, so KVM or TCG changes nothing; the bench says which), 100
 * ACTIVE servers on a network of their own. Then, from a SEPARATE load
 * process each time (test/bench/http_load.ts: N keep-alive connections;
 * test/bench/rpc_load.py, Debian's grpcio, N calls in flight), as the admin
 * of the servers' project with a token in X-Auth-Token / x-auth-token:
 *
 *   GET /compute/v2.1/servers/detail   (100 servers)  vs  Servers/ListServers
 *   GET /network/v2.0/networks                         vs  Networks/ListNetworks
 *
 * Each figure is the median of BENCH_RUNS (default 5) runs of BENCH_SECONDS
 * (default 5) with the spread (min–max); BENCH_CONNECTIONS (default 16) sets
 * both clients' concurrency. The listener is plaintext loopback (the
 * test controller's; `npm start` adds TLS on both APIs alike).
 * Beside each figure, this process's CPU time per answer (controller and
 * idle agents): the cost of an answer, which a busy shared machine changes
 * less than the rate. BENCH_CPU_PROF_DIR writes a V8 CPU profile of the
 * controller per figure.
 * Target (issue 18): ≥ 3,000 GETs/s on 2 cores. Not a test.
 */
import { execFile } from 'node:child_process'
import { existsSync, mkdirSync, writeFileSync } from 'node:fs'
import inspector from 'node:inspector'
import { loadavg } from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import { startCloud } from '../helpers/cloud.js'
import { call, client } from '../helpers/grpc.js'
import { QuotasClient } from '../../proto/gen/strato/compute/v1/compute.js'
import type { CreateServerResponse, ListServersResponse } from '../../proto/gen/strato/compute/v1/servers.js'
import type { Network, Subnet } from '../../proto/gen/strato/network/v1/network.js'
import { eventually } from '../helpers/agents.js'

const run = promisify(execFile)
const SERVERS = Number(process.env.BENCH_SERVERS ?? 100)
const RUNS = Number(process.env.BENCH_RUNS ?? 5)
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5)
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 16)
const PROF = process.env.BENCH_CPU_PROF_DIR
const fmt = (n: number) => Math.round(n).toLocaleString('en-US')

const cloud = await startCloud({
  controller: { hosts: { heartbeatIntervalMs: 2_000, missedHeartbeats: 10 } },
  agent: { fake: { vcpus: 128, memoryMiB: 131_072 }, heartbeatIntervalMs: 2_000, powerSyncIntervalMs: 30_000 },
})
const session = new inspector.Session()
try {
  const { s, c } = cloud
  const token = s.adminToken
  const quotas = client(QuotasClient, s.address)
  const projectId = (await s.login(s.openrc.OS_USERNAME!, s.openrc.OS_PASSWORD!, { project: s.openrc.OS_PROJECT_NAME! })).body!.project!.id
  await call(quotas, 'updateQuota', { projectId, limits: { instances: SERVERS * 2, cores: SERVERS * 2, ram: SERVERS * 128, ports: SERVERS * 2 } }, token)
  quotas.close()
  const net = await call<Network>(c.networks, 'createNetwork', { name: 'bench' }, token)
  await call<Subnet>(c.subnets, 'createSubnet', { name: 'bench', networkId: net.id, cidr: '10.77.0.0/22', gatewayIp: '10.77.0.1' }, token)
  const made = await call<CreateServerResponse>(c.servers, 'createServer', { name: 'bench', flavorRef: cloud.flavor.id, imageRef: cloud.image.id, networks: [{ uuid: net.id }], minCount: SERVERS, maxCount: SERVERS }, token)
  const ids = new Set(made.servers.map((x) => x.id))
  await eventually(async () => {
    const l = await call<ListServersResponse>(c.servers, 'listServers', {}, token)
    return l.servers.filter((x) => ids.has(x.id) && x.status === 'ACTIVE').length === SERVERS || undefined
  }, 120_000, `${SERVERS} servers ACTIVE`)

  const rest = s.controller.rest!.origin
  const listed = (await (await fetch(`${rest}/compute/v2.1/servers/detail`, { headers: { 'x-auth-token': token } })).json()) as { servers: unknown[] }
  if (listed.servers.length !== SERVERS) throw new Error(`servers/detail lists ${listed.servers.length} servers, not ${SERVERS}`)

  const httpLoad = async (p: string) => {
    const { stdout } = await run(process.execPath, ['--import', 'tsx', path.join(import.meta.dirname, 'http_load.ts'), `${rest}${p}`, token, String(SECONDS), String(CONNECTIONS)], { maxBuffer: 1 << 20 })
    const r = JSON.parse(stdout) as { rps: number; bytesPerAnswer: number }
    return { rps: r.rps, bytes: r.bytesPerAnswer }
  }
  const grpcLoad = async (method: string) => {
    const { stdout } = await run('/usr/bin/python3', [path.join(import.meta.dirname, 'rpc_load.py'), s.address, token, String(SECONDS), String(CONNECTIONS), '', method, ''], { maxBuffer: 1 << 20 })
    return { rps: Number(stdout.trim()), bytes: 0 }
  }

  if (PROF) {
    mkdirSync(PROF, { recursive: true })
    session.connect()
  }
  const post = (m: string, p?: object) => new Promise<unknown>((resolve, reject) => session.post(m, p ?? {}, (err, r) => (err ? reject(err) : resolve(r))))

  const measure = async (label: string, once: () => Promise<{ rps: number; bytes: number }>) => {
    await once() // warm-up: JIT, caches, connections
    if (PROF) {
      await post('Profiler.enable')
      await post('Profiler.start')
    }
    const rates: number[] = []
    let bytes = 0
    // This process's CPU (the controller's, the agents' idle share) per answer: what a figure costs, whatever else the machine runs.
    const cpu = process.cpuUsage()
    for (let i = 0; i < RUNS; i++) {
      const r = await once()
      rates.push(r.rps)
      bytes = r.bytes
    }
    const { user, system } = process.cpuUsage(cpu)
    const cpuPerAnswer = (user + system) / rates.reduce((n, rps) => n + rps * SECONDS, 0)
    if (PROF) {
      const { profile } = (await post('Profiler.stop')) as { profile: unknown }
      writeFileSync(path.join(PROF, `${label.replace(/[^\w.-]+/g, '_')}.cpuprofile`), JSON.stringify(profile))
    }
    rates.sort((a, b) => a - b)
    const median = rates[Math.floor(rates.length / 2)]!
    console.log(`${label.padEnd(52)} ${fmt(median).padStart(7)} /s  (min ${fmt(rates[0]!)}, max ${fmt(rates[rates.length - 1]!)}; ${fmt(cpuPerAnswer)} µs CPU an answer${bytes ? `; ${fmt(bytes)} bytes` : ''})`)
    return median
  }

  const virt = existsSync('/dev/kvm') ? 'KVM' : 'TCG (no /dev/kvm)'
  console.log(`bench:api — ${SERVERS} servers, fake virt driver (this host would boot guests with ${virt}; a GET does not touch the hypervisor)`)
  console.log(`${RUNS} runs of ${SECONDS} s each, ${CONNECTIONS} connections / calls in flight, separate load processes; load average before: ${loadavg().map((l) => l.toFixed(2)).join(' ')}`)
  await measure(`REST GET /compute/v2.1/servers/detail (${SERVERS})`, () => httpLoad('/compute/v2.1/servers/detail'))
  await measure(`gRPC Servers/ListServers (${SERVERS})`, () => grpcLoad('/strato.compute.v1.Servers/ListServers'))
  await measure('REST GET /network/v2.0/networks', () => httpLoad('/network/v2.0/networks'))
  await measure('gRPC Networks/ListNetworks', () => grpcLoad('/strato.network.v1.Networks/ListNetworks'))
  console.log(`load average after: ${loadavg().map((l) => l.toFixed(2)).join(' ')}`)
} finally {
  if (PROF) session.disconnect()
  await cloud.close()
}

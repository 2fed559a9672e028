// A second host joins the cloud with a join token (kubeadm-style), from a network namespace this test
// makes: its own address, reaching the controller (gRPC over TLS) and NATS (TLS, credentials) only over a
// veth. The controller and nats-server listen on the veth's host-side address only. The joining agent
// (fake driver, a separate process) pins the CA by the hash printed with the token, gets bus credentials
// for its own key, announces itself, waits to be mapped, and then builds a server — downloading its image
// over TLS with the build's image-read token. Used, forged, expired tokens and a wrong CA hash are
// refused, changing nothing; the joined host's credentials cannot act for the first host.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import t from 'tap'
import { connect, credsAuthenticator } from '@nats-io/transport-node'
import { startController, type TestController } from '../../helpers/controller.js'
import { startNats, type NatsServer } from '../../helpers/nats.js'
import { startAgent, eventually, type TestAgent } from '../../helpers/agents.js'
import { built } from '../../helpers/build.js'
import { call, failure, status } from '../../helpers/grpc.js'
import { cloudClients, provision, serverWaiter, type CloudClients, type Provisioned } from '../../helpers/cloud.js'
import { freshHome, openrcEnv, removeHomes, strato } from '../../functional/cli/cli.js'
import type { CreateServerResponse } from '../../../proto/gen/strato/compute/v1/servers.js'
import type { ListHostsResponse } from '../../../proto/gen/strato/compute/v1/hosts.js'
import { ConductorReply, ConductorRequest } from '../../../proto/gen/strato/agent/v1/agent.js'
import { agentInboxPrefix, conductorSubject } from '../../../proto/subjects.js'
import { errorFromHeaders } from '../../../proto/nats-errors.js'

const root = path.resolve(import.meta.dirname, '../../..')
const tag = `${process.pid % 10000}`
const ns = `sjoin${tag}`
const vethHost = `vjh${tag}`
const vethNs = `vjn${tag}`
const octet = 100 + (process.pid % 100)
const hostAddr = `10.254.${octet}.1`
const nsAddr = `10.254.${octet}.2`

const sh = (cmd: string, ...args: string[]) => {
  const r = spawnSync(cmd, args, { encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr || r.error?.message}`)
  return r.stdout
}

let nats: NatsServer
let s: TestController
let c: CloudClients
let node1: TestAgent
let p: Provisioned
let env: Record<string, string>
const dataDir = mkdtempSync(path.join(tmpdir(), 'strato-ctl-join-'))
const joinedDir = mkdtempSync(path.join(tmpdir(), 'strato-joined-'))
const procs: ChildProcess[] = []

/** `strato-agent join …` inside the namespace (the bin: the agent's build in dist/); resolves with its exit code and output (it keeps running when it joins and starts). */
function agentInNs(args: string[], o: { untilExit?: boolean; stateDir?: string } = {}): { proc: ChildProcess; output: () => string; exited: Promise<number | null> } {
  let out = ''
  const proc = spawn('ip', ['netns', 'exec', ns, process.execPath, built('agent/main.ts'), ...args], {
    cwd: root,
    env: { ...process.env, STRATO_AGENT_DRIVER: 'fake', STRATO_AGENT_MY_IP: nsAddr, STRATO_AGENT_DISK_GB: '100', STRATO_LOG_LEVEL: process.env.STRATO_TEST_LOG ?? 'info', STRATO_AGENT_STATE_DIR: o.stateDir ?? joinedDir },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  procs.push(proc)
  proc.stdout!.on('data', (d) => (out += d))
  proc.stderr!.on('data', (d) => (out += d))
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)))
  return { proc, output: () => out, exited }
}

async function joinToken(extra = ''): Promise<Record<string, string>> {
  const r = await strato(`host join-token create -f json ${extra}`.trim(), env)
  if (r.code !== 0) throw new Error(`host join-token create: ${r.stderr}`)
  return JSON.parse(r.stdout) as Record<string, string>
}

const joinArgs = (tok: Record<string, string>, host: string, hash = tok.ca_cert_hash!) => ['join', '--controller', `grpcs://${tok.join_command!.match(/--controller grpcs:\/\/(\S+)/)![1]}`, '--token', tok.token!, '--ca-cert-hash', hash, '--host', host]

t.before(async () => {
  sh('ip', 'netns', 'add', ns)
  sh('ip', 'link', 'add', vethHost, 'type', 'veth', 'peer', 'name', vethNs)
  sh('ip', 'link', 'set', vethNs, 'netns', ns)
  sh('ip', 'addr', 'add', `${hostAddr}/30`, 'dev', vethHost)
  sh('ip', 'link', 'set', vethHost, 'up')
  sh('ip', 'netns', 'exec', ns, 'ip', 'addr', 'add', `${nsAddr}/30`, 'dev', vethNs)
  sh('ip', 'netns', 'exec', ns, 'ip', 'link', 'set', vethNs, 'up')
  sh('ip', 'netns', 'exec', ns, 'ip', 'link', 'set', 'lo', 'up')
  // NATS and the controller on the veth's address only; one CA (the controller's) for both.
  nats = await startNats({ host: hostAddr, tlsCaDir: path.join(dataDir, 'tls') })
  s = await startController({
    natsUrl: nats.url, natsCaFile: nats.caFile!, natsOperatorDir: nats.operator!.dir,
    tls: { mode: 'on' }, grpc: { host: hostAddr, port: 0, publicAddress: null },
    hosts: { heartbeatIntervalMs: 500, missedHeartbeats: 6 },
  }, dataDir)
  c = cloudClients(s.address, s.credentials)
  node1 = await startAgent(nats.url, 'node1', { caFile: nats.caFile!, myIp: hostAddr, heartbeatIntervalMs: 500 })
  await eventually(async () => (await call<ListHostsResponse>(c.hosts, 'listHosts', {}, s.adminToken)).hosts.length === 1, 10_000, 'node1 to announce')
  await call(c.hosts, 'discoverHosts', {}, s.adminToken)
  p = await provision(c, s.adminToken)
  env = openrcEnv(s.openrc, freshHome())
})

t.teardown(async () => {
  for (const proc of procs) if (proc.exitCode === null) proc.kill('SIGTERM')
  await Promise.all(procs.map((proc) => (proc.exitCode === null ? new Promise((r) => proc.once('exit', r)) : undefined)))
  await node1?.stop()
  await s?.close()
  await nats?.stop()
  spawnSync('ip', ['link', 'del', vethHost])
  spawnSync('ip', ['netns', 'del', ns])
  rmSync(dataDir, { recursive: true, force: true })
  rmSync(joinedDir, { recursive: true, force: true })
  removeHomes()
})

t.test('the namespace reaches the controller only over the veth', async (t) => {
  t.equal(spawnSync('ip', ['netns', 'exec', ns, 'ip', '-4', 'route', 'show', 'default'], { encoding: 'utf8' }).stdout.trim(), '', 'no default route: nothing but the veth')
  t.match(s.address, new RegExp(`^${hostAddr.replaceAll('.', '\\.')}:\\d+$`))
})

t.test('a bad token or a wrong CA hash is refused, and nothing is written or registered', async (t) => {
  const tok = await joinToken()
  const [id] = tok.token!.split('.')
  const stateDir = mkdtempSync(path.join(tmpdir(), 'strato-refused-'))
  t.teardown(() => rmSync(stateDir, { recursive: true, force: true }))
  const forged = agentInNs(['join', ...joinArgs(tok, 'node-forged').slice(1).map((a) => (a === tok.token ? `${id}.aaaaaaaaaaaaaaaa` : a))], { stateDir })
  t.equal(await forged.exited, 1, `forged token: exit 1 (${forged.output().slice(-1500)})`)
  t.match(forged.output(), /join token \w+ is not valid: unknown token or wrong secret/)
  const wrongCa = agentInNs(joinArgs(tok, 'node-wrong-ca', `sha256:${'0'.repeat(64)}`), { stateDir })
  t.equal(await wrongCa.exited, 1, 'wrong CA hash: exit 1')
  t.match(wrongCa.output(), /presents no CA with public key hash sha256:0{64}/)
  const short = await joinToken('--ttl 1')
  await new Promise((r) => setTimeout(r, 1_200))
  const expired = agentInNs(joinArgs(short, 'node-late'), { stateDir })
  t.equal(await expired.exited, 1)
  t.match(expired.output(), /expired at/)
  t.notOk(existsSync(path.join(stateDir, 'nats.creds')), 'no credentials written')
  const hosts = (await call<ListHostsResponse>(c.hosts, 'listHosts', {}, s.adminToken)).hosts.map((h) => h.host)
  t.same(hosts, ['node1'], 'no host registered')
  t.notOk((await strato('host join-token list -f value -c ID -c Status', env)).stdout.includes(`${id} used`), 'the token is still unused')
})

let joinedAgent: ReturnType<typeof agentInNs>
t.test('a host joins with a token, waits to be mapped, then builds a server', async (t) => {
  const tok = await joinToken('--description rack-2')
  t.match(tok.ca_cert_hash, /^sha256:[0-9a-f]{64}$/)
  joinedAgent = agentInNs(joinArgs(tok, 'node-joined'))
  await eventually(async () => (await call<ListHostsResponse>(c.hosts, 'listHosts', {}, s.adminToken)).hosts.find((h) => h.host === 'node-joined'), 60_000, `node-joined to announce (its output: ${joinedAgent.output().slice(-2000)})`)
  const joined = (await call<ListHostsResponse>(c.hosts, 'listHosts', {}, s.adminToken)).hosts.find((h) => h.host === 'node-joined')!
  t.equal(joined.mapped, false, 'it waits to be mapped')
  t.equal(joined.capabilities?.hostIp, nsAddr, 'its own address')
  for (const f of ['nats.creds', 'ca.pem', 'join.json']) t.equal(statSync(path.join(joinedDir, f)).mode & 0o777, 0o600, `${f} is 0600`)
  t.notMatch(readFileSync(path.join(joinedDir, 'join.json'), 'utf8'), /SU[A-Z0-9]{50}/, 'no seed in join.json')
  t.match((await strato('host join-token list -f value -c ID -c Status', env)).stdout, new RegExp(`^${tok.id} used by node-joined$`, 'm'))

  const used = agentInNs(joinArgs(tok, 'node-again'), { stateDir: mkdtempSync(path.join(tmpdir(), 'strato-again-')) })
  t.equal(await used.exited, 1, 'the used token: exit 1')
  t.match(used.output(), /already used/)

  const found = await strato('host discover --verbose', env)
  t.match(found.stdout, /Creating host mapping for compute host 'node-joined'/)
  await call(c.hosts, 'updateHost', { host: 'node1', enabled: false, disabledReason: 'the joined host builds this one' }, s.adminToken)
  const made = await call<CreateServerResponse>(c.servers, 'createServer', { name: 'on-joined', flavorRef: p.flavor.id, imageRef: p.image.id, networkMode: 'none' }, s.adminToken)
  const id = made.servers[0]!.id
  const up = await serverWaiter(c, s.adminToken)(id, (x) => x.status !== 'BUILD', s.adminToken, 60_000)
  t.equal(up.status, 'ACTIVE', `built on the joined host (${up.fault?.message ?? 'no fault'}; agent output: ${up.status === 'ACTIVE' ? '' : joinedAgent.output().slice(-2000)})`)
  t.equal(up.host, 'node-joined')
})

t.test("the joined host's credentials cannot act for the first host", async (t) => {
  const creds = credsAuthenticator(new Uint8Array(readFileSync(path.join(joinedDir, 'nats.creds'))))
  const nc = await connect({ servers: nats.url, tls: { caFile: nats.caFile! }, authenticator: creds, inboxPrefix: agentInboxPrefix('node-joined'), reconnect: false })
  t.teardown(() => nc.close())
  const sub = nc.subscribe('strato.agent.node1.rpc')
  t.match(String(await sub.closed), /Permissions Violation for Subscription to "strato.agent.node1.rpc"/, "node1's rpc")
  const asked = await nc.request(conductorSubject('node-joined'), ConductorRequest.encode({ hostInstances: { host: 'node1', also: [] } }).finish(), { timeout: 5_000 })
  const err = errorFromHeaders(asked.headers)
  t.equal(err?.name, 'PermissionDenied', "the conductor refuses a request naming node1")
  t.same(ConductorReply.decode(asked.data), {}, 'and answers nothing')
  const publishOther = nc.subscribe('strato.events.heartbeat.node1')
  t.match(String(await publishOther.closed), /Permissions Violation/, "nor listen to node1's events")
})

t.test('an unauthenticated caller cannot list or make join tokens', async (t) => {
  const e = await failure(call(c.hosts, 'createJoinToken', {}))
  t.equal(e.code, status.UNAUTHENTICATED)
})

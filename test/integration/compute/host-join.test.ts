// A second host joins the cloud with a join token (kubeadm-style), from a network namespace this test
// makes: its own address, reaching the controller (gRPC over TLS) and NATS (TLS, credentials) only over a
// veth. The controller and nats-server listen on the veth's host-side address only. The joining agent
// (fake driver, a separate process) pins the CA by the hash printed with the token, gets bus credentials
// for its own key, announces itself, waits to be mapped, and then builds a server — downloading its image
// over TLS with the build's image-read token. Used, forged, expired tokens and a wrong CA hash are
// refused, changing nothing; the joined host's credentials cannot act for the first host. The joined host's NBD
// certificate (its own key; CN=<host>, signed by the cloud CA through JoinHost) is where QEMU reads it and works:
// an export in the namespace admits it and refuses node1's; a CSR naming another host gets nothing. Near expiry,
// the joined agent renews it at its start over its own bus identity (conductor renewHostCertificate); a CSR
// naming another host, or a request for another host, gets nothing there either.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { createPrivateKey, X509Certificate } from 'node:crypto'
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import t from 'tap'
import { connect, credsAuthenticator, nkeys } from '@nats-io/transport-node'
import { pino } from 'pino'
import { startController, type TestController } from '../../helpers/controller.js'
import { startNats, type NatsServer } from '../../helpers/nats.js'
import { startAgent, eventually, type TestAgent } from '../../helpers/agents.js'
import { built } from '../../helpers/build.js'
import { call, failure, status } from '../../helpers/grpc.js'
import { cloudClients, provision, serverWaiter, type CloudClients, type Provisioned } from '../../helpers/cloud.js'
import { freshHome, openrcEnv, removeHomes, strato } from '../../functional/cli/cli.js'
import type { CreateServerResponse } from '../../../proto/gen/strato/compute/v1/servers.js'
import type { JoinHostResponse, ListHostsResponse } from '../../../proto/gen/strato/compute/v1/hosts.js'
import { ConductorReply, ConductorRequest } from '../../../proto/gen/strato/agent/v1/agent.js'
import { agentInboxPrefix, conductorSubject } from '../../../proto/subjects.js'
import { errorFromHeaders } from '../../../proto/nats-errors.js'
import { hostCertificateRequest, installHostCertificate } from '../../../agent/volume/nbd-tls.js'
import { ensureCa, signCertificateRequest } from '../../../controller/tls/ca.js'
import { clientIdentity } from '../../../agent/volume/nbd-export.js'
import { groupId } from '../../../agent/disk/guest-dirs.js'
import { issueAgentNbdCertificate } from '../../../cli/stack/processes.js'
import { nbdIo } from '../../helpers/nbd-tls.js'

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
// The joined host's libvirt NBD client directory (qemu.conf nbd_tls_x509_cert_dir; /etc/pki/qemu is the machine's, other suites use it).
const joinedClientDir = path.join(joinedDir, 'pki-qemu')

/** `strato-agent join …` inside the namespace (the bin: the agent's build in dist/); resolves with its exit code and output (it keeps running when it joins and starts). */
function agentInNs(args: string[], o: { untilExit?: boolean; stateDir?: string } = {}): { proc: ChildProcess; output: () => string; exited: Promise<number | null> } {
  let out = ''
  const proc = spawn('ip', ['netns', 'exec', ns, process.execPath, built('agent/main.ts'), ...args], {
    cwd: root,
    env: { ...process.env, STRATO_AGENT_DRIVER: 'fake', STRATO_AGENT_MY_IP: nsAddr, STRATO_AGENT_DISK_GB: '100', STRATO_LOG_LEVEL: process.env.STRATO_TEST_LOG ?? 'info', STRATO_AGENT_STATE_DIR: o.stateDir ?? joinedDir, STRATO_AGENT_NBD_CLIENT_TLS_DIR: joinedClientDir },
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
  t.notOk(existsSync(path.join(stateDir, 'nbd-tls')) || existsSync(joinedClientDir), 'no NBD key or certificate written')
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

t.test("the joined host's NBD certificate: its own key, signed by the cloud CA for CN=node-joined, readable by QEMU's group only", async (t) => {
  const dir = path.join(joinedDir, 'nbd-tls') // the agent's volumeExportTlsDir by default: qemu-storage-daemon's, root's
  t.equal(statSync(dir).mode & 0o777, 0o700, 'the export side: directory 0700')
  for (const f of ['ca-cert.pem', 'server-cert.pem', 'server-key.pem', 'client-cert.pem', 'client-key.pem']) {
    const st = statSync(path.join(dir, f))
    t.same([st.mode & 0o777, st.uid], [0o600, 0], `${f}: 0600 root`)
  }
  // libvirt's QEMU (user libvirt-qemu) reads the client side: its group, and no one else.
  const qemuGid = groupId('libvirt-qemu')
  t.same([statSync(joinedClientDir).mode & 0o777, statSync(joinedClientDir).gid], [0o710, qemuGid], "the client side: directory 0710 root:libvirt-qemu")
  for (const f of ['ca-cert.pem', 'client-cert.pem', 'client-key.pem']) {
    const st = statSync(path.join(joinedClientDir, f))
    t.same([st.mode & 0o777, st.uid, st.gid], [0o640, 0, qemuGid], `${f}: 0640 root:libvirt-qemu`)
    t.equal(readFileSync(path.join(joinedClientDir, f), 'utf8'), readFileSync(path.join(dir, f), 'utf8'), `${f}: the same as the export side's`)
  }
  const ca = new X509Certificate(readFileSync(path.join(dataDir, 'tls', 'ca.pem')))
  t.equal(readFileSync(path.join(dir, 'ca-cert.pem'), 'utf8'), ca.toString(), "ca-cert.pem is the cloud's CA")
  const cert = new X509Certificate(readFileSync(path.join(dir, 'server-cert.pem')))
  t.ok(cert.checkIssued(ca) && cert.verify(ca.publicKey), 'signed by the cloud CA')
  t.equal(cert.subject, 'CN=node-joined', 'names the host')
  t.equal(cert.subjectAltName, `DNS:node-joined, IP Address:${nsAddr}`, 'its name and address as SANs')
  t.same(cert.keyUsage, ['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2'], 'server and client auth (QEMU serves and dials with it)')
  t.equal(readFileSync(path.join(dir, 'client-cert.pem'), 'utf8'), cert.toString(), 'the client certificate is the same')
  const key = readFileSync(path.join(dir, 'server-key.pem'), 'utf8')
  t.ok(cert.checkPrivateKey(createPrivateKey(key)), 'for the key beside it')
  const body = key.split('\n')[1]!
  const holders = spawnSync('grep', ['-rlF', body, dataDir], { encoding: 'utf8' }).stdout.trim()
  t.equal(holders, '', 'the private key never reached the controller')
})

t.test('a CSR naming another host gets no certificate, and the token stays unused; no token, nothing', async (t) => {
  const joinHost = (token: string, host: string, csr: string) => call<JoinHostResponse>(c.hosts, 'joinHost', { token, host, natsPublicKey: nkeys.createUser().getPublicKey(), nbdCsr: csr, nbdAddresses: [nsAddr] })
  const tok = await joinToken()
  const forNode1 = await hostCertificateRequest('node1')
  const other = await failure(joinHost(tok.token!, 'node-csr', forNode1.csrPem))
  t.equal(other.code, status.INVALID_ARGUMENT)
  t.match(other.details, "the certificate signing request names 'CN=node1', not 'CN=node-csr'")
  const garbage = await failure(joinHost(tok.token!, 'node-csr', 'not a csr'))
  t.equal(garbage.code, status.INVALID_ARGUMENT)
  t.match(garbage.details, /is not one PEM CERTIFICATE REQUEST/)
  t.match((await strato('host join-token list -f value -c ID -c Status', env)).stdout, new RegExp(`^${tok.id} unused`, 'm'), 'the token is still unused')

  const bound = await joinToken('--host node-bound')
  const e = await failure(joinHost(bound.token!, 'node-other', (await hostCertificateRequest('node-other')).csrPem))
  t.equal(e.code, status.UNAUTHENTICATED, "a token for node-bound gets node-other nothing")
  t.match(e.details, "it is for host 'node-bound', not 'node-other'")
  const named = await failure(joinHost(bound.token!, 'node-bound', forNode1.csrPem))
  t.equal(named.code, status.INVALID_ARGUMENT, "nor, used for node-bound, a certificate naming node1")
  const forged = await failure(joinHost(`${tok.id}.aaaaaaaaaaaaaaaa`, 'node-csr', (await hostCertificateRequest('node-csr')).csrPem))
  t.equal(forged.code, status.UNAUTHENTICATED, 'a forged token gets nothing')
  t.same((await call<ListHostsResponse>(c.hosts, 'listHosts', {}, s.adminToken)).hosts.map((h) => h.host).sort(), ['node-joined', 'node1'], 'no host registered')
  t.notMatch((await strato('host join-token list -f value -c ID -c Status', env)).stdout, /used by node-(csr|bound|other)/, 'no token used')
})

t.test('the issued certificates work for NBD: an export of the joined host admits its certificate, not node1\'s', async (t) => {
  const dir = path.join(joinedDir, 'nbd-tls')
  // node1's, issued as npm start issues its local agent's (a CSR made there, signed by the same issuer JoinHost uses).
  const node1State = mkdtempSync(path.join(tmpdir(), 'strato-node1-'))
  t.teardown(() => rmSync(node1State, { recursive: true, force: true }))
  await issueAgentNbdCertificate(s.controller.joinIssuer!, { stateDir: node1State, host: 'node1', driver: 'fake', myIp: hostAddr }, pino({ level: 'silent' }))
  const node1Dir = path.join(node1State, 'nbd-tls')
  const node1Cert = readFileSync(path.join(node1Dir, 'client-cert.pem'), 'utf8')
  t.equal(new X509Certificate(node1Cert).subject, 'CN=node1')
  await issueAgentNbdCertificate(s.controller.joinIssuer!, { stateDir: node1State, host: 'node1', driver: 'fake', myIp: hostAddr }, pino({ level: 'silent' }))
  t.equal(readFileSync(path.join(node1Dir, 'client-cert.pem'), 'utf8'), node1Cert, 'a next start keeps a good certificate (renewed only when missing, for other names or addresses, or near expiry)')

  // A volume export as the joined host's agent serves one (nbd-export.ts): in its namespace, on its address, with its server certificate, for node-joined.
  const file = path.join(joinedDir, 'nbd-check.raw')
  sh('qemu-img', 'create', '-q', '-f', 'raw', file, '1M')
  const pidFile = path.join(joinedDir, 'nbd-check.pid')
  t.teardown(() => {
    if (existsSync(pidFile)) spawnSync('kill', [readFileSync(pidFile, 'utf8').trim()])
  })
  const port = 10809
  sh('ip', 'netns', 'exec', ns, 'qemu-storage-daemon',
    '--object', `tls-creds-x509,id=tls0,dir=${dir},endpoint=server,verify-peer=on`,
    '--object', JSON.stringify({ 'qom-type': 'authz-list', id: 'authz0', policy: 'deny', rules: [{ match: clientIdentity('node-joined'), policy: 'allow', format: 'exact' }] }),
    '--blockdev', `driver=file,filename=${file},node-name=file0`, '--blockdev', 'driver=raw,file=file0,node-name=vol0',
    '--nbd-server', `addr.type=inet,addr.host=${nsAddr},addr.port=${port},tls-creds=tls0,tls-authz=authz0`,
    '--export', 'type=nbd,id=export0,node-name=vol0,name=volume-check,writable=on',
    '--pidfile', pidFile, '--daemonize')
  const target = { address: nsAddr, port, name: 'volume-check' }
  t.match(await nbdIo(target, joinedClientDir, 'write -P 0x5a 0 512', 'read -P 0x5a 0 512'), /read 512\/512/, "node-joined's client certificate (libvirt's directory) gets in, and the server's checks out for its address")
  await t.rejects(nbdIo(target, node1Dir, 'read 0 512'), /TLS|abort|authoriz/i, "node1's certificate of the same CA is refused by the export's tls-authz")
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

t.test('the joined agent renews its NBD certificate near expiry over its own bus identity; a CSR naming another host is refused', async (t) => {
  const dir = path.join(joinedDir, 'nbd-tls')
  const certOf = (d: string, f: string) => new X509Certificate(readFileSync(path.join(d, f)))
  t.notMatch(joinedAgent.output(), /renewed this host's NBD certificate/, 'the certificate issued at join is left alone at start')
  // What a certificate issued 355 days ago looks like (10 days left), for a key of the host's, by the cloud CA.
  const ca = await ensureCa(path.join(dataDir, 'tls'))
  const key = await hostCertificateRequest('node-joined')
  const nbd = { host: 'node-joined', dir, clientDir: joinedClientDir, qemuGid: groupId('libvirt-qemu'), addresses: [nsAddr] }
  installHostCertificate(nbd, ca.certPem, await signCertificateRequest(ca, key.csrPem, { commonName: 'node-joined', dnsNames: ['node-joined'], ips: [nsAddr], usage: 'both', days: 10 }), key)
  const short = certOf(dir, 'server-cert.pem')
  // The agent checks at its start (then daily): restarted, it finds the certificate due and renews it.
  joinedAgent.proc.kill('SIGTERM')
  await joinedAgent.exited
  joinedAgent = agentInNs([])
  const renewed = await eventually(async () => {
    const c = certOf(dir, 'server-cert.pem')
    return c.serialNumber !== short.serialNumber ? c : undefined
  }, 60_000, `the renewed certificate (agent output: ${joinedAgent.output().slice(-2000)})`)
  t.equal(renewed.subject, 'CN=node-joined', 'it names the host')
  t.ok(renewed.checkIssued(new X509Certificate(ca.certPem)) && renewed.verify(new X509Certificate(ca.certPem).publicKey), 'signed by the cloud CA')
  t.ok(Date.parse(renewed.validTo) - Date.now() > 300 * 24 * 3600 * 1000, `good for a year (until ${renewed.validTo})`)
  t.equal(renewed.subjectAltName, `DNS:node-joined, IP Address:${nsAddr}`, 'its name and address as SANs')
  const newKey = readFileSync(path.join(dir, 'server-key.pem'), 'utf8')
  t.ok(renewed.checkPrivateKey(createPrivateKey(newKey)), 'for the key beside it')
  t.not(newKey, key.keyPem, 'a new key, made by the agent')
  for (const f of ['server-key.pem', 'client-key.pem']) t.equal(statSync(path.join(dir, f)).mode & 0o777, 0o600, `${f} 0600`)
  t.equal(readFileSync(path.join(joinedClientDir, 'client-cert.pem'), 'utf8'), renewed.toString(), "libvirt's client directory has it")
  t.same([statSync(path.join(joinedClientDir, 'client-key.pem')).mode & 0o777, statSync(path.join(joinedClientDir, 'client-key.pem')).gid], [0o640, groupId('libvirt-qemu')], "its key there QEMU's group's, 0640")
  await eventually(async () => /renewed this host's NBD certificate/.test(joinedAgent.output()) || undefined, 30_000, 'the agent to log the renewal')

  // Over the joined host's own bus identity, a CSR naming another host gets nothing; nor does asking for another host.
  const creds = credsAuthenticator(new Uint8Array(readFileSync(path.join(joinedDir, 'nats.creds'))))
  const nc = await connect({ servers: nats.url, tls: { caFile: nats.caFile! }, authenticator: creds, inboxPrefix: agentInboxPrefix('node-joined'), reconnect: false })
  t.teardown(() => nc.close())
  const renew = async (host: string, csrPem: string) => {
    const r = await nc.request(conductorSubject('node-joined'), ConductorRequest.encode({ renewHostCertificate: { host, csrPem, addresses: [nsAddr] } }).finish(), { timeout: 30_000 })
    return { err: errorFromHeaders(r.headers), reply: ConductorReply.decode(r.data) }
  }
  const forNode1 = await hostCertificateRequest('node1')
  const named = await renew('node-joined', forNode1.csrPem)
  t.equal(named.err?.name, 'InvalidArgument', 'a CSR naming node1, asked for node-joined: refused')
  t.match(named.err?.message, "the certificate signing request names 'CN=node1', not 'CN=node-joined': a host gets a certificate for its own name only")
  t.same(named.reply, {}, 'no certificate')
  const forOther = await renew('node1', forNode1.csrPem)
  t.equal(forOther.err?.name, 'PermissionDenied', "asking for node1's certificate on node-joined's subject: refused")
  t.same(forOther.reply, {}, 'no certificate')
  const garbage = await renew('node-joined', 'not a csr')
  t.match(garbage.err, { name: 'InvalidArgument', message: /is not one PEM CERTIFICATE REQUEST/ }, 'no CSR: refused, saying so')
  t.equal(certOf(dir, 'server-cert.pem').serialNumber, renewed.serialNumber, "the host's certificate is untouched")
})

t.test('an unauthenticated caller cannot list or make join tokens', async (t) => {
  const e = await failure(call(c.hosts, 'createJoinToken', {}))
  t.equal(e.code, status.UNAUTHENTICATED)
})

// `npm start`'s NATS (cli/stack/nats-auth.ts): the config it writes makes a real nats-server refuse
// anonymous connections and accept the credentials it made (the controller's: everything; the
// agent's: its own subjects only); the keys and credentials are private (0700 directory, 0600
// files); a second start keeps the same operator, so credentials handed out before still work.
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { connect, credsAuthenticator } from '@nats-io/transport-node'
import { jetstreamManager } from '@nats-io/jetstream'
import t from 'tap'
import { prepareStackNats } from '../../../cli/stack/nats-auth.js'
import { ensureCa } from '../../../controller/tls/ca.js'
import { agentInboxPrefix } from '../../../proto/subjects.js'
import { freePort, waitForPort } from '../../helpers/ports.js'

const home = mkdtempSync(path.join(tmpdir(), 'strato-stack-nats-'))
const natsDir = path.join(home, 'nats')
const caDir = path.join(home, 'controller', 'tls')
let port: number
let proc: ChildProcess | undefined

async function start(configFile: string): Promise<void> {
  proc = spawn('nats-server', ['-c', configFile], { stdio: 'ignore' })
  await waitForPort(port)
}
async function stop(): Promise<void> {
  if (!proc || proc.exitCode !== null) return
  const p = proc
  await new Promise<void>((resolve) => (p.once('exit', () => resolve()), p.kill('SIGTERM')))
}
const creds = (file: string) => credsAuthenticator(new Uint8Array(readFileSync(file)))

t.before(async () => {
  port = await freePort()
})
t.teardown(async () => {
  await stop()
  rmSync(home, { recursive: true, force: true })
})

t.test("the stack's nats-server refuses anonymous connections and accepts the credentials it made", async (t) => {
  const made = await prepareStackNats({ natsDir, host: '127.0.0.1', port, agentHost: 'stack-host.example.org', caDir })
  await start(made.configFile)
  const url = made.url
  t.equal(url, `tls://127.0.0.1:${port}`)
  const tls = { caFile: made.caFile }
  await t.rejects(connect({ servers: url, reconnect: false, tls }), { name: 'AuthorizationError' }, 'anonymous')
  await t.rejects(connect({ servers: url, reconnect: false, tls, user: 'admin', pass: 'admin' }), { name: 'AuthorizationError' }, 'a user and password')
  // TLS only, and only with the cloud's CA: a client that does not trust it gets nothing (not even an auth error).
  const untrusted = await connect({ servers: `nats://127.0.0.1:${port}`, reconnect: false, authenticator: creds(made.controllerCreds) }).then((nc) => (void nc.close(), 'connected'), (err: Error) => err.message)
  t.not(untrusted, 'connected', `without the CA the server's certificate is refused (${untrusted})`)
  const wrongCa = await connect({ servers: url, reconnect: false, authenticator: creds(made.controllerCreds), tls: { caFile: (await ensureCa(path.join(home, 'other-ca'))).certFile } }).then((nc) => (void nc.close(), 'connected'), (err: Error) => err.message)
  t.not(wrongCa, 'connected', `nor with another CA (${wrongCa})`)

  const ctl = await connect({ servers: url, tls, authenticator: creds(made.controllerCreds) })
  const jsm = await jetstreamManager(ctl)
  await jsm.streams.add({ name: 'PROBE', subjects: ['probe.>'] })
  t.equal((await jsm.streams.info('PROBE')).config.name, 'PROBE', 'the controller manages streams')

  const agent = await connect({ servers: url, tls, authenticator: creds(made.agentCreds), inboxPrefix: agentInboxPrefix('stack-host.example.org') })
  const closed = await agent.subscribe('>').closed
  t.match(String(closed), /Permissions Violation for Subscription to ">"/, 'the agent may not subscribe to everything')
  agent.subscribe('strato.agent.stack-host_example_org.rpc', { callback: (_err, m) => void m.respond('pong') })
  await agent.flush()
  t.equal((await ctl.request('strato.agent.stack-host_example_org.rpc', 'ping', { timeout: 2_000 })).string(), 'pong', 'the agent answers its own rpc subject')
  await agent.close()
  await ctl.close()

  const auth = path.join(natsDir, 'auth')
  t.equal(statSync(auth).mode & 0o777, 0o700, 'auth/ is 0700')
  t.equal(statSync(path.join(auth, 'keys')).mode & 0o777, 0o700, 'auth/keys is 0700')
  for (const dir of [auth, path.join(auth, 'keys')]) {
    for (const f of readdirSync(dir)) {
      // nats-server's certificate is public (npm start's umask makes it 0600 anyway); everything else is a secret.
      if (f === 'nats-server.pem') continue
      if (statSync(path.join(dir, f)).isFile()) t.equal(statSync(path.join(dir, f)).mode & 0o777, 0o600, `${path.relative(natsDir, path.join(dir, f))} is 0600`)
    }
  }
})

t.test('a second start keeps the operator: the credentials made before still connect', async (t) => {
  await stop()
  const before = readFileSync(path.join(natsDir, 'auth', 'controller.creds'), 'utf8')
  const again = await prepareStackNats({ natsDir, host: '127.0.0.1', port, agentHost: 'stack-host.example.org', caDir })
  t.equal(readFileSync(again.controllerCreds, 'utf8'), before, 'the controller keeps its credentials')
  await start(again.configFile)
  const nc = await connect({ servers: again.url, tls: { caFile: again.caFile }, authenticator: creds(again.agentCreds), inboxPrefix: agentInboxPrefix('stack-host.example.org') })
  t.ok(nc.info?.server_id, 'the agent connects after the restart')
  await nc.close()
})

// The controller's typed config: defaults, JSON file, STRATO_* env, overrides — later wins; bad values say what and why.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import t from 'tap'
import { loadConfig } from '../../../controller/config.js'
import { loadStackConfig } from '../../../cli/stack/config.js'

t.test('defaults are complete', async (t) => {
  const c = loadConfig({}, {})
  t.match(c, { grpc: { host: '127.0.0.1', port: 8770, publicAddress: null }, natsUrl: null, token: { expirationSeconds: 3600, maxActiveKeys: 3 }, bootstrap: { openrcPath: null, region: 'RegionOne', adminProjectName: 'admin' } })
  t.equal(c.databaseUrl, `sqlite:${path.join(c.dataDir, 'strato.db')}`, 'the database lives in the data dir by default')
})

t.test('file, then env, then overrides', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'strato-cfg-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const file = path.join(dir, 'c.json')
  writeFileSync(file, JSON.stringify({ grpc: { port: 9000 }, token: { expirationSeconds: 60 }, log: { level: 'debug' } }))
  const c = loadConfig({ log: { level: 'warn', pretty: true } }, { STRATO_CONFIG: file, STRATO_GRPC_PORT: '9001', STRATO_DATA_DIR: dir })
  t.equal(c.grpc.port, 9001, 'env beats the file')
  t.equal(c.grpc.host, '127.0.0.1', 'unset fields keep their defaults')
  t.equal(c.token.expirationSeconds, 60, 'the file beats defaults')
  t.equal(c.token.maxActiveKeys, 3)
  t.equal(c.log.level, 'warn', 'overrides beat everything')
  t.equal(c.dataDir, dir)
})

t.test('bad values are refused with the setting named', async (t) => {
  t.throws(() => loadConfig({}, { STRATO_GRPC_PORT: 'eighty' }), { name: 'InvalidArgument', field: 'STRATO_GRPC_PORT', message: /non-negative integer, got 'eighty'/ })
  t.throws(() => loadConfig({}, { STRATO_CONFIG: '/nonexistent/strato.json' }), { name: 'InvalidArgument', message: /cannot read config file \/nonexistent\/strato.json/ })
  t.throws(() => loadConfig({ token: { expirationSeconds: 0, maxActiveKeys: 3, cacheSize: 1 } }, {}), { name: 'InvalidArgument', field: 'token.expirationSeconds' })
  t.throws(() => loadConfig({ token: { expirationSeconds: 10, maxActiveKeys: 1, cacheSize: 1 } }, {}), { name: 'InvalidArgument', field: 'token.maxActiveKeys' })
  t.throws(() => loadStackConfig({ STRATO_NATS_PORT: '70000' }), { field: 'STRATO_NATS_PORT', message: /1-65535/ })
  t.equal(loadStackConfig({ STRATO_GRPC_PORT: '18000' }).grpcPort, 18000)
  t.equal(loadStackConfig({}, []).hostGateway, 'off', 'the host is no gateway unless asked')
  t.equal(loadStackConfig({ STRATO_HOST_GATEWAY: 'nat' }, []).hostGateway, 'nat')
  t.equal(loadStackConfig({}, ['--host-gateway']).hostGateway, 'on', 'npm start -- --host-gateway')
  t.equal(loadStackConfig({ STRATO_HOST_GATEWAY: 'off' }, ['--host-gateway=nat']).hostGateway, 'nat', 'the option wins over the environment')
  t.throws(() => loadStackConfig({}, ['--host-gateway=yes']), { message: /must be off, on or nat, got 'yes'/ })
  t.throws(() => loadStackConfig({}, ['--demo']), { message: /unknown option '--demo'/ })
})

t.test('a database URL without a built-in dialect is refused, without echoing its password', async (t) => {
  const { openDatabase } = await import('../../../controller/store/db.js')
  const err = await openDatabase('mysql://strato:hunter2@db.example/strato').catch((e: Error) => e)
  t.match(err, { name: 'InvalidArgument', message: /unsupported database URL 'mysql:\/\/strato:\*\*\*@db\.example\/strato': use sqlite:PATH or postgres:\/\// })
  t.notMatch((err as Error).message, /hunter2/)
})

t.test('TLS: on by default; plaintext only when asked for, and only on loopback', async (t) => {
  const c = loadConfig({ dataDir: '/srv/strato' }, {})
  t.match(c.tls, { mode: 'on', certFile: null, keyFile: null, dir: '/srv/strato/tls', caFile: '/srv/strato/tls/ca.pem' }, 'on, with the generated CA in <dataDir>/tls')
  for (const host of ['127.0.0.1', '127.1.2.3', '::1', 'localhost']) t.equal(loadConfig({ grpc: { host }, tls: { mode: 'off' } }, {}).tls.mode, 'off', `plaintext on ${host} when configured`)
  for (const host of ['0.0.0.0', '::', '192.0.2.7', 'ctl.example']) {
    t.throws(() => loadConfig({}, { STRATO_GRPC_HOST: host, STRATO_TLS: 'off' }), { name: 'InvalidArgument', field: 'tls.mode', message: new RegExp(`refusing plaintext gRPC on ${host.replace(/\./g, '\\.')}: it is not a loopback address`) }, `plaintext on ${host} refused`)
  }
  t.throws(() => loadConfig({}, { STRATO_TLS: 'maybe' }), { field: 'tls.mode', message: /must be on or off, got 'maybe'/ })
  t.throws(() => loadConfig({}, { STRATO_TLS_CERT_FILE: '/etc/c.pem' }), { field: 'tls.keyFile', message: /go together/ })
  const op = loadConfig({}, { STRATO_TLS_CERT_FILE: '/etc/c.pem', STRATO_TLS_KEY_FILE: '/etc/k.pem', STRATO_TLS_NAMES: 'a.example, 10.0.0.1' })
  t.match(op.tls, { certFile: '/etc/c.pem', keyFile: '/etc/k.pem', caFile: null, names: ['a.example', '10.0.0.1'] }, "the operator's certificate; no CA unless given")
})

t.test('network: tenant network types (local by default: no VXLAN here) and the router reschedule time', async (t) => {
  t.match(loadConfig({}, {}).network, { tenantNetworkTypes: ['local'], routerRescheduleAfterMs: 60_000 })
  t.match(loadConfig({ network: { tenantNetworkTypes: ['vlan', 'local'], routerRescheduleAfterMs: 5000 } }, {}).network, { tenantNetworkTypes: ['vlan', 'local'], routerRescheduleAfterMs: 5000 })
  t.throws(() => loadConfig({ network: { tenantNetworkTypes: ['vxlan' as never] } }, {}), { name: 'InvalidArgument', field: 'network.tenantNetworkTypes', message: /no VXLAN or GRE devices/ })
  t.throws(() => loadConfig({ network: { tenantNetworkTypes: [] } }, {}), { name: 'InvalidArgument', field: 'network.tenantNetworkTypes' })
  t.throws(() => loadConfig({ network: { routerRescheduleAfterMs: -1 } }, {}), { name: 'InvalidArgument', field: 'network.routerRescheduleAfterMs' })
})

t.test('NATS: a comma-separated URL list (a cluster) makes the streams 3 replicas by default; one URL, 1', async (t) => {
  t.equal(loadConfig({}, { STRATO_NATS_URL: 'tls://127.0.0.1:4222' }).natsStreamReplicas, 1, 'one server: 1 replica, as before')
  t.equal(loadConfig({}, {}).natsStreamReplicas, 1, 'no bus: 1')
  t.equal(loadConfig({}, { STRATO_NATS_URL: 'tls://n1:4222, tls://n2:4222,tls://n3:4222' }).natsStreamReplicas, 3, 'three servers: 3 replicas')
  t.equal(loadConfig({}, { STRATO_NATS_URL: 'tls://n1:4222,tls://n2:4222,tls://n3:4222', STRATO_NATS_STREAM_REPLICAS: '1' }).natsStreamReplicas, 1, 'the setting wins over the list')
  t.equal(loadConfig({ natsStreamReplicas: 3 }, { STRATO_NATS_URL: 'tls://nats.example:4222' }).natsStreamReplicas, 3, 'one URL in front of a cluster: replicas as configured')
  t.throws(() => loadConfig({}, { STRATO_NATS_URL: 'tls://n1:4222', STRATO_NATS_STREAM_REPLICAS: 'three' }), { name: 'InvalidArgument', field: 'STRATO_NATS_STREAM_REPLICAS' })
  t.throws(() => loadConfig({ natsStreamReplicas: 7 }, { STRATO_NATS_URL: 'tls://n1:4222' }), { name: 'InvalidArgument', field: 'natsStreamReplicas', message: /from 1 to 5 \(JetStream's limits\), got 7/ })
  t.throws(() => loadConfig({}, { STRATO_NATS_URL: 'tls://n1:4222,nats://n2:4222' }), { name: 'InvalidArgument', field: 'natsUrl', message: /mixes tls:\/\/ and plaintext/ }, 'a mixed list stops the controller before it starts')
})

// The agent's configuration from STRATO_AGENT_* variables: defaults, and bad values refused by name.
import t from 'tap'
import { isIP } from 'node:net'
import path from 'node:path'
import { loadAgentConfig, parseNatsUrls } from '../../../agent/config.js'

const env = (vars: Record<string, string>) => ({ STRATO_AGENT_STATE_DIR: '/tmp/strato-agent-config-test', ...vars })

t.test('defaults: Nova-like timings, a provider bridge, an address of this host', async (t) => {
  const c = loadAgentConfig({}, env({}))
  t.match(c, { driver: 'libvirt', shutdownTimeoutMs: 60_000, powerSyncIntervalMs: 60_000, maxConcurrentCasts: 8, bridgeMappings: { provider: 'br-provider' } })
  t.ok(isIP(c.myIp), `my_ip defaults to an address of this host (${c.myIp})`)
  t.match(c, { dhcp: 'dnsmasq', dhcpDir: '/tmp/strato-agent-config-test/dhcp', dhcpSyncIntervalMs: 30_000 }, 'DHCP with dnsmasq on real hosts')
  t.equal(loadAgentConfig({}, env({ STRATO_AGENT_DRIVER: 'fake' })).dhcp, 'off', 'and off with the fake driver (fast tests start no dnsmasq)')
  t.equal(loadAgentConfig({}, env({ STRATO_AGENT_DRIVER: 'fake', STRATO_AGENT_DHCP: 'dnsmasq' })).dhcp, 'dnsmasq')
  t.match(c, { metadata: 'on', metadataPort: 80, metadataCacheTtlMs: 30_000 }, 'the metadata service on, at port 80')
})

t.test('volume exports: none unless an address is given; the TLS directory under the state dir; attach auto', async (t) => {
  const c = loadAgentConfig({}, env({}))
  t.match(c, { volumeExportAddress: '', volumeExportTlsDir: path.join('/tmp/strato-agent-config-test', 'nbd-tls'), volumeAttach: 'auto' })
  const set = loadAgentConfig({}, env({ STRATO_AGENT_VOLUME_EXPORT_ADDRESS: '192.0.2.5', STRATO_AGENT_VOLUME_EXPORT_TLS_DIR: '/etc/strato/nbd', STRATO_AGENT_VOLUME_ATTACH: 'network' }))
  t.match(set, { volumeExportAddress: '192.0.2.5', volumeExportTlsDir: '/etc/strato/nbd', volumeAttach: 'network' })
})

t.test('the environment sets them', async (t) => {
  const c = loadAgentConfig({}, env({
    STRATO_AGENT_MY_IP: '192.0.2.7', STRATO_AGENT_SHUTDOWN_TIMEOUT_MS: '2000', STRATO_AGENT_POWER_SYNC_INTERVAL_MS: '1000',
    STRATO_AGENT_MAX_CONCURRENT_CASTS: '2', STRATO_AGENT_BRIDGE_MAPPINGS: 'provider:br-ex, lab:br-lab',
    STRATO_AGENT_METADATA: 'off', STRATO_AGENT_METADATA_PORT: '8775', STRATO_AGENT_METADATA_CACHE_TTL_MS: '5000',
  }))
  t.match(c, { metadata: 'off', metadataPort: 8775, metadataCacheTtlMs: 5000 })
  t.match(c, { myIp: '192.0.2.7', shutdownTimeoutMs: 2000, powerSyncIntervalMs: 1000, maxConcurrentCasts: 2, bridgeMappings: { provider: 'br-ex', lab: 'br-lab' } })
})

t.test('bad values are refused, naming the setting', async (t) => {
  t.throws(() => loadAgentConfig({}, env({ STRATO_AGENT_MY_IP: 'myhost' })), { name: 'InvalidArgument', field: 'myIp', message: /must be an IP address, got 'myhost'/ })
  t.throws(() => loadAgentConfig({}, env({ STRATO_AGENT_SHUTDOWN_TIMEOUT_MS: 'soon' })), { name: 'InvalidArgument', field: 'STRATO_AGENT_SHUTDOWN_TIMEOUT_MS' })
  t.throws(() => loadAgentConfig({}, env({ STRATO_AGENT_MAX_CONCURRENT_CASTS: '0' })), { name: 'InvalidArgument', field: 'maxConcurrentCasts' })
  t.match(loadAgentConfig({}, env({ STRATO_AGENT_HOST_GATEWAY: 'provider, other', STRATO_AGENT_HOST_GATEWAY_NAT: '1' })), { hostGateway: ['provider', 'other'], hostGatewayNat: true })
  t.match(loadAgentConfig({}, env({})), { hostGateway: [], hostGatewayNat: false }, 'no host gateway by default')
  t.throws(() => loadAgentConfig({}, env({ STRATO_AGENT_HOST_GATEWAY: 'provider', STRATO_AGENT_DHCP: 'off' })), { name: 'InvalidArgument', field: 'hostGateway' })
  t.throws(() => loadAgentConfig({}, env({ STRATO_AGENT_DHCP: 'isc' })), { name: 'InvalidArgument', field: 'dhcp', message: /must be dnsmasq or off, got 'isc'/ })
  t.throws(() => loadAgentConfig({}, env({ STRATO_AGENT_DHCP_SYNC_INTERVAL_MS: '10' })), { name: 'InvalidArgument', field: 'dhcpSyncIntervalMs' })
  t.throws(() => loadAgentConfig({}, env({ STRATO_AGENT_METADATA: 'yes' })), { name: 'InvalidArgument', field: 'metadata', message: /must be on or off, got 'yes'/ })
  t.throws(() => loadAgentConfig({}, env({ STRATO_AGENT_VOLUME_ATTACH: 'nbd' })), { name: 'InvalidArgument', field: 'volumeAttach', message: /must be auto or network, got 'nbd'/ })
  t.throws(() => loadAgentConfig({}, env({ STRATO_AGENT_VOLUME_EXPORT_ADDRESS: 'storage.example' })), { name: 'InvalidArgument', field: 'volumeExportAddress', message: /must be an IP address/ })
  t.throws(() => loadAgentConfig({}, env({ STRATO_AGENT_METADATA_PORT: '70000' })), { name: 'InvalidArgument', field: 'metadataPort' })
  t.throws(() => loadAgentConfig({}, env({ STRATO_AGENT_BRIDGE_MAPPINGS: 'provider' })), { name: 'InvalidArgument', field: 'bridgeMappings' })
  t.throws(() => loadAgentConfig({}, env({ STRATO_AGENT_BRIDGE_MAPPINGS: 'provider:a-bridge-name-too-long' })), { name: 'InvalidArgument', field: 'bridgeMappings.provider' })
})

t.test('NATS credentials: a private file is taken, one others can read is refused with what to do', async (t) => {
  const { mkdtempSync, writeFileSync, chmodSync, rmSync } = await import('node:fs')
  const { tmpdir } = await import('node:os')
  const path = await import('node:path')
  const dir = mkdtempSync(path.join(tmpdir(), 'strato-agent-creds-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const file = path.join(dir, 'agent.creds')
  writeFileSync(file, 'creds', { mode: 0o600 })
  const c = loadAgentConfig({}, env({ STRATO_AGENT_NATS_CREDS: file }))
  t.equal(c.natsCredsFile, file)
  t.equal(Buffer.from(c.natsCreds!).toString(), 'creds', 'read once, by the loader: the service connects with this content')
  t.match(loadAgentConfig({}, env({})), { natsCredsFile: null, natsCreds: null }, 'none by default')
  for (const mode of [0o640, 0o604]) {
    chmodSync(file, mode)
    t.throws(() => loadAgentConfig({}, env({ STRATO_AGENT_NATS_CREDS: file })), { name: 'FailedPrecondition', message: new RegExp(`${file} are readable by others \\(mode 0${mode.toString(8)}\\); chmod 600 it`) })
  }
  t.throws(() => loadAgentConfig({}, env({ STRATO_AGENT_NATS_CREDS: path.join(dir, 'missing.creds') })), { name: 'FailedPrecondition', message: /cannot read NATS credentials .*missing\.creds/ })
})

t.test('the controller address and its CA (TLS for image downloads)', async (t) => {
  const c = loadAgentConfig({}, { STRATO_AGENT_CONTROLLER: 'grpcs://10.0.0.1:8770', STRATO_AGENT_CA_FILE: 'ca.pem' })
  t.equal(c.controllerAddress, 'grpcs://10.0.0.1:8770')
  t.equal(c.caFile, path.resolve('ca.pem'), 'STRATO_AGENT_CA_FILE, absolute')
  t.equal(loadAgentConfig({}, {}).caFile, null, 'no CA by default')
  t.throws(() => loadAgentConfig({}, { STRATO_AGENT_CONTROLLER: 'https://10.0.0.1' }), { name: 'InvalidArgument', field: 'controllerAddress', message: /must be grpcs:\/\/host:port, grpc:\/\/host:port or host:port/ })
})

t.test('NATS URLs: a comma-separated list, one scheme per URL, TLS for tls:// only, mixed kinds refused', async (t) => {
  t.same(parseNatsUrls('nats://127.0.0.1:4222'), { servers: ['nats://127.0.0.1:4222'], tls: false })
  t.same(parseNatsUrls(' tls://a.example:4222, TLS://10.0.0.2:4222 ,'), { servers: ['tls://a.example:4222', 'TLS://10.0.0.2:4222'], tls: true }, 'trimmed, empty entries dropped, the scheme case-insensitive')
  t.same(parseNatsUrls('127.0.0.1:4222,nats://[::1]:4222'), { servers: ['127.0.0.1:4222', 'nats://[::1]:4222'], tls: false }, 'host:port is plaintext, as nats.js takes it')
  t.same(parseNatsUrls('nats://mytls://x:1').tls, false, "a URL's scheme is its own beginning, not a tls:// anywhere inside")
  t.throws(() => parseNatsUrls('tls://a:4222,nats://b:4222'), { name: 'InvalidArgument', field: 'natsUrl', message: /mixes tls:\/\/ and plaintext URLs \(tls:\/\/a:4222, nats:\/\/b:4222\)/ })
  t.throws(() => parseNatsUrls('tls://a:4222,b:4222'), { name: 'InvalidArgument', message: /mixes tls:\/\/ and plaintext/ }, 'a bare host:port is plaintext too')
  t.throws(() => parseNatsUrls('wss://a:443'), { name: 'InvalidArgument', field: 'natsUrl', message: /'wss:\/\/a:443' has scheme wss:\/\/; use nats:\/\/host:port \(plaintext\) or tls:\/\/host:port/ })
  t.throws(() => parseNatsUrls(' , '), { name: 'InvalidArgument', message: /names no server/ })
  t.throws(() => parseNatsUrls('nats://'), { name: 'InvalidArgument', message: /'nats:\/\/' is not a NATS URL/ })

  const c = loadAgentConfig({}, env({ STRATO_NATS_URL: 'tls://n1:4222,tls://n2:4222' }))
  t.same(c.nats, { servers: ['tls://n1:4222', 'tls://n2:4222'], tls: true }, 'the loader parses STRATO_NATS_URL')
  t.same(loadAgentConfig({}, env({})).nats, { servers: ['nats://127.0.0.1:4222'], tls: false }, 'the default')
  t.throws(() => loadAgentConfig({}, env({ STRATO_NATS_URL: 'nats://n1:4222,tls://n2:4222' })), { name: 'InvalidArgument', field: 'natsUrl' }, 'a mixed list stops the agent at start')
})

t.test('the L3 role: on by default, STRATO_AGENT_L3 turns it off, a bad value is refused', async (t) => {
  t.equal(loadAgentConfig({}, env({})).l3, true)
  t.equal(loadAgentConfig({}, env({ STRATO_AGENT_L3: '0' })).l3, false)
  t.equal(loadAgentConfig({}, env({ STRATO_AGENT_L3: 'false' })).l3, false)
  t.equal(loadAgentConfig({ l3: true }, env({ STRATO_AGENT_L3: 'off' })).l3, true, 'an override wins')
  t.throws(() => loadAgentConfig({}, env({ STRATO_AGENT_L3: 'maybe' })), { name: 'InvalidArgument', field: 'STRATO_AGENT_L3', message: /STRATO_AGENT_L3 must be 1\/0/ })
})

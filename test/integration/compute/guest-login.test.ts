/**
 * Integration, the seed's walkthrough to its end: a keypair, the demo guest
 * (a real Linux, built from Debian packages) booted on the provider network
 * with a DHCP-enabled subnet, on real libvirt (KVM, TCG without /dev/kvm),
 * Strato's dnsmasq and metadata service, and the agent's iptables — then
 * `ping` and `ssh` from outside, as a user would.
 *
 * "Outside" is a network namespace this test makes, plugged into the
 * provider bridge with the subnet's gateway address (nothing leaves the
 * machine). The test checks:
 *  - the guest's lease comes from Strato's dnsmasq (its log) and the address
 *    the guest prints is its port's fixed IP;
 *  - ping works only once the ICMP rule exists, ssh only once tcp/22 does;
 *  - over SSH, the metadata service gives this server's uuid, name and key;
 *  - a second guest, booted with --config-drive False, still gets its key
 *    (from the metadata service), reads only its own metadata, and a request
 *    from it with the first guest's address as source is dropped;
 *  - the agent SIGKILLed and restarted: DHCP and metadata answer again, with
 *    one dnsmasq for the network;
 *  - after the servers and the network are deleted: no dnsmasq, namespace,
 *    veth or lease file left.
 * Needs root, libvirt-daemon-system, qemu-system-x86, dnsmasq-base, openssh-client.
 */
import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { chmodSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'
import { serverGone, startCloud, uploadImage, type TestCloud } from '../../helpers/cloud.js'
import { spawnAgent, type AgentProcess } from '../../helpers/agent-process.js'
import { ensureLibvirtd, virsh } from '../../helpers/libvirt.js'
import { call, type Decoded } from '../../helpers/grpc.js'
import { eventually } from '../../helpers/agents.js'
import { buildGuestImage, GUEST_READY, GUEST_USER } from '../../../cli/stack/guest/build.js'
import { dhcpNamespace } from '../../../agent/net/dhcp.js'
import type { ConsoleOutput, CreateServerResponse, Server } from '../../../proto/gen/strato/compute/v1/servers.js'
import type { Flavor, Keypair } from '../../../proto/gen/strato/compute/v1/compute.js'
import type { Image } from '../../../proto/gen/strato/image/v1/image.js'
import type { ListPortsResponse, Port } from '../../../proto/gen/strato/network/v1/network.js'

const run = promisify(execFile)

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root to drive qemu:///system and make namespaces')
} else {
  const tag = randomBytes(3).toString('hex')
  const bridge = `brl-${tag}`
  const outside = `strato-out-${tag}`
  const work = mkdtempSync(path.join(tmpdir(), 'strato-login-'))
  const keyFile = path.join(work, 'id')
  let cloud: TestCloud
  let agent: AgentProcess
  let image: Decoded<Image>
  let flavor: Decoded<Flavor>
  const made: string[] = []

  const inOutside = (cmd: string, ...args: string[]) => run('ip', ['netns', 'exec', outside, cmd, ...args], { timeout: 60_000 })
  const ping = (ip: string) => inOutside('busybox', 'ping', '-c', '1', '-W', '2', ip).then(() => true, () => false)
  /** Runs `command` in the guest at `ip` over SSH with the keypair's private key. */
  const ssh = (ip: string, command: string, user = GUEST_USER, timeoutS = 5) =>
    inOutside('ssh', '-i', keyFile, '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'LogLevel=ERROR',
      '-o', 'BatchMode=yes', '-o', `ConnectTimeout=${timeoutS}`, `${user}@${ip}`, command).then((r) => r.stdout)
  const canSsh = (ip: string) => ssh(ip, 'true', GUEST_USER, 3).then(() => true, () => false)
  const consoleOf = async (id: string) => (await call<ConsoleOutput>(cloud.c.servers, 'getConsoleOutput', { id }, cloud.s.adminToken)).output
  const portOf = async (id: string) => (await call<ListPortsResponse>(cloud.c.ports, 'listPorts', { deviceId: id }, cloud.s.adminToken)).ports[0]!
  const dnsmasqPids = async (networkId: string) =>
    (await run('pgrep', ['-f', `dnsmasq.*${networkId}`]).then((r) => r.stdout, () => '')).split('\n').filter(Boolean)

  t.before(async () => {
    await ensureLibvirtd()
    const guest = await buildGuestImage()
    cloud = await startCloud({ hosts: [], controller: { hosts: { heartbeatIntervalMs: 500, missedHeartbeats: 10 }, servers: { castRetryMs: 1_000, agentCallTimeoutMs: 20_000 } } })
    const created = await call<Image>(cloud.c.images, 'createImage', { name: 'demo-guest', diskFormat: 'qcow2', containerFormat: 'bare', visibility: 'public', minRam: 80 }, cloud.s.adminToken)
    await uploadImage(cloud.c.images, cloud.s.adminToken, created.id, readFileSync(guest.path))
    image = await call<Image>(cloud.c.images, 'getImage', { id: created.id }, cloud.s.adminToken)
    flavor = await call<Flavor>(cloud.c.flavors, 'createFlavor', { id: '84', name: 'm1.micro', vcpus: 1, ram: 128, disk: 1 }, cloud.s.adminToken)
    // The provider bridge, made here so "outside" can be plugged in before the agent uses it.
    await run('ip', ['link', 'add', bridge, 'type', 'bridge'])
    await run('ip', ['link', 'set', bridge, 'up'])
    await run('ip', ['netns', 'add', outside])
    await run('ip', ['link', 'add', `vo-${tag}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', outside])
    await run('ip', ['link', 'set', `vo-${tag}`, 'master', bridge, 'up'])
    await inOutside('ip', 'link', 'set', 'lo', 'up')
    await inOutside('ip', 'addr', 'add', '192.168.201.1/24', 'dev', 'eth0')
    await inOutside('ip', 'link', 'set', 'eth0', 'up')
    agent = await spawnAgent({
      host: `login-${tag}`, natsUrl: cloud.nats.url, driver: 'libvirt',
      env: {
        STRATO_AGENT_CONTROLLER: cloud.s.address,
        STRATO_AGENT_BRIDGE_MAPPINGS: `provider:${bridge}`,
        STRATO_AGENT_SHUTDOWN_TIMEOUT_MS: '5000',
        STRATO_AGENT_POWER_SYNC_INTERVAL_MS: '1000',
        STRATO_AGENT_DISK_GB: '50',
      },
    })
    await agent.running(60_000)
    await eventually(async () => (await cloud.s.controller.hosts.discover()).mapped.length > 0 || undefined, 10_000, 'the host to be discovered')
    const key = await call<Keypair>(cloud.c.keypairs, 'createKeypair', { name: 'mykey' }, cloud.s.adminToken)
    writeFileSync(keyFile, key.privateKey)
    chmodSync(keyFile, 0o600)
  })

  t.teardown(async () => {
    if (t.passing() === false || process.env.STRATO_TEST_LOG) t.comment(agent?.log().slice(-8000) ?? '')
    for (const uuid of made) {
      await virsh('destroy', `instance-${uuid}`).catch(() => {})
      await virsh('undefine', `instance-${uuid}`, '--nvram').catch(() => {})
    }
    await agent?.remove()
    await cloud?.close()
    await run('ip', ['netns', 'delete', outside]).catch(() => {})
    await run('ip', ['link', 'del', bridge]).catch(() => {})
    rmSync(work, { recursive: true, force: true })
  })

  /** Boots the demo guest and waits for its ready line; returns the server and its port. */
  async function boot(name: string, extra: object = {}): Promise<{ id: string; ip: string; port: Decoded<Port> }> {
    const r = await call<CreateServerResponse>(cloud.c.servers, 'createServer', {
      name, flavorRef: flavor.id, imageRef: image.id, networks: [{ uuid: cloud.network.id }], keyName: 'mykey', ...extra,
    }, cloud.s.adminToken)
    const id = r.servers[0]!.id
    made.push(id)
    const s = await cloud.waitFor(id, (x) => (x.status === 'ACTIVE' && x.taskState === '') || x.status === 'ERROR', cloud.s.adminToken, 120_000, `${name} ACTIVE`)
    if (s.status !== 'ACTIVE') throw new Error(`${name} is ${s.status}: ${s.fault?.message ?? ''}`)
    const port = await portOf(id)
    const ip = port.fixedIps[0]!.ipAddress
    const line = await eventually(async () => (await consoleOf(id)).split('\n').find((l) => l.includes(GUEST_READY)), 120_000, `${name}'s ready line`)
    t.match(line, ip, `${name} prints the address it leased, its port's fixed IP (${ip})`)
    return { id, ip, port }
  }

  let first: { id: string; ip: string; port: Decoded<Port> }
  let sgId: string

  t.test('the walkthrough: boot, then ping and ssh once the rules exist; the metadata service over SSH', { timeout: 600_000 }, async (t) => {
    first = await boot('provider-instance')
    const dhcpDir = path.join(agent.stateDir, 'dhcp', cloud.network.id)
    const log = readFileSync(path.join(dhcpDir, 'log'), 'utf8')
    t.match(log, new RegExp(`DHCPACK\\([^)]*\\) ${first.ip.replaceAll('.', '\\.')} ${first.port.macAddress}`), "the lease came from Strato's dnsmasq")
    const dhcpPorts = (await call<ListPortsResponse>(cloud.c.ports, 'listPorts', { networkId: cloud.network.id, deviceOwner: 'network:dhcp' }, cloud.s.adminToken)).ports
    t.equal(dhcpPorts.length, 1, 'one network:dhcp port for the network on this host')

    t.equal(await ping(first.ip), false, 'no ping before the ICMP rule')
    t.equal(await canSsh(first.ip), false, 'no ssh before the tcp/22 rule')
    sgId = first.port.securityGroups[0]!
    await call(cloud.c.securityGroups, 'createSecurityGroupRule', { securityGroupId: sgId, direction: 'ingress', protocol: 'icmp' }, cloud.s.adminToken)
    t.ok(await eventually(async () => (await ping(first.ip)) || undefined, 20_000, 'ping after the ICMP rule'), 'ping once ICMP is allowed')
    t.equal(await canSsh(first.ip), false, 'still no ssh')
    await call(cloud.c.securityGroups, 'createSecurityGroupRule', { securityGroupId: sgId, direction: 'ingress', protocol: 'tcp', portRangeMin: 22, portRangeMax: 22 }, cloud.s.adminToken)
    t.ok(await eventually(async () => (await canSsh(first.ip)) || undefined, 30_000, 'ssh after the tcp/22 rule'), 'ssh logs in once tcp/22 is allowed')

    const meta = JSON.parse(await ssh(first.ip, 'wget -qO- http://169.254.169.254/openstack/latest/meta_data.json')) as Record<string, unknown>
    const publicKey = (await call<Keypair>(cloud.c.keypairs, 'getKeypair', { name: 'mykey' }, cloud.s.adminToken)).publicKey
    t.match(meta, { uuid: first.id, name: 'provider-instance', public_keys: { mykey: publicKey.trim() } }, "the metadata service: this server's uuid, name and key")
  })

  t.test('a guest without a config drive gets its key from the metadata service, and only its own metadata', { timeout: 600_000 }, async (t) => {
    const second = await boot('no-drive', { configDrive: false })
    t.equal((await call<Server>(cloud.c.servers, 'getServer', { id: second.id }, cloud.s.adminToken)).configDrive, '', 'no config drive')
    t.ok(await eventually(async () => (await canSsh(second.ip)) || undefined, 30_000, 'ssh into the second guest'), 'ssh with the key it read from 169.254.169.254')
    const own = JSON.parse(await ssh(second.ip, 'wget -qO- http://169.254.169.254/openstack/latest/meta_data.json')) as { uuid: string }
    t.equal(own.uuid, second.id, 'its own uuid, not the first guest\'s')
    t.equal((await ssh(second.ip, 'wget -qO- http://169.254.169.254/latest/meta-data/local-ipv4')).trim(), second.ip, 'EC2 local-ipv4')
    // Spoofing: the first guest's address as the source of a metadata request (as root in the guest).
    const dhcpIp = (await call<ListPortsResponse>(cloud.c.ports, 'listPorts', { networkId: cloud.network.id, deviceOwner: 'network:dhcp' }, cloud.s.adminToken)).ports[0]!.fixedIps[0]!.ipAddress
    const spoofed = await ssh(second.ip, [
      `ip addr add ${first.ip}/32 dev eth0`,
      `ip route replace 169.254.169.254 via ${dhcpIp} src ${first.ip}`,
      // busybox 1.35's `wget -T` crashes: bound the wait with timeout(1) instead.
      'timeout 6 wget -qO- http://169.254.169.254/openstack/latest/meta_data.json; echo "exit=$?"',
      `ip route replace 169.254.169.254 via ${dhcpIp} src ${second.ip}`,
      `ip addr del ${first.ip}/32 dev eth0`,
    ].join('; '), 'root', 10)
    t.notMatch(spoofed, first.id, "the first guest's metadata is not given to a spoofed source")
    t.match(spoofed, /exit=[1-9]/, 'the request is dropped (anti-spoofing), wget fails')
    t.equal(JSON.parse(await ssh(second.ip, 'wget -qO- http://169.254.169.254/openstack/latest/meta_data.json')).uuid, second.id, 'and the guest is fine afterwards')
  })

  t.test('the agent SIGKILLed and restarted: DHCP and metadata answer again, one dnsmasq', { timeout: 300_000 }, async (t) => {
    const before = await dnsmasqPids(cloud.network.id)
    t.equal(before.length, 1, 'one dnsmasq for the network')
    await agent.kill('SIGKILL')
    await agent.restart()
    await new Promise((r) => setTimeout(r, 2_000))
    t.same(await dnsmasqPids(cloud.network.id), before, 'the same dnsmasq, adopted: no duplicate')
    const renewed = await ssh(first.ip, 'udhcpc -i eth0 -n -q -t 5 -s /bin/true >/dev/null 2>&1; echo "exit=$?"', 'root', 10)
    t.match(renewed, 'exit=0', 'the guest gets a lease again')
    const meta = JSON.parse(await ssh(first.ip, 'wget -qO- http://169.254.169.254/openstack/latest/meta_data.json')) as { uuid: string }
    t.equal(meta.uuid, first.id, 'the metadata service answers again')
  })

  t.test('servers and network deleted: no dnsmasq, namespace, veth or lease file left', { timeout: 300_000 }, async (t) => {
    const dhcpPort = (await call<ListPortsResponse>(cloud.c.ports, 'listPorts', { networkId: cloud.network.id, deviceOwner: 'network:dhcp' }, cloud.s.adminToken)).ports[0]!
    for (const id of made) await call(cloud.c.servers, 'deleteServer', { id }, cloud.s.adminToken)
    for (const id of made) await eventually(() => serverGone(cloud.c, id, cloud.s.adminToken), 120_000, 'the server to be gone')
    await call(cloud.c.networks, 'deleteNetwork', { id: cloud.network.id }, cloud.s.adminToken)
    const dhcpRoot = path.join(agent.stateDir, 'dhcp')
    const left = async () => ({
      dnsmasq: (await dnsmasqPids(cloud.network.id)).length,
      namespace: (await run('ip', ['netns', 'list'])).stdout.includes(dhcpNamespace(cloud.network.id)),
      veth: (await run('ip', ['link', 'show'])).stdout.includes(`tap${dhcpPort.id.slice(0, 11)}`),
      files: existsSync(dhcpRoot) ? readdirSync(dhcpRoot) : [],
    })
    const none = { dnsmasq: 0, namespace: false, veth: false, files: [] }
    let last = await left()
    await eventually(async () => { last = await left(); return JSON.stringify(last) === JSON.stringify(none) || undefined }, 20_000, 'the DHCP service to go').catch(() => undefined)
    t.same(last, none, 'no dnsmasq, no qdhcp- namespace, no veth of the DHCP port, no lease file or other DHCP file')
  })
}

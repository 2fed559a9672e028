/**
 * Integration: host-gateway.ts against the real kernel. A namespace stands for
 * the host (its bridge is the provider bridge), another for a guest plugged
 * into that bridge; the host becomes the subnet's gateway through a veth port
 * of the bridge, reaches the guest and is reached, with NAT rules when asked;
 * an agent that restarts keeps what is still wanted and removes the rest.
 * Needs root, iproute2, iptables, busybox (ping).
 */
import t from 'tap'
import { execFile } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { randomUUID } from 'node:crypto'
import { promisify } from 'node:util'
import { HostGateway, hostGatewayLinks, natChain } from '../../../../agent/net/host-gateway.js'
import { InvalidArgument } from '../../../../proto/errors.js'

const run = promisify(execFile)
const tag = `${process.pid}`
const hostNs = `strato-hg-h-${tag}`
const guestNs = `strato-hg-g-${tag}`
const inHost = (...args: string[]) => run('ip', ['netns', 'exec', hostNs, ...args])
const inGuest = (...args: string[]) => run('ip', ['netns', 'exec', guestNs, ...args])
const ping = (ns: string, to: string) => run('ip', ['netns', 'exec', ns, 'busybox', 'ping', '-c', '1', '-W', '2', to]).then(() => true, () => false)

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root for network namespaces')
} else {
  const stateDir = mkdtempSync(path.join(tmpdir(), 'strato-hg-'))
  const net = randomUUID()
  const net2 = randomUUID()
  await run('ip', ['netns', 'add', hostNs])
  await run('ip', ['netns', 'add', guestNs])
  t.teardown(async () => {
    await run('ip', ['netns', 'delete', hostNs]).catch(() => {})
    await run('ip', ['netns', 'delete', guestNs]).catch(() => {})
    rmSync(stateDir, { recursive: true, force: true })
  })
  // The "host": a provider bridge and lo; the "guest": a veth into that bridge, 192.168.201.5.
  await inHost('ip', 'link', 'set', 'lo', 'up')
  await inHost('ip', 'link', 'add', 'br-provider', 'type', 'bridge')
  await inHost('ip', 'link', 'set', 'br-provider', 'up')
  await inHost('ip', 'link', 'add', 'vguest', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', guestNs)
  await inHost('ip', 'link', 'set', 'vguest', 'master', 'br-provider', 'up')
  await inGuest('ip', 'addr', 'add', '192.168.201.5/24', 'dev', 'eth0')
  await inGuest('ip', 'link', 'set', 'eth0', 'up')
  await inGuest('ip', 'route', 'add', 'default', 'via', '192.168.201.1')

  const want = [{ networkId: net, bridge: 'br-provider', gateway: '192.168.201.1/24', cidr: '192.168.201.0/24' }]
  const links = hostGatewayLinks(net)
  const ifindex = async () => (JSON.parse((await inHost('ip', '-j', 'link', 'show', 'dev', links.outer)).stdout) as Array<{ ifindex: number }>)[0]!.ifindex
  const nat = async () => (await inHost('iptables-save', '-t', 'nat')).stdout

  t.test('the host takes the gateway address through a port of the bridge, and reaches the guest', async (t) => {
    t.equal(await ping(hostNs, '192.168.201.5'), false, 'before: no route to the guest')
    const gw = new HostGateway({ stateDir, nat: true, host: 'node-hg', netns: hostNs })
    await gw.apply(want)
    t.equal(links.outer.length <= 15 && links.inner.length <= 15, true, 'names Linux accepts')
    const master = (JSON.parse((await inHost('ip', '-j', 'link', 'show', 'dev', links.inner)).stdout) as Array<{ master?: string }>)[0]?.master
    t.equal(master, 'br-provider', 'one end is a port of the bridge')
    t.match((await inHost('ip', '-4', 'addr', 'show', 'dev', links.outer)).stdout, /inet 192\.168\.201\.1\/24/, 'the other holds the gateway address')
    t.equal(await ping(hostNs, '192.168.201.5'), true, 'the host pings the guest')
    t.equal(await ping(guestNs, '192.168.201.1'), true, 'the guest pings its gateway')
    const rules = await nat()
    t.match(rules, `-A POSTROUTING -j ${natChain('node-hg')}`, 'the NAT chain is hooked')
    t.match(rules, new RegExp(`-A ${natChain('node-hg')} -s 192\\.168\\.201\\.0/24 ! -d 192\\.168\\.201\\.0/24 .*-j MASQUERADE`), 'the subnet is masqueraded')
    t.equal((await inHost('sysctl', '-n', 'net.ipv4.ip_forward')).stdout.trim(), '1', 'forwarding on, in that namespace only')
  })

  t.test('an agent that restarts keeps what is wanted and removes the rest', async (t) => {
    const before = await ifindex()
    const again = new HostGateway({ stateDir, nat: true, host: 'node-hg', netns: hostNs })
    await again.apply(want)
    t.equal(await ifindex(), before, 'the same link: nothing re-made')
    // A second network wanted with the same subnet: refused with a warning, the first kept.
    await again.apply([...want, { networkId: net2, bridge: 'br-provider', gateway: '192.168.201.1/24', cidr: '192.168.201.0/24' }])
    await t.rejects(inHost('ip', 'link', 'show', 'dev', hostGatewayLinks(net2).outer), 'no second gateway for one subnet')
    await t.rejects(again.apply([{ ...want[0]!, gateway: '192.168.201.1' }]), InvalidArgument, 'a gateway without a prefix is refused')
    t.equal(await ifindex(), before, 'and changes nothing')

    await new HostGateway({ stateDir, nat: true, host: 'node-hg', netns: hostNs }).apply([])
    await t.rejects(inHost('ip', 'link', 'show', 'dev', links.outer), 'the pair is gone')
    await t.rejects(inHost('ip', 'link', 'show', 'dev', links.inner))
    t.notMatch(await nat(), /MASQUERADE/, 'the NAT rule is gone')
    t.equal(await ping(hostNs, '192.168.201.5'), false, 'the host no longer reaches the guest')
    await new HostGateway({ stateDir, nat: true, host: 'node-hg', netns: hostNs }).clear()
    t.notMatch(await nat(), natChain('node-hg'), 'clear() removes the chain too')
  })
}

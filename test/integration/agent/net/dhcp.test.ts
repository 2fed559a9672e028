/**
 * Integration: the agent's DHCP manager (agent/net/dhcp.ts) on its own, with
 * real dnsmasq, namespaces and veths on a bridge this test makes: namespace
 * listeners (the metadata service's hook), a recreated DHCP port, a new
 * subnet (dnsmasq restarted with the new range), a second manager adopting
 * the first's dnsmasq, and removal. Needs root and dnsmasq.
 */
import { execFile } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'
import { pino } from 'pino'
import { DnsmasqDhcp, dhcpInterfaces, dhcpNamespace } from '../../../../agent/net/dhcp.js'
import type { DhcpNetwork } from '../../../../proto/dhcp.js'

const run = promisify(execFile)
const hex = process.pid.toString(16).padStart(8, '0').slice(-8)
const NET = `${hex}-0000-4000-8000-00000000d0c1`
const S1 = `${hex}-0000-4000-8000-0000000000a1`
const S2 = `${hex}-0000-4000-8000-0000000000a2`
const PORT1 = `${hex.slice(0, 7)}1-0000-4000-8000-000000000001`
const PORT2 = `${hex.slice(0, 7)}2-0000-4000-8000-000000000002`
const BR = `bm${hex}`
const ns = dhcpNamespace(NET)
const dir = mkdtempSync(path.join(tmpdir(), 'strato-dhcp-unit-'))
const log = pino({ level: 'silent' })

const network = (portId = PORT1, subnets = [S1]): DhcpNetwork => ({
  networkId: NET, networkType: 'flat', physicalNetwork: 'provider', segmentationId: 0, mtu: 1400,
  port: { id: portId, macAddress: portId === PORT1 ? 'fa:16:3e:0d:0c:01' : 'fa:16:3e:0d:0c:02', fixedIps: subnets.map((s, i) => ({ subnetId: s, ipAddress: `10.${66 + i}.0.2`, cidr: `10.${66 + i}.0.0/24` })) },
  subnets: subnets.map((s, i) => ({ id: s, ipVersion: 4, cidr: `10.${66 + i}.0.0/24`, gatewayIp: `10.${66 + i}.0.1`, dnsNameservers: [], hostRoutes: [], enableDhcp: true, hasRouter: false })),
  hosts: [{ portId: PORT2, macAddress: 'fa:16:3e:0d:0c:99', fixedIps: [{ subnetId: S1, ipAddress: '10.66.0.9', cidr: '10.66.0.0/24' }], hostname: 'host-10-66-0-9' }],
  leaseSeconds: 600,
})
const pid = () => Number(readFileSync(path.join(dir, NET, 'pid'), 'utf8').trim())
const ip = async (...args: string[]) => (await run('ip', args)).stdout

t.teardown(async () => {
  await new DnsmasqDhcp({ dir, bridgeFor: () => BR, log }).removeAll().catch(() => undefined)
  await run('ip', ['netns', 'delete', ns]).catch(() => undefined)
  await run('ip', ['link', 'delete', BR, 'type', 'bridge']).catch(() => undefined)
  rmSync(dir, { recursive: true, force: true })
})

t.test('listeners see namespaces come and go; port and subnet changes; adoption; removal', async (t) => {
  const events: string[] = []
  const a = new DnsmasqDhcp({ dir, bridgeFor: () => BR, log })
  a.onNamespace({ namespaceUp: (id, n) => void events.push(`up ${id} ${n}`), namespaceDown: (id, n) => void events.push(`down ${id} ${n}`) })

  await a.apply([network()])
  t.same(events, [`up ${NET} ${ns}`], 'namespaceUp once it serves')
  t.same([...a.namespaces()], [[NET, ns]])
  const first = pid()
  t.match(await ip('-n', ns, '-o', 'addr', 'show'), /10\.66\.0\.2\/24[\s\S]*169\.254\.169\.254\/32/, 'the DHCP address and the metadata address')
  t.match(await ip('-n', ns, 'link', 'show', 'dev', dhcpInterfaces(PORT1).ns), /mtu 1400/, 'the network MTU')
  const late: string[] = []
  a.onNamespace({ namespaceUp: (id) => void late.push(id) })
  t.same(late, [NET], 'a listener that attaches later is told about namespaces already up')

  await a.apply([network()])
  t.equal(pid(), first, 'the same answer: the same dnsmasq')
  t.same(events.length, 1, 'and no new event')

  await a.apply([network(PORT2)])
  t.notOk(await ip('link', 'show', 'dev', dhcpInterfaces(PORT1).host).then(() => true, () => false), 'a recreated DHCP port: the old veth is gone')
  t.ok(await ip('link', 'show', 'dev', dhcpInterfaces(PORT2).host).then(() => true, () => false), 'the new one is on the bridge')
  t.not(pid(), first, 'dnsmasq restarted on the new interface')
  t.ok(existsSync(`/run/netns/${ns}`), 'in the same namespace')

  const second = pid()
  await a.apply([network(PORT2, [S1, S2])])
  t.not(pid(), second, 'a new subnet: dnsmasq restarted with its range')
  t.match(readFileSync(`/proc/${pid()}/cmdline`, 'utf8'), `set:subnet-${S2},10.67.0.0,static,255.255.255.0,600s`)
  t.match(readFileSync(path.join(dir, NET, 'opts'), 'utf8'), `tag:subnet-${S2},option:classless-static-route,169.254.169.254/32,10.67.0.2,0.0.0.0/0,10.67.0.1`)

  // Another manager on the same files (an agent restarted after SIGKILL) adopts the running dnsmasq.
  const running = pid()
  const b = new DnsmasqDhcp({ dir, bridgeFor: () => BR, log })
  const adopted: string[] = []
  b.onNamespace({ namespaceUp: (id) => void adopted.push(id) })
  await b.apply([network(PORT2, [S1, S2])])
  t.equal(pid(), running, 'adopted: the same dnsmasq')
  t.same(adopted, [NET], 'and its namespace announced up')

  await b.apply([{ ...network(PORT2, [S1, S2]), subnets: network(PORT2, [S1, S2]).subnets.map((s) => ({ ...s, enableDhcp: false })) }])
  t.same(adopted, [NET], 'DHCP off on every subnet: not served…')
  t.notOk(existsSync(`/run/netns/${ns}`), '…so the namespace goes')
  t.notOk(existsSync(`/proc/${running}`), 'with its dnsmasq')
  t.notOk(existsSync(path.join(dir, NET)), 'and its files')
  t.same(b.namespaces(), new Map())
})

t.test('a network that cannot be plumbed fails by name, and leaves nothing behind', async (t) => {
  const bad = new DnsmasqDhcp({ dir, bridgeFor: () => 'not a bridge!', log })
  await t.rejects(bad.apply([network()]), { name: 'InvalidArgument', message: /invalid bridge name/ })
  await bad.removeAll()
  t.notOk(existsSync(`/run/netns/${ns}`))
})

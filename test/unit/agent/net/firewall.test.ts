// The iptables rules a port's security groups become (agent/net/firewall.ts),
// as text: matches per protocol, per family, stale chains, and refusals. The
// same rules on real traffic: test/integration/agent/firewall.test.ts.
import t from 'tap'
import { ownChains, renderRules, tapName, topChain, type FirewallRule, type PortFirewall } from '../../../../agent/net/firewall.js'

const rule = (r: Partial<FirewallRule> & Pick<FirewallRule, 'direction'>): FirewallRule => ({ ethertype: 'IPv4', protocol: -1, portMin: 0, portMax: 0, remotePrefix: '', ...r })
const p: PortFirewall = {
  portId: '0123abcd-ef01-4000-8000-000000000001',
  macAddress: 'fa:16:3e:00:00:01',
  fixedIps: ['10.0.0.5', 'fd00::5'],
  rules: [
    rule({ direction: 'ingress', protocol: 1, portMin: 8, portMax: 0 }),
    rule({ direction: 'ingress', protocol: 1, portMin: -1, portMax: -1 }),
    rule({ direction: 'ingress', protocol: 17, portMin: 5000, portMax: 5100, remotePrefix: '192.168.0.0/16' }),
    rule({ direction: 'ingress', protocol: 47 }),
    rule({ direction: 'ingress', ethertype: 'IPv6', protocol: 58, portMin: 128, portMax: -1 }),
    rule({ direction: 'ingress', ethertype: 'IPv6', protocol: 6, portMin: 22, portMax: 22, remotePrefix: 'fd00::/64' }),
    rule({ direction: 'egress', protocol: 6, portMin: 443, portMax: 443, remotePrefix: '10.1.0.0/24' }),
    rule({ direction: 'egress', ethertype: 'IPv6' }),
  ],
}
const top = topChain('node1')

t.test('names', async (t) => {
  t.equal(tapName(p.portId), 'tap0123abcd-ef', 'tap + 11 characters of the port id (15 at most)')
  t.match(top, /^strato-fw-[0-9a-f]{8}$/)
  t.not(topChain('node2'), top, 'one top chain per host')
})

t.test('IPv4: each rule in its chain, in its own family only', async (t) => {
  const v4 = renderRules(top, [p], false)
  const i = 'strato-i-0123abcd-ef'
  const o = 'strato-o-0123abcd-ef'
  for (const line of [
    `-A ${top} -m physdev --physdev-out tap0123abcd-ef --physdev-is-bridged -j ${i}`,
    `-A ${top} -m physdev --physdev-in tap0123abcd-ef -j ${o}`,
    `-A ${i} -m state --state RELATED,ESTABLISHED -j RETURN`,
    `-A ${i} -p icmp -m icmp --icmp-type 8/0 -j RETURN`,
    `-A ${i} -p icmp -j RETURN`,
    `-A ${i} -s 192.168.0.0/16 -p 17 -m multiport --dports 5000:5100 -j RETURN`,
    `-A ${i} -p 47 -j RETURN`,
    `-A ${i} -j DROP`,
    `-A strato-s-0123abcd-ef -s 10.0.0.5/32 -m mac --mac-source fa:16:3e:00:00:01 -j RETURN`,
    `-A ${o} -d 10.1.0.0/24 -p 6 -m multiport --dports 443 -j RETURN`,
    `-A ${o} -j DROP`,
  ]) t.ok(v4.split('\n').includes(line), line)
  t.notMatch(v4, /fd00|ipv6-icmp/, 'nothing of IPv6 in the IPv4 rules')
  t.ok(v4.indexOf(`-A ${o} -j strato-s-0123abcd-ef`) < v4.indexOf(`-A ${o} -m state --state RELATED,ESTABLISHED`), 'anti-spoofing comes before anything is let out')
})

t.test('IPv6: neighbour discovery, link-local, ICMPv6 types', async (t) => {
  const v6 = renderRules(top, [p], true).split('\n')
  for (const line of [
    '-A strato-i-0123abcd-ef -p ipv6-icmp -m icmp6 --icmpv6-type 135 -j RETURN',
    '-A strato-i-0123abcd-ef -p ipv6-icmp -m icmp6 --icmpv6-type 128 -j RETURN',
    '-A strato-i-0123abcd-ef -s fd00::/64 -p 6 -m multiport --dports 22 -j RETURN',
    '-A strato-s-0123abcd-ef -s fd00::5/128 -m mac --mac-source fa:16:3e:00:00:01 -j RETURN',
    '-A strato-s-0123abcd-ef -s fe80::/64 -m mac --mac-source fa:16:3e:00:00:01 -j RETURN',
    '-A strato-o-0123abcd-ef -j RETURN',
  ]) t.ok(v6.includes(line), line)
  t.notOk(v6.some((l) => l.includes('10.0.0.5') || l.includes('-p icmp ')), 'nothing of IPv4')
})

t.test('a port without addresses of a family sends nothing of it; no rules, nothing comes in', async (t) => {
  const bare = renderRules(top, [{ ...p, fixedIps: [], rules: [] }], false).split('\n')
  t.same(bare.filter((l) => l.startsWith('-A strato-s-')), ['-A strato-s-0123abcd-ef -j DROP'])
  t.same(bare.filter((l) => l.startsWith('-A strato-i-') && l.includes('RETURN')), [
    '-A strato-i-0123abcd-ef -m state --state RELATED,ESTABLISHED -j RETURN',
    '-A strato-i-0123abcd-ef -p udp -m udp --sport 67 --dport 68 -j RETURN',
  ], 'only established traffic and DHCP answers')
})

t.test('DHCP passes as in Neutron: the client out (also from 0.0.0.0), answers in, no guest DHCP server', async (t) => {
  const v4 = renderRules(top, [p], false).split('\n')
  const o = v4.filter((l) => l.startsWith('-A strato-o-'))
  const at = (line: string) => o.indexOf(line)
  t.ok(at('-A strato-o-0123abcd-ef -s 0.0.0.0/32 -d 255.255.255.255/32 -p udp -m udp --sport 68 --dport 67 -j RETURN') >= 0, 'discover/request from 0.0.0.0')
  t.ok(at('-A strato-o-0123abcd-ef -s 0.0.0.0/32 -d 255.255.255.255/32 -p udp -m udp --sport 68 --dport 67 -j RETURN') < at('-A strato-o-0123abcd-ef -j strato-s-0123abcd-ef'), 'before the spoofing check')
  t.ok(at('-A strato-o-0123abcd-ef -p udp -m udp --sport 67 --dport 68 -j DROP') > at('-A strato-o-0123abcd-ef -j strato-s-0123abcd-ef'), 'a guest answering DHCP is dropped')
  t.ok(at('-A strato-o-0123abcd-ef -p udp -m udp --sport 67 --dport 68 -j DROP') < at('-A strato-o-0123abcd-ef -d 10.1.0.0/24 -p 6 -m multiport --dports 443 -j RETURN'), 'before the egress rules, whatever they say')
  const v6 = renderRules(top, [p], true).split('\n')
  t.ok(v6.includes('-A strato-i-0123abcd-ef -p udp -m udp --sport 547 --dport 546 -j RETURN'), 'DHCPv6 answers in')
  t.ok(v6.includes('-A strato-o-0123abcd-ef -p udp -m udp --sport 547 --dport 546 -j DROP'), 'no guest DHCPv6 server')
})

t.test('chains of ports that are gone are emptied and removed in the same transaction', async (t) => {
  const text = renderRules(top, [p], false, [top, 'strato-i-gone0000000', 'strato-o-gone0000000', 'strato-s-gone0000000'])
  for (const c of ['strato-i-gone0000000', 'strato-o-gone0000000', 'strato-s-gone0000000']) {
    t.ok(text.includes(`:${c} - [0:0]\n`), `${c} flushed`)
    t.ok(text.includes(`-X ${c}\n`), `${c} deleted`)
  }
  t.ok(text.trimEnd().endsWith('COMMIT'))
  t.notMatch(renderRules(top, [], false), /-A /, 'no ports: an empty top chain')
})

t.test("an agent's own chains are those its top chain reaches", async (t) => {
  const dump = [
    `-A FORWARD -j ${top}`, '-A FORWARD -j strato-fw-other000', `-A INPUT -j ${top}`,
    `:${top} - [0:0]`, ':strato-fw-other000 - [0:0]', ':strato-i-aaaaaaaaaaa - [0:0]', ':strato-s-aaaaaaaaaaa - [0:0]', ':strato-o-aaaaaaaaaaa - [0:0]', ':strato-i-bbbbbbbbbbb - [0:0]',
    `-A ${top} -m physdev --physdev-out tapaaaaaaaaaaa --physdev-is-bridged -j strato-i-aaaaaaaaaaa`,
    `-A ${top} -m physdev --physdev-in tapaaaaaaaaaaa -j strato-o-aaaaaaaaaaa`,
    '-A strato-o-aaaaaaaaaaa -j strato-s-aaaaaaaaaaa',
    '-A strato-fw-other000 -m physdev --physdev-out tapbbbbbbbbbbb --physdev-is-bridged -j strato-i-bbbbbbbbbbb',
  ].join('\n')
  t.same(ownChains(dump, top).sort(), [top, 'strato-i-aaaaaaaaaaa', 'strato-o-aaaaaaaaaaa', 'strato-s-aaaaaaaaaaa'].sort())
  const shared = `${dump}\n-A strato-fw-other000 -m physdev --physdev-out tapaaaaaaaaaaa --physdev-is-bridged -j strato-i-aaaaaaaaaaa`
  t.same(ownChains(shared, top).sort(), [top, 'strato-o-aaaaaaaaaaa', 'strato-s-aaaaaaaaaaa'].sort(), 'a port chain another agent also jumps to is not ours to remove')
  const both = `${shared}\n-A strato-fw-other000 -m physdev --physdev-in tapaaaaaaaaaaa -j strato-o-aaaaaaaaaaa`
  t.same(ownChains(both, top), [top], 'nor what such a chain jumps to')
})

t.test('what could inject into iptables-restore is refused', async (t) => {
  t.throws(() => renderRules(top, [{ ...p, portId: 'x -j ACCEPT' }], false), /refusing a firewall/)
  t.throws(() => renderRules(top, [{ ...p, macAddress: 'fa:16:3e:00:00:01 -j ACCEPT' }], false), /refusing a firewall/)
  t.throws(() => renderRules(top, [{ ...p, fixedIps: ['10.0.0.5 -j ACCEPT'] }], false), /not an address or CIDR/)
  t.throws(() => renderRules(top, [{ ...p, rules: [rule({ direction: 'ingress', remotePrefix: '0.0.0.0/0\n-A INPUT -j ACCEPT' })] }], false), /not an address or CIDR/)
})

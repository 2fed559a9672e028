// Security group rule normalisation: what makes two rules the same, and what is refused.
import t from 'tap'
import { defaultRules, normaliseRule } from '../../../../controller/network/sg-rules.js'

t.test('defaults as openstackclient sends them, and duplicates share a canonical form', async (t) => {
  const icmp = normaliseRule({ protocol: 'icmp' })
  t.match(icmp, { direction: 'ingress', ethertype: 'IPv4', protocol: 'icmp', remoteIpPrefix: '0.0.0.0/0', remoteGroupId: null, portRangeMin: null })
  const same = [{ protocol: 'ICMP', remoteIpPrefix: '0.0.0.0/0' }, { protocol: '1' }, { protocol: 'icmp', direction: 'INGRESS', ethertype: 'ipv4' }]
  for (const r of same) t.equal(normaliseRule(r).canonical, icmp.canonical, JSON.stringify(r))
  t.not(normaliseRule({ protocol: 'icmp', remoteIpPrefix: '10.0.0.0/8' }).canonical, icmp.canonical)
  t.equal(normaliseRule({ protocol: 'tcp', portRangeMin: 22, portRangeMax: 22 }).canonical, normaliseRule({ protocol: '6', portRangeMin: 22, portRangeMax: 22 }).canonical)
  t.match(normaliseRule({ protocol: 'icmp', ethertype: 'IPv6' }), { protocol: 'ipv6-icmp', remoteIpPrefix: '::/0' })
  t.match(normaliseRule({ protocol: 'icmpv6', ethertype: 'IPv6' }), { protocol: 'ipv6-icmp' })
  t.match(normaliseRule({ protocol: 'any' }), { protocol: null })
  t.match(normaliseRule({ remoteGroupId: 'g1' }), { remoteIpPrefix: null, remoteGroupId: 'g1' })
})

t.test('default rules: egress for every group, ingress from itself for default', async (t) => {
  t.same(defaultRules('g', false).map((r) => `${r.direction}/${r.ethertype}`), ['egress/IPv4', 'egress/IPv6'])
  const d = defaultRules('g', true)
  t.same(d.map((r) => `${r.direction}/${r.ethertype}/${r.remoteGroupId ?? ''}`), ['egress/IPv4/', 'egress/IPv6/', 'ingress/IPv4/g', 'ingress/IPv6/g'])
  t.equal(d[2]!.canonical, normaliseRule({ remoteGroupId: 'g' }).canonical, 'the same rule added by hand is a duplicate')
  t.equal(d[0]!.canonical, normaliseRule({ direction: 'egress' }).canonical)
})

t.test('refusals name the field', async (t) => {
  const cases: Array<[object, string]> = [
    [{ direction: 'out' }, 'direction'],
    [{ ethertype: 'IPv5' }, 'ethertype'],
    [{ protocol: 'tcpp' }, 'protocol'],
    [{ protocol: '300' }, 'protocol'],
    [{ protocol: 'ipv6-icmp', ethertype: 'IPv4' }, 'protocol'],
    [{ protocol: 'tcp', portRangeMin: 22 }, 'port_range_max'],
    [{ protocol: 'udp', portRangeMin: 70000, portRangeMax: 70000 }, 'port_range_min'],
    [{ protocol: 'tcp', portRangeMin: 30, portRangeMax: 20 }, 'port_range_min'],
    [{ protocol: 'icmp', portRangeMin: -1 }, 'port_range_min'],
    [{ portRangeMax: 5 }, 'port_range_max'],
    [{ remoteIpPrefix: '::/0' }, 'remote_ip_prefix'],
    [{ remoteIpPrefix: '10.0.0.0/8', remoteGroupId: 'g' }, 'remote_ip_prefix'],
  ]
  for (const [r, field] of cases) t.throws(() => normaliseRule(r), { name: 'InvalidArgument', field }, JSON.stringify(r))
})

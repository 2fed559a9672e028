// Address and CIDR parsing, canonical text and sortable keys.
import t from 'tap'
import { cidrText, formatIp, ipKey, parseCidr, parseIp } from '../../../../controller/network/ip.js'

t.test('IPv4: strict dotted quads', async (t) => {
  t.same(parseIp('192.168.201.1'), { version: 4, value: 0xc0a8c901n })
  t.same(parseIp('0.0.0.0'), { version: 4, value: 0n })
  t.same(parseIp('255.255.255.255'), { version: 4, value: 0xffffffffn })
  for (const bad of ['256.0.0.1', '1.2.3', '1.2.3.4.5', '01.2.3.4', '1.2.3.-4', '', ' ', 'a.b.c.d', '1.2.3.4/24']) t.equal(parseIp(bad), undefined, `'${bad}' is not an address`)
  t.equal(formatIp(4, 0xc0a8c901n), '192.168.201.1')
})

t.test('IPv6: every spelling parses; text is RFC 5952', async (t) => {
  const cases: Array<[string, string]> = [
    ['2001:DB8:0:0:0:0:0:1', '2001:db8::1'],
    ['2001:db8::1', '2001:db8::1'],
    ['::', '::'],
    ['::1', '::1'],
    ['fe80::', 'fe80::'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
    ['2001:0db8:0000:0001:0000:0000:0000:0001', '2001:db8:0:1::1'],
    ['2001:db8:1:2:3:4:5:6', '2001:db8:1:2:3:4:5:6'],
    ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'],
    ['::ffff:192.168.0.1', '::ffff:c0a8:1'],
  ]
  for (const [input, canonical] of cases) {
    const ip = parseIp(input)
    t.equal(ip?.version, 6, `${input} is IPv6`)
    t.equal(formatIp(6, ip!.value), canonical, `${input} → ${canonical}`)
  }
  for (const bad of ['1::2::3', '12345::', ':::', '1:2:3:4:5:6:7:8:9', 'g::1', '1:2:3:4:5:6:7::8', '::ffff:1.2.3', 'fe80::1%eth0']) t.equal(parseIp(bad), undefined, `'${bad}' is not an address`)
})

t.test('keys sort like the addresses', async (t) => {
  const v4 = ['10.0.0.2', '10.0.0.10', '10.0.1.1', '9.255.255.255'].map((a) => ipKey(4, parseIp(a)!.value))
  t.same([...v4].sort(), [v4[3], v4[0], v4[1], v4[2]])
  t.equal(ipKey(4, 1n).length, 8)
  t.equal(ipKey(6, 1n).length, 32)
})

t.test('CIDRs: strict for subnets, normalised for rule prefixes', async (t) => {
  const c = parseCidr('cidr', '192.168.201.0/24', { strict: true })
  t.match(c, { version: 4, prefix: 24, first: 0xc0a8c900n, last: 0xc0a8c9ffn })
  t.equal(cidrText(parseCidr('cidr', '2001:DB8:0::/48', { strict: true })), '2001:db8::/48')
  t.throws(() => parseCidr('cidr', '192.168.201.1/24', { strict: true }), { field: 'cidr', message: /did you mean 192\.168\.201\.0\/24/ })
  t.equal(cidrText(parseCidr('p', '192.168.201.1/24', { strict: false })), '192.168.201.0/24')
  t.equal(cidrText(parseCidr('p', '10.1.2.3', { strict: false, allowBare: true })), '10.1.2.3/32')
  t.throws(() => parseCidr('cidr', '10.1.2.3', { strict: true }), { message: /prefix length is missing/ })
  t.throws(() => parseCidr('cidr', '10.0.0.0/33', { strict: true }), { message: /0-32/ })
  t.throws(() => parseCidr('cidr', '::/129', { strict: true }), { message: /0-128/ })
  t.throws(() => parseCidr('cidr', '10.0.0.0/-1', { strict: true }), { message: /invalid prefix length/ })
})

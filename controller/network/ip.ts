/**
 * IPv4/IPv6 addresses and CIDRs as bigints: strict parsing, canonical text
 * (RFC 5952 for IPv6), and fixed-width hex keys whose string order is the
 * numeric order, so the database can sort and range-scan addresses.
 */
import { InvalidArgument } from '../../proto/errors.js'

export type IpVersion = 4 | 6

export interface Ip {
  version: IpVersion
  value: bigint
}

export interface Cidr {
  version: IpVersion
  prefix: number
  /** The network address. */
  first: bigint
  /** The last address (IPv4: broadcast). */
  last: bigint
}

const BITS = { 4: 32, 6: 128 } as const
const V4_OCTET = '(25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)'
const V4_RE = new RegExp(`^${V4_OCTET}\\.${V4_OCTET}\\.${V4_OCTET}\\.${V4_OCTET}$`)

function parseV4(text: string): bigint | undefined {
  const m = V4_RE.exec(text)
  if (!m) return undefined
  return m.slice(1).reduce((acc, o) => (acc << 8n) | BigInt(o), 0n)
}

function parseV6(text: string): bigint | undefined {
  if (!/^[0-9a-fA-F:.]+$/.test(text) || text.length > 45) return undefined
  let groups: string[]
  // An embedded IPv4 tail (::ffff:1.2.3.4) is two groups.
  let tail: bigint | undefined
  let body = text
  const lastColon = text.lastIndexOf(':')
  if (text.includes('.')) {
    tail = parseV4(text.slice(lastColon + 1))
    if (tail === undefined) return undefined
    body = text.slice(0, lastColon + 1) + '0:0'
  }
  const halves = body.split('::')
  if (halves.length > 2) return undefined
  const split = (s: string) => (s === '' ? [] : s.split(':'))
  if (halves.length === 2) {
    const head = split(halves[0]!)
    const rest = split(halves[1]!)
    const missing = 8 - head.length - rest.length
    if (missing < 1) return undefined
    groups = [...head, ...Array<string>(missing).fill('0'), ...rest]
  } else {
    groups = split(body)
  }
  if (groups.length !== 8) return undefined
  let v = 0n
  for (const g of groups) {
    if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return undefined
    v = (v << 16n) | BigInt(parseInt(g, 16))
  }
  if (tail !== undefined) v = (v & ~0xffffffffn) | tail
  return v
}

/** Parses an address; undefined if it is not one. */
export function parseIp(text: string): Ip | undefined {
  const s = text.trim()
  const v4 = parseV4(s)
  if (v4 !== undefined) return { version: 4, value: v4 }
  const v6 = parseV6(s)
  if (v6 !== undefined) return { version: 6, value: v6 }
  return undefined
}

/** Parses an address or throws InvalidArgument naming the field. */
export function requireIp(field: string, text: string | undefined, version?: IpVersion): Ip {
  const ip = parseIp(text ?? '')
  if (!ip) throw new InvalidArgument(`${field} '${text ?? ''}' is not an IPv4 or IPv6 address`, { field })
  if (version && ip.version !== version) throw new InvalidArgument(`${field} '${text}' is an IPv${ip.version} address; IPv${version} is required here`, { field })
  return ip
}

export function formatIp(version: IpVersion, value: bigint): string {
  if (version === 4) return [24n, 16n, 8n, 0n].map((s) => String((value >> s) & 0xffn)).join('.')
  const groups = Array.from({ length: 8 }, (_, i) => Number((value >> BigInt((7 - i) * 16)) & 0xffffn))
  // RFC 5952: compress the longest run of two or more zero groups (the first one on ties).
  let best = -1
  let bestLen = 1
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++
      continue
    }
    let j = i
    while (j < 8 && groups[j] === 0) j++
    if (j - i > bestLen) {
      best = i
      bestLen = j - i
    }
    i = j
  }
  const hex = groups.map((g) => g.toString(16))
  if (best < 0) return hex.join(':')
  return `${hex.slice(0, best).join(':')}::${hex.slice(best + bestLen).join(':')}`
}

/** Sortable key: fixed-width hex (8 digits for IPv4, 32 for IPv6). */
export function ipKey(version: IpVersion, value: bigint): string {
  return value.toString(16).padStart(version === 4 ? 8 : 32, '0')
}

export function keyToValue(key: string): bigint {
  return BigInt(`0x${key}`)
}

export function cidrText(c: Cidr): string {
  return `${formatIp(c.version, c.first)}/${c.prefix}`
}

export function cidrContains(c: Cidr, ip: Ip): boolean {
  return c.version === ip.version && ip.value >= c.first && ip.value <= c.last
}

export function cidrsOverlap(a: Cidr, b: Cidr): boolean {
  return a.version === b.version && a.first <= b.last && b.first <= a.last
}

/**
 * Parses `address/prefix`. `strict`: host bits must be clear (subnets); otherwise
 * they are cleared (rule prefixes, as Neutron normalises them). A bare address
 * is a host prefix when `allowBare`.
 */
export function parseCidr(field: string, text: string | undefined, opts: { strict: boolean; allowBare?: boolean }): Cidr {
  const s = (text ?? '').trim()
  if (s === '') throw new InvalidArgument(`${field} must not be empty`, { field })
  const slash = s.indexOf('/')
  const addrText = slash < 0 ? s : s.slice(0, slash)
  const ip = parseIp(addrText)
  if (!ip) throw new InvalidArgument(`${field} '${s}' is not a CIDR: '${addrText}' is not an IP address`, { field })
  const bits = BITS[ip.version]
  let prefix: number = bits
  if (slash < 0) {
    if (!opts.allowBare) throw new InvalidArgument(`${field} '${s}' is not a CIDR: the prefix length is missing (e.g. ${addrText}/24)`, { field })
  } else {
    const p = s.slice(slash + 1)
    if (!/^\d{1,3}$/.test(p) || Number(p) > bits) throw new InvalidArgument(`${field} '${s}' has an invalid prefix length '${p}': IPv${ip.version} prefixes are 0-${bits}`, { field })
    prefix = Number(p)
  }
  const hostMask = (1n << BigInt(bits - prefix)) - 1n
  const first = ip.value & ~hostMask
  const c: Cidr = { version: ip.version, prefix, first, last: first | hostMask }
  if (opts.strict && first !== ip.value) {
    throw new InvalidArgument(`${field} '${s}' has host bits set; did you mean ${cidrText(c)}?`, { field })
  }
  return c
}

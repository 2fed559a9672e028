/**
 * IP address management: which addresses of a subnet are allocatable, and
 * handing them out. Allocation runs inside the caller's transaction (SQLite
 * serialises transactions; on PostgreSQL a lock per network does), and
 * `ip_allocations` is UNIQUE per (subnet, address) as the backstop, so one
 * address is never given twice.
 *
 * Finding a free address costs one indexed MAX() query while the pool has room
 * above its highest allocation; only then are the pool's allocations walked in
 * address order to reuse released ones.
 */
import { Conflict, InvalidArgument, ResourceExhausted } from '../../proto/errors.js'
import type { Trx } from '../quota/quota.js'
import { lockNames } from '../store/engine.js'
import type { SubnetTable } from '../store/schema.js'
import { cidrContains, formatIp, ipKey, keyToValue, parseCidr, parseIp, requireIp, type Cidr, type IpVersion } from './ip.js'

export interface Pool {
  first: bigint
  last: bigint
}

export interface SubnetIpam {
  id: string
  networkId: string
  version: IpVersion
  cidr: Cidr
  gateway: bigint | undefined
  pools: Pool[]
  createdAt: string
}

export interface FixedIpRequest {
  subnetId?: string
  ipAddress?: string
}

export interface FixedIp {
  subnetId: string
  ipAddress: string
}

/** Addresses a port may hold: IPv4 loses the network and broadcast addresses, IPv6 the subnet-router anycast one. */
export function usableRange(c: Cidr): Pool {
  return { first: c.first + 1n, last: c.version === 4 ? c.last - 1n : c.last }
}

/** The whole usable range, minus the gateway. */
export function defaultPools(c: Cidr, gateway: bigint | undefined): Pool[] {
  const r = usableRange(c)
  if (gateway === undefined || gateway < r.first || gateway > r.last) return [r]
  const out: Pool[] = []
  if (gateway > r.first) out.push({ first: r.first, last: gateway - 1n })
  if (gateway < r.last) out.push({ first: gateway + 1n, last: r.last })
  return out
}

export function ipamOf(row: Pick<SubnetTable, 'id' | 'network_id' | 'cidr' | 'gateway_ip' | 'allocation_pools' | 'created_at'>): SubnetIpam {
  const cidr = parseCidr('cidr', row.cidr, { strict: true })
  const pools = (JSON.parse(row.allocation_pools) as Array<{ start: string; end: string }>).map((p) => ({ first: parseIp(p.start)!.value, last: parseIp(p.end)!.value }))
  return { id: row.id, networkId: row.network_id, version: cidr.version, cidr, gateway: row.gateway_ip ? parseIp(row.gateway_ip)!.value : undefined, pools, createdAt: row.created_at }
}

/** The lowest free address of the subnet's pools, or undefined when they are used up. */
export async function nextFree(trx: Trx, s: SubnetIpam): Promise<bigint | undefined> {
  for (const pool of s.pools) {
    const lo = ipKey(s.version, pool.first)
    const hi = ipKey(s.version, pool.last)
    const top = await trx
      .selectFrom('ip_allocations')
      .select((eb) => eb.fn.max('ip_key').as('k'))
      .where('subnet_id', '=', s.id)
      .where('ip_key', '>=', lo)
      .where('ip_key', '<=', hi)
      .executeTakeFirst()
    if (!top?.k) return pool.first
    const above = keyToValue(top.k) + 1n
    if (above <= pool.last) return above
    // The top of the pool is taken: reuse the lowest released address.
    const used = await trx.selectFrom('ip_allocations').select('ip_key').where('subnet_id', '=', s.id).where('ip_key', '>=', lo).where('ip_key', '<=', hi).orderBy('ip_key').execute()
    let candidate = pool.first
    for (const u of used) {
      const v = keyToValue(u.ip_key)
      if (v !== candidate) break
      candidate = v + 1n
    }
    if (candidate <= pool.last) return candidate
  }
  return undefined
}

async function taken(trx: Trx, s: SubnetIpam, value: bigint): Promise<string | undefined> {
  const row = await trx.selectFrom('ip_allocations').select('port_id').where('subnet_id', '=', s.id).where('ip_key', '=', ipKey(s.version, value)).executeTakeFirst()
  return row?.port_id
}

/**
 * Allocates the requested fixed IPs (or, with none requested, one address
 * from the first IPv4 subnet with room, else the first IPv6 one) and records
 * them for the port. `subnets` are the network's subnets, oldest first.
 * `allowGateway`: a subnet's gateway address may be requested (a router interface).
 */
export async function allocate(trx: Trx, portId: string, networkId: string, subnets: SubnetIpam[], requested: FixedIpRequest[], what: { networkName: string; allowGateway?: boolean }): Promise<FixedIp[]> {
  // One allocation at a time per network (across controllers on PostgreSQL), so the lowest free address is free.
  await lockNames(trx, [`ipam:${networkId}`])
  const out: Array<{ s: SubnetIpam; value: bigint }> = []
  const seen = new Set<string>()
  const add = (s: SubnetIpam, value: bigint, field: string) => {
    const key = `${s.id}/${value}`
    if (seen.has(key)) throw new InvalidArgument(`${formatIp(s.version, value)} is requested twice`, { field })
    seen.add(key)
    out.push({ s, value })
  }
  if (requested.length === 0) {
    const order = [...subnets.filter((s) => s.version === 4), ...subnets.filter((s) => s.version === 6)]
    if (order.length > 0) {
      let got = false
      for (const s of order) {
        const v = await nextFree(trx, s)
        if (v !== undefined) {
          add(s, v, 'fixed_ips')
          got = true
          break
        }
      }
      if (!got) throw new ResourceExhausted(`no more IP addresses available on network '${what.networkName}' (${networkId}): every allocation pool of its ${order.length} subnet(s) is in use`)
    }
  }
  for (const [i, r] of requested.entries()) {
    const field = `fixed_ips[${i}]`
    let s: SubnetIpam | undefined
    if (r.subnetId) {
      s = subnets.find((x) => x.id === r.subnetId)
      if (!s) throw new InvalidArgument(`subnet ${r.subnetId} is not on network ${networkId}`, { field: `${field}.subnet_id` })
    }
    if (r.ipAddress) {
      const ip = requireIp(`${field}.ip_address`, r.ipAddress, s?.version)
      if (!s) {
        s = subnets.find((x) => cidrContains(x.cidr, ip))
        if (!s) throw new InvalidArgument(`no subnet of network ${networkId} contains ${r.ipAddress}`, { field: `${field}.ip_address` })
      }
      const text = formatIp(ip.version, ip.value)
      if (!cidrContains(s.cidr, ip)) throw new InvalidArgument(`${text} is not in subnet ${s.id} (${formatIp(s.version, s.cidr.first)}/${s.cidr.prefix})`, { field: `${field}.ip_address` })
      const usable = usableRange(s.cidr)
      if (ip.value < usable.first || ip.value > usable.last) throw new InvalidArgument(`${text} is the network${s.version === 4 ? ' or broadcast' : ''} address of subnet ${s.id}`, { field: `${field}.ip_address` })
      // Only a router interface takes its subnet's gateway address.
      if (s.gateway === ip.value && !what.allowGateway) throw new Conflict(`${text} is the gateway of subnet ${s.id}`, { field: `${field}.ip_address` })
      const holder = await taken(trx, s, ip.value)
      if (holder) throw new Conflict(`IP address ${text} is already in use on subnet ${s.id} (port ${holder})`, { field: `${field}.ip_address` })
      add(s, ip.value, `${field}.ip_address`)
    } else if (s) {
      const v = await nextFree(trx, s)
      if (v === undefined) throw new ResourceExhausted(`no more IP addresses available in subnet ${s.id} (${formatIp(s.version, s.cidr.first)}/${s.cidr.prefix}): its allocation pools are used up`, { field: `${field}.subnet_id` })
      // A second subnet-only request for the same subnet needs the next address.
      let value = v
      while (seen.has(`${s.id}/${value}`)) {
        value += 1n
        if (!s.pools.some((p) => value >= p.first && value <= p.last) || (await taken(trx, s, value))) {
          throw new ResourceExhausted(`no more IP addresses available in subnet ${s.id}`, { field: `${field}.subnet_id` })
        }
      }
      add(s, value, field)
    } else {
      throw new InvalidArgument('a fixed IP needs a subnet_id, an ip_address, or both', { field })
    }
  }
  const rows = out.map(({ s, value }) => ({ port_id: portId, subnet_id: s.id, network_id: networkId, ip_address: formatIp(s.version, value), ip_key: ipKey(s.version, value) }))
  if (rows.length > 0) await trx.insertInto('ip_allocations').values(rows).execute()
  return rows.map((r) => ({ subnetId: r.subnet_id, ipAddress: r.ip_address }))
}

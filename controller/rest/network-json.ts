/**
 * Neutron's JSON for Strato's networking objects, both ways: what a resource
 * looks like on the wire (`project_id` and `tenant_id`, `router:external`,
 * admin-only `provider:*` and `binding:*`, null for "none"), request bodies
 * read with their fields checked by name (Neutron's "Unrecognized
 * attribute(s)" for unknown keys; known Neutron attributes Strato cannot honour
 * are accepted only with their default value), and list queries as Neutron
 * reads them: filters on any attribute (repeated keys = any of), `fields=`,
 * `sort_key`/`sort_dir`, `limit`/`marker`/`page_reverse` with `<plural>_links`.
 */
import { InvalidArgument, NotFound } from '../../proto/errors.js'
import type { Network } from '../network/networks.js'
import type { Subnet } from '../network/subnets.js'
import type { Port } from '../network/ports.js'
import type { FloatingIp } from '../network/floating-ips.js'
import type { Router, RouterInterfaceInfo } from '../network/routers.js'
import type { SecurityGroup, SecurityGroupRule } from '../network/security-groups.js'

export type Json = Record<string, unknown>

/** Neutron's timestamps: seconds, UTC, `Z`. */
const ts = (d: Date) => d.toISOString().replace(/\.\d{3}Z$/, 'Z')
const owner = (projectId: string) => ({ project_id: projectId, tenant_id: projectId })
const stamps = (o: { revisionNumber: number; createdAt: Date; updatedAt: Date }) => ({ revision_number: o.revisionNumber, created_at: ts(o.createdAt), updated_at: ts(o.updatedAt) })
const orNull = (s: string) => (s === '' ? null : s)

// ------------------------------------------------------------------ resources → JSON

export function networkJson(n: Network, admin: boolean): Json {
  return {
    id: n.id, name: n.name, description: n.description, ...owner(n.projectId), status: n.status, admin_state_up: n.adminStateUp,
    shared: n.shared, 'router:external': n.routerExternal, mtu: n.mtu, subnets: n.subnets, port_security_enabled: n.portSecurityEnabled,
    ...(admin ? { 'provider:network_type': n.providerNetworkType, 'provider:physical_network': orNull(n.providerPhysicalNetwork), 'provider:segmentation_id': n.providerSegmentationId ?? null } : {}),
    tags: [], ...stamps(n),
  }
}

export function subnetJson(s: Subnet): Json {
  return {
    id: s.id, name: s.name, description: s.description, ...owner(s.projectId), network_id: s.networkId, ip_version: s.ipVersion, cidr: s.cidr,
    gateway_ip: orNull(s.gatewayIp), allocation_pools: s.allocationPools, dns_nameservers: s.dnsNameservers, host_routes: s.hostRoutes,
    enable_dhcp: s.enableDhcp, ipv6_ra_mode: null, ipv6_address_mode: null, subnetpool_id: null, service_types: [], tags: [], ...stamps(s),
  }
}

export function portJson(p: Port, admin: boolean): Json {
  return {
    id: p.id, name: p.name, description: p.description, ...owner(p.projectId), network_id: p.networkId, mac_address: p.macAddress,
    fixed_ips: p.fixedIps.map((f) => ({ subnet_id: f.subnetId, ip_address: f.ipAddress })), device_id: p.deviceId, device_owner: p.deviceOwner,
    status: p.status, admin_state_up: p.adminStateUp, security_groups: p.securityGroups, port_security_enabled: true,
    allowed_address_pairs: [], 'binding:vnic_type': 'normal',
    ...(admin ? { 'binding:host_id': p.bindingHostId, 'binding:vif_type': p.bindingHostId ? 'bridge' : 'unbound', 'binding:vif_details': {}, 'binding:profile': {} } : {}),
    tags: [], ...stamps(p),
  }
}

/**
 * A rule for every address of its family is the same rule as one without a
 * remote (the catalog keeps it as `0.0.0.0/0` or `::/0`): shown as Neutron
 * shows a rule made without a remote, `null` (Tempest compares it so).
 */
const ANY_ADDRESS = new Set(['0.0.0.0/0', '::/0'])

export function ruleJson(r: SecurityGroupRule): Json {
  return {
    id: r.id, security_group_id: r.securityGroupId, ...owner(r.projectId), direction: r.direction, ethertype: r.ethertype, protocol: orNull(r.protocol),
    port_range_min: r.portRangeMin ?? null, port_range_max: r.portRangeMax ?? null, remote_ip_prefix: ANY_ADDRESS.has(r.remoteIpPrefix) ? null : orNull(r.remoteIpPrefix), remote_group_id: orNull(r.remoteGroupId),
    description: r.description, revision_number: 0, created_at: ts(r.createdAt), updated_at: ts(r.createdAt),
  }
}

export function securityGroupJson(g: SecurityGroup): Json {
  return { id: g.id, name: g.name, description: g.description, ...owner(g.projectId), stateful: g.stateful, security_group_rules: g.securityGroupRules.map(ruleJson), tags: [], ...stamps(g) }
}

export function routerJson(r: Router, admin: boolean): Json {
  const g = r.externalGatewayInfo
  return {
    id: r.id, name: r.name, description: r.description, ...owner(r.projectId), status: r.status, admin_state_up: r.adminStateUp,
    external_gateway_info: g ? { network_id: g.networkId, external_fixed_ips: g.externalFixedIps.map((f) => ({ subnet_id: f.subnetId, ip_address: f.ipAddress })), enable_snat: g.enableSnat } : null,
    routes: r.routes.map((x) => ({ destination: x.destination, nexthop: x.nexthop })), availability_zone_hints: [], availability_zones: [], flavor_id: null,
    // Admins only, as the l3_agent_scheduler extension's l3-agents-hosting-router answer.
    ...(admin ? { l3_agent_host: orNull(r.l3AgentHost) } : {}),
    tags: [], ...stamps(r),
  }
}

/** Neutron's add_router_interface / remove_router_interface answer. */
export function routerInterfaceJson(i: RouterInterfaceInfo): Json {
  return { id: i.id, ...owner(i.projectId), port_id: i.portId, subnet_id: i.subnetId, subnet_ids: i.subnetIds, network_id: i.networkId }
}

export function floatingIpJson(f: FloatingIp): Json {
  return {
    id: f.id, description: f.description, ...owner(f.projectId), floating_network_id: f.floatingNetworkId, floating_ip_address: f.floatingIpAddress,
    port_id: orNull(f.portId), fixed_ip_address: orNull(f.fixedIpAddress), router_id: orNull(f.routerId), status: f.status, tags: [], ...stamps(f),
  }
}

// ------------------------------------------------------------------ request bodies

/**
 * The attributes a body may carry: `true` = Strato uses it; a function = a
 * Neutron attribute Strato cannot honour, accepted when it holds what the
 * function accepts (its default), refused otherwise.
 */
export type Attributes = Record<string, true | ((v: unknown) => boolean)>

export const isNullish = (v: unknown) => v === null || v === undefined
export const isEmpty = (v: unknown) => isNullish(v) || (Array.isArray(v) && v.length === 0) || v === ''
export const isTrue = (v: unknown) => v === true || v === 'true' || v === 'True'

/** A request body's object, its keys checked against `attrs` (Neutron refuses what it does not know). */
export class Body {
  constructor(readonly resource: string, readonly b: Json, attrs: Attributes, readOnly: string[] = []) {
    const unknown = Object.keys(b).filter((k) => !(k in attrs) && !readOnly.includes(k))
    if (unknown.length) throw new InvalidArgument(`Unrecognized attribute(s) '${unknown.join(', ')}'`, { field: `${resource}.${unknown[0]}` })
    const fixed = Object.keys(b).find((k) => readOnly.includes(k))
    if (fixed) throw new InvalidArgument(`Cannot update read-only attribute ${fixed}`, { field: `${resource}.${fixed}` })
    for (const [k, a] of Object.entries(attrs)) {
      if (a !== true && k in b && !a(b[k])) throw new InvalidArgument(`Strato does not support ${k}=${JSON.stringify(b[k])} on a ${resource}`, { field: `${resource}.${k}` })
    }
  }

  has(k: string): boolean {
    return k in this.b
  }

  private bad(k: string, what: string): never {
    throw new InvalidArgument(`Invalid input for ${k}: ${JSON.stringify(this.b[k])} is not ${what}`, { field: `${this.resource}.${k}` })
  }

  str(k: string): string | undefined {
    const v = this.b[k]
    if (isNullish(v)) return undefined
    if (typeof v !== 'string') this.bad(k, 'a string')
    return v
  }

  bool(k: string): boolean | undefined {
    const v = this.b[k]
    if (isNullish(v)) return undefined
    if (typeof v === 'boolean') return v
    if (typeof v === 'string' && /^(true|false)$/i.test(v)) return v.toLowerCase() === 'true'
    this.bad(k, 'a boolean')
  }

  int(k: string): number | undefined {
    const v = this.b[k]
    if (isNullish(v)) return undefined
    const n = typeof v === 'string' && /^-?\d+$/.test(v) ? Number(v) : v
    if (typeof n !== 'number' || !Number.isInteger(n)) this.bad(k, 'an integer')
    return n
  }

  strings(k: string): string[] | undefined {
    const v = this.b[k]
    if (isNullish(v)) return undefined
    if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) this.bad(k, 'a list of strings')
    return v as string[]
  }

  /** A list of objects whose values are strings, e.g. allocation_pools. */
  objects<K extends string>(k: string, keys: K[]): Array<Record<K, string | undefined>> | undefined {
    const v = this.b[k]
    if (isNullish(v)) return undefined
    if (!Array.isArray(v)) this.bad(k, 'a list')
    return v.map((o, i) => {
      if (o === null || typeof o !== 'object' || Array.isArray(o)) this.bad(k, 'a list of objects')
      const extra = Object.keys(o).find((x) => !(keys as string[]).includes(x))
      if (extra) throw new InvalidArgument(`Invalid input for ${k}: unknown key '${extra}' in entry ${i} (expected ${keys.join(', ')})`, { field: `${this.resource}.${k}[${i}].${extra}` })
      const out = {} as Record<K, string | undefined>
      for (const key of keys) {
        const x = (o as Json)[key]
        if (!isNullish(x) && typeof x !== 'string') throw new InvalidArgument(`Invalid input for ${k}: ${key} of entry ${i} is not a string`, { field: `${this.resource}.${k}[${i}].${key}` })
        out[key] = isNullish(x) ? undefined : (x as string)
      }
      return out
    })
  }

  /** The owning project: `project_id`, or `tenant_id` (older clients); both must agree. */
  project(): string | undefined {
    const p = this.str('project_id')
    const t = this.str('tenant_id')
    if (p && t && p !== t) throw new InvalidArgument(`project_id ${p} and tenant_id ${t} differ`, { field: `${this.resource}.tenant_id` })
    return p || t
  }
}

// ------------------------------------------------------------------ list queries

/** Query keys that are not attribute filters. */
const CONTROL = new Set(['fields', 'sort_key', 'sort_dir', 'limit', 'marker', 'page_reverse', 'all_tenants', 'all_projects'])

function matches(value: unknown, wanted: string): boolean {
  if (typeof value === 'boolean') return /^(true|1)$/i.test(wanted) === value && /^(true|false|1|0)$/i.test(wanted)
  if (value === null || value === undefined) return wanted === '' || wanted === 'None'
  if (typeof value === 'number') return String(value) === wanted
  if (typeof value === 'string') return value === wanted
  if (Array.isArray(value)) return value.some((v) => (typeof v === 'object' ? false : String(v) === wanted))
  return false
}

/** Neutron's `fixed_ips=ip_address=…` / `fixed_ips=subnet_id=…` on ports. */
function matchesFixedIps(value: unknown, wanted: string): boolean {
  const [k, v] = wanted.split(/=(.*)/s) as [string, string | undefined]
  if (v === undefined || !Array.isArray(value)) return false
  return value.some((f: Json) => f[k] === v)
}

export interface Page {
  items: readonly Json[]
  links: Array<{ rel: string; href: string }>
}

/**
 * Filters, sorts, pages and trims a listing as Neutron does. `self` is the
 * listing's URL without its query, for the `next`/`previous` links.
 */
export function query(all: readonly Json[], q: URLSearchParams, self: string): Page {
  let items = all
  for (const key of new Set(q.keys())) {
    // Neutron (without filter validation) ignores filters on attributes a resource does not have.
    if (CONTROL.has(key) || !all.some((o) => key in o)) continue
    const wanted = q.getAll(key)
    items = items.filter((o) => key in o && wanted.some((w) => (key === 'fixed_ips' ? matchesFixedIps(o[key], w) : matches(o[key], w))))
  }
  const keys = q.getAll('sort_key')
  if (keys.length) {
    const dirs = q.getAll('sort_dir')
    for (const [i, d] of dirs.entries()) if (d !== 'asc' && d !== 'desc') throw new InvalidArgument(`sort_dir must be asc or desc, got '${d}'`, { field: `sort_dir[${i}]` })
    const sample = items[0]
    const unknown = sample ? keys.find((k) => !(k in sample)) : undefined
    if (unknown) throw new InvalidArgument(`${unknown} is not a sortable attribute`, { field: 'sort_key' })
    items = [...items].sort((a, b) => {
      for (const [i, k] of keys.entries()) {
        const c = compare(a[k], b[k])
        if (c) return dirs[i] === 'desc' ? -c : c
      }
      return compare(a.id, b.id)
    })
  }
  const limitText = q.get('limit')
  const limit = limitText === null ? 0 : Number(limitText)
  if (!Number.isInteger(limit) || limit < 0) throw new InvalidArgument(`limit must be a non-negative integer, got '${limitText}'`, { field: 'limit' })
  const marker = q.get('marker')
  const reverse = /^(true|1)$/i.test(q.get('page_reverse') ?? '')
  const links: Page['links'] = []
  if (limit || marker) {
    let from = 0
    let to = items.length
    if (marker) {
      const at = items.findIndex((o) => o.id === marker)
      if (at < 0) throw new NotFound(`marker ${marker} not found`, { field: 'marker' })
      if (reverse) to = at
      else from = at + 1
    }
    if (limit) {
      if (reverse) from = Math.max(0, to - limit)
      else to = Math.min(items.length, from + limit)
    }
    const more = { before: from > 0, after: to < items.length }
    const page = items.slice(from, to)
    const link = (rel: string, id: unknown, rev: boolean) => {
      const p = new URLSearchParams(q)
      p.set('marker', String(id))
      if (rev) p.set('page_reverse', 'True')
      else p.delete('page_reverse')
      links.push({ rel, href: `${self}?${p}` })
    }
    if (page.length) {
      if (limit && (reverse ? more.before : more.after)) link('next', page[reverse ? 0 : page.length - 1]!.id, reverse)
      if (marker && (reverse ? more.after : more.before)) link('previous', page[reverse ? page.length - 1 : 0]!.id, !reverse)
    }
    items = page
  }
  const fields = fieldsOf(q)
  if (fields.length) items = items.map((o) => Object.fromEntries(fields.filter((f) => f in o).map((f) => [f, o[f]])))
  return { items, links }
}

function compare(a: unknown, b: unknown): number {
  if (a === b) return 0
  if (a === null || a === undefined) return -1
  if (b === null || b === undefined) return 1
  if (typeof a === 'number' && typeof b === 'number') return a - b
  const x = typeof a === 'object' ? JSON.stringify(a) : String(a)
  const y = typeof b === 'object' ? JSON.stringify(b) : String(b)
  return x < y ? -1 : x > y ? 1 : 0
}

/**
 * The `fields=` asked for: repeated keys or comma lists, and the Python list
 * text openstacksdk 0.101 sends (`fields=['id', 'name']`, as
 * `openstack security group list` does).
 */
function fieldsOf(q: URLSearchParams): string[] {
  return q.getAll('fields').flatMap((f) => f.split(',')).map((f) => f.trim().replace(/^\[?\s*['"]?|['"]?\s*\]?$/g, '')).filter(Boolean)
}

/** `fields=` on a single resource (GET /networks/{id}?fields=name). */
export function pick(o: Json, q: URLSearchParams): Json {
  const fields = fieldsOf(q)
  return fields.length ? Object.fromEntries(fields.filter((f) => f in o).map((f) => [f, o[f]])) : o
}

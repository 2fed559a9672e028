/**
 * Availability zones (Nova's os-availability-zone): the default zone and
 * every zone a mapped host announces, each available when one of its hosts
 * is enabled and up. The hosts are shown to cloud admins only.
 */
import type { HostRegistry } from './hosts.js'

export interface ZoneHost {
  host: string
  /** Enabled by the operator. */
  active: boolean
  /** Heartbeating. */
  available: boolean
  updatedAt: Date | undefined
}

export interface Zone {
  name: string
  available: boolean
  hosts: ZoneHost[]
}

export async function availabilityZones(hosts: HostRegistry, defaultZone: string, withHosts: boolean): Promise<Zone[]> {
  const all = (await hosts.list()).filter((h) => h.mapped)
  const names = [...new Set([defaultZone, ...all.map((h) => h.availabilityZone)])].sort()
  return names.map((name) => {
    const members = all.filter((h) => h.availabilityZone === name)
    return {
      name,
      available: members.some((h) => h.status === 'enabled' && h.state === 'up'),
      hosts: withHosts ? members.map((h) => ({ host: h.host, active: h.status === 'enabled', available: h.state === 'up', updatedAt: h.lastHeartbeatAt })) : [],
    }
  })
}

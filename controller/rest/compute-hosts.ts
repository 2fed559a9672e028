/**
 * Nova's os-hypervisors and os-services over REST, on HostRegistry and
 * placement. Each compute host is a hypervisor (its usage: the allocations
 * placement holds on it; 2.28 shows cpu_info as an object, 2.33 pages, 2.53
 * uses uuids as ids) and a
 * `nova-compute` service (Strato's controller does what nova-scheduler and
 * nova-conductor do, and is not listed). Enabling and disabling a service
 * enables or disables scheduling to its host. Per microversion: 2.11 adds
 * `forced_down`; from 2.53 services are named by id (`PUT /os-services/{id}`)
 * instead of `PUT /os-services/enable|disable|disable-log-reason` with host
 * and binary.
 */
import { InvalidArgument, NotFound } from '../../proto/errors.js'
import type { HostView } from '../compute/hosts.js'
import { HttpError, type RestRequest, type Route } from './http.js'
import type { RestDomain } from './services.js'
import { microversion, mv } from './compute-microversion.js'
import { intParam, isoMicro, nextLink, onlyQuery, rowNumber } from './compute-common.js'
import { onlyKeys } from './body.js'
import { DISK_GB, MEMORY_MB, VCPU } from '../scheduler/model.js'

const H = 'strato.compute.v1.Hosts'
const BINARY = 'nova-compute'

function serviceView(req: RestRequest, h: HostView): Record<string, unknown> {
  return {
    id: microversion(req) >= mv('2.53') ? h.id : rowNumber(h.id), binary: BINARY, host: h.host, zone: h.availabilityZone, status: h.status, state: h.state,
    updated_at: isoMicro(h.lastHeartbeatAt ?? h.createdAt), disabled_reason: h.disabledReason || null,
    ...(microversion(req) >= mv('2.11') ? { forced_down: false } : {}),
  }
}

/** Nova's integer hypervisor version (libvirt's): "8.2.0" → 8002000. */
function versionNumber(text: string): number {
  const [a = 0, b = 0, c = 0] = (text.match(/\d+(\.\d+)*/)?.[0] ?? '0').split('.').map(Number)
  return a * 1_000_000 + b * 1_000 + c
}

/** A host as Nova's hypervisor, its usage from placement's allocations on it. */
async function hypervisorView(d: RestDomain, req: RestRequest, h: HostView, detail: boolean): Promise<Record<string, unknown>> {
  const v = microversion(req)
  const brief = { id: v >= mv('2.53') ? h.id : rowNumber(h.id), hypervisor_hostname: h.host, state: h.state, status: h.status }
  if (!detail) return brief
  const service = { host: h.host, id: v >= mv('2.53') ? h.id : rowNumber(h.id), disabled_reason: h.disabledReason || null }
  const c = h.capabilities
  // 2.88 drops the usage fields (placement has them) and adds the host's uptime, which Strato does not know (Nova: null when the driver cannot tell).
  if (v >= mv('2.88')) return { ...brief, host_ip: c.hostIp || null, hypervisor_type: c.hypervisorType || 'QEMU', hypervisor_version: versionNumber(c.hypervisorVersion), service, uptime: null }
  const used = (await d.placement.getUsages({ providerUuid: h.id })).usages
  const running = (await d.placement.listAllocations({ providerUuid: h.id })).length
  const cpu = { arch: c.arch, model: c.cpuModel }
  const vcpusUsed = used[VCPU] ?? 0, ramUsed = used[MEMORY_MB] ?? 0, diskUsed = used[DISK_GB] ?? 0
  return {
    ...brief, cpu_info: v >= mv('2.28') ? cpu : JSON.stringify(cpu), current_workload: 0, disk_available_least: c.diskGb - diskUsed,
    host_ip: c.hostIp || null, free_disk_gb: c.diskGb - diskUsed, free_ram_mb: c.memoryMb - ramUsed, hypervisor_type: c.hypervisorType || 'QEMU',
    hypervisor_version: versionNumber(c.hypervisorVersion), local_gb: c.diskGb, local_gb_used: diskUsed, memory_mb: c.memoryMb, memory_mb_used: ramUsed,
    running_vms: running, vcpus: c.vcpus, vcpus_used: vcpusUsed, service,
  }
}

/** The legacy body {host, binary[, disabled_reason]}: the host, once the binary is one Strato has. */
function legacyHost(b: Record<string, unknown>, keys: string[]): string {
  onlyKeys(b, keys)
  if (typeof b.host !== 'string' || typeof b.binary !== 'string') throw new InvalidArgument("'host' and 'binary' are required strings", { field: typeof b.host !== 'string' ? 'host' : 'binary' })
  if (b.binary !== BINARY) throw new NotFound(`Service ${b.binary} on host ${b.host} could not be found (Strato's services are ${BINARY})`)
  return b.host
}

export function hostRoutes(d: RestDomain): Route[] {
  const legacy = (action: 'enable' | 'disable' | 'disable-log-reason'): Route => ({
    method: 'PUT', path: `/os-services/${action}`, policy: `${H}/UpdateHost`,
    handler: async (req) => {
      if (microversion(req) >= mv('2.53')) throw new HttpError(404, `PUT /os-services/${action} is gone from microversion 2.53: use PUT /os-services/{id}`)
      const b = await req.json() as Record<string, unknown> | undefined
      if (!b || typeof b !== 'object') throw new InvalidArgument('the body must be {"host": …, "binary": …}', { field: 'host' })
      const withReason = action === 'disable-log-reason'
      const host = legacyHost(b, withReason ? ['host', 'binary', 'disabled_reason'] : ['host', 'binary'])
      if (withReason && typeof b.disabled_reason !== 'string') throw new InvalidArgument("'disabled_reason' is a required string", { field: 'disabled_reason' })
      const h = await d.hosts.update(host, action === 'enable' ? { enabled: true } : { enabled: false, ...(withReason ? { disabledReason: b.disabled_reason as string } : {}) })
      return { body: { service: { host: h.host, binary: BINARY, status: h.status, ...(withReason ? { disabled_reason: h.disabledReason } : {}) } } }
    },
  })
  const hypervisors = async (req: RestRequest, detail: boolean) => {
    let all = (await d.hosts.list()).filter((h) => h.mapped)
    let limit: number | undefined
    if (microversion(req) >= mv('2.33')) {
      const marker = req.query.get('marker')
      if (marker) {
        const i = all.findIndex((h) => h.id === marker || String(rowNumber(h.id)) === marker)
        if (i < 0) throw new InvalidArgument(`marker [${marker}] not found`, { field: 'marker' })
        all = all.slice(i + 1)
      }
      limit = intParam(req, 'limit')
      if (limit !== undefined) all = all.slice(0, limit)
    }
    const list = await Promise.all(all.map((h) => hypervisorView(d, req, h, detail)))
    const next = nextLink(req, list, limit, (x) => String(x.id))
    return { body: { hypervisors: list, ...(next ? { hypervisors_links: next } : {}) } }
  }
  return [
    { method: 'GET', path: '/os-hypervisors', policy: `${H}/ListHosts`, handler: (req) => hypervisors(req, false) },
    { method: 'GET', path: '/os-hypervisors/detail', policy: `${H}/ListHosts`, handler: (req) => hypervisors(req, true) },
    {
      method: 'GET', path: '/os-hypervisors/statistics', policy: `${H}/ListHosts`,
      handler: async (req) => {
        if (microversion(req) >= mv('2.88')) throw new HttpError(404, 'GET /os-hypervisors/statistics is gone from microversion 2.88: placement has the usage (openstack resource provider usage show)')
        const all = await Promise.all((await d.hosts.list()).filter((h) => h.mapped).map((h) => hypervisorView(d, req, h, true)))
        const sum = (k: string) => all.reduce((n, h) => n + (h[k] as number), 0)
        const keys = ['vcpus', 'vcpus_used', 'memory_mb', 'memory_mb_used', 'local_gb', 'local_gb_used', 'free_ram_mb', 'free_disk_gb', 'current_workload', 'running_vms', 'disk_available_least']
        return { body: { hypervisor_statistics: { count: all.length, ...Object.fromEntries(keys.map((k) => [k, sum(k)])) } } }
      },
    },
    {
      method: 'GET', path: '/os-hypervisors/:id', policy: `${H}/ListHosts`,
      handler: async (req) => {
        const id = req.params.id!
        const h = (await d.hosts.list()).find((x) => x.mapped && (microversion(req) >= mv('2.53') ? x.id === id : String(rowNumber(x.id)) === id))
        if (!h) throw new NotFound(`Hypervisor with ID ${id} could not be found.`)
        return { body: { hypervisor: await hypervisorView(d, req, h, true) } }
      },
    },
    {
      method: 'GET', path: '/os-services', policy: `${H}/ListHosts`,
      handler: async (req) => {
        onlyQuery(req, ['host', 'binary'])
        const host = req.query.get('host'), binary = req.query.get('binary')
        const all = binary && binary !== BINARY ? [] : (await d.hosts.list()).filter((h) => !host || h.host === host)
        return { body: { services: all.map((h) => serviceView(req, h)) } }
      },
    },
    legacy('enable'),
    legacy('disable'),
    legacy('disable-log-reason'),
    {
      method: 'PUT', path: '/os-services/:id', policy: `${H}/UpdateHost`,
      handler: async (req) => {
        if (microversion(req) < mv('2.53')) throw new HttpError(404, 'PUT /os-services/{id} needs microversion 2.53; before it use PUT /os-services/enable or disable')
        const b = await req.json() as Record<string, unknown> | undefined
        if (!b || typeof b !== 'object' || Array.isArray(b)) throw new InvalidArgument('the body must be {"status": …, "disabled_reason": …}', { field: 'status' })
        onlyKeys(b, ['status', 'disabled_reason', 'forced_down'])
        const h = (await d.hosts.list()).find((x) => x.id === req.params.id)
        if (!h) throw new NotFound(`Service ${req.params.id} could not be found.`)
        if (b.forced_down === true) throw new InvalidArgument('forced_down: Strato knows a host is down from its heartbeats; it cannot be forced', { field: 'forced_down' })
        if (b.status !== undefined && b.status !== 'enabled' && b.status !== 'disabled') throw new InvalidArgument(`status must be enabled or disabled, got ${JSON.stringify(b.status)}`, { field: 'status' })
        if (b.disabled_reason !== undefined && b.status !== 'disabled') throw new InvalidArgument('disabled_reason goes with status disabled', { field: 'disabled_reason' })
        if (b.disabled_reason !== undefined && typeof b.disabled_reason !== 'string') throw new InvalidArgument('disabled_reason must be a string', { field: 'disabled_reason' })
        if (b.status === undefined && b.forced_down === undefined) throw new InvalidArgument("give 'status' (and 'disabled_reason') or 'forced_down'", { field: 'status' })
        const updated = b.status === undefined ? h : await d.hosts.update(h.host, { enabled: b.status === 'enabled', ...(typeof b.disabled_reason === 'string' ? { disabledReason: b.disabled_reason } : {}) })
        return { body: { service: serviceView(req, updated) } }
      },
    },
  ]
}

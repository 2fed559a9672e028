/**
 * Nova's os-services over REST, on HostRegistry: each compute host is a
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
import { isoMicro, onlyKeys, rowNumber } from './compute-common.js'

const H = 'strato.compute.v1.Hosts'
const BINARY = 'nova-compute'

function serviceView(req: RestRequest, h: HostView): Record<string, unknown> {
  return {
    id: microversion(req) >= mv('2.53') ? h.id : rowNumber(h.id), binary: BINARY, host: h.host, zone: h.availabilityZone, status: h.status, state: h.state,
    updated_at: isoMicro(h.lastHeartbeatAt ?? h.createdAt), disabled_reason: h.disabledReason || null,
    ...(microversion(req) >= mv('2.11') ? { forced_down: false } : {}),
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
  return [
    {
      method: 'GET', path: '/os-services', policy: `${H}/ListHosts`,
      handler: async (req) => {
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

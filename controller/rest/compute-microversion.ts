/**
 * Compute microversions (Nova's `api_version_request.py`): the version a
 * request asks for, from `OpenStack-API-Version: compute X.Y` or the legacy
 * `X-OpenStack-Nova-API-Version: X.Y` (either may say `latest`); none means
 * 2.1. Every answer names the version it was given in both headers.
 */
import { InvalidArgument } from '../../proto/errors.js'
import { HttpError, header, type RestRequest } from './http.js'

/** A version as a comparable number: 2.47 → 2047. */
export type Microversion = number

export const MIN_VERSION = '2.1'
/**
 * The highest version Strato answers exactly: every request and response
 * change up to it is honoured on the routes Strato has (see the schema notes in
 * compute-servers.ts, compute-flavors.ts, compute-keypairs.ts,
 * compute-extras.ts, compute-hosts.ts, compute-volume-attachments.ts). Of
 * 2.74–2.89: 2.74 host/hypervisor_hostname on create; 2.75 unknown query
 * parameters are 400, PUT /servers answers the GET view, flavors' swap 0;
 * 2.79/2.85/2.89 volume attachments' delete_on_termination, its update and
 * attachment_id/bdm_uuid; 2.83 members' server filters; 2.86 extra-spec
 * validation; 2.88 hypervisors without usage fields or statistics. 2.76–2.78,
 * 2.80–2.82, 2.84 and 2.87 change only what Strato has no route for
 * (external events, shelve, topology, migrations, aggregates, instance
 * actions, rescue). Of 2.90–2.96: 2.90 hostname on create and PUT
 * (kept per server), OS-EXT-SRV-ATTR:hostname shown to owners and a filter for
 * them; 2.92 keypairs imported only, names with '@' and '.'; 2.94 the hostname
 * may be an FQDN; 2.96 pinned_availability_zone (the zone the create asked
 * for). 2.91 (unshelve), 2.93 (rebuild of volume-backed servers, external
 * events) and 2.95 (evacuate) change only what Strato has no route or action
 * for: unshelve, rebuild and evacuate stay "no such action" (400), as before.
 * The image proxy (compute-images.ts) answers below 2.36 (its metadata below
 * 2.39) and is a 404 from there on, as Nova's. openstacksdk asks for at most
 * 2.73 (servers), 2.61 (flavors) and 2.10 (keypairs).
 */
export const MAX_VERSION = '2.96'

const parsed = new Map<string, Microversion>()

/** Views compare against literal versions per item of a listing: each text is parsed once. */
export const mv = (text: string): Microversion => {
  let v = parsed.get(text)
  if (v === undefined) {
    const [major, minor] = text.split('.').map(Number)
    v = major! * 1000 + minor!
    if (parsed.size < 1_000) parsed.set(text, v)
  }
  return v
}

export const mvText = (v: Microversion): string => `${Math.floor(v / 1000)}.${v % 1000}`

const MIN = mv(MIN_VERSION)
const MAX = mv(MAX_VERSION)
const cache = new WeakMap<RestRequest, Microversion>()

/** The version `req` asks for; 400 for a malformed one, 406 outside [MIN_VERSION, MAX_VERSION]. */
export function microversion(req: RestRequest): Microversion {
  const known = cache.get(req)
  if (known !== undefined) return known
  const v = parse(req)
  cache.set(req, v)
  return v
}

function parse(req: RestRequest): Microversion {
  let asked: string | undefined
  const modern = header(req.raw, 'openstack-api-version')
  if (modern !== undefined) {
    // "compute 2.5" or a list naming several services: "compute 2.5, image 2.1".
    for (const part of modern.split(',')) {
      const [service, version] = part.trim().split(/\s+/)
      if (service?.toLowerCase() === 'compute' && version) asked = version
    }
  }
  asked ??= header(req.raw, 'x-openstack-nova-api-version')?.trim()
  if (asked === undefined || asked === '') return MIN
  if (asked.toLowerCase() === 'latest') return MAX
  if (!/^[1-9]\d*\.(0|[1-9]\d*)$/.test(asked)) throw new InvalidArgument(`API Version String ${asked} is of invalid format. Must be of format MajorNum.MinorNum.`, { field: 'OpenStack-API-Version' })
  const v = mv(asked)
  if (v < MIN || v > MAX) throw new HttpError(406, `Version ${asked} is not supported by the API. Minimum is ${MIN_VERSION} and maximum is ${MAX_VERSION}.`)
  return v
}

/** The headers of every versioned answer: the version given, in both spellings, and Vary. */
export function versionHeaders(req: RestRequest): Record<string, string> {
  const v = mvText(microversion(req))
  return {
    'openstack-api-version': `compute ${v}`,
    'x-openstack-nova-api-version': v,
    vary: 'OpenStack-API-Version, X-OpenStack-Nova-API-Version',
  }
}

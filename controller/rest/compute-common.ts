/** What the compute REST files share (and Cinder's, for paging): the caller, links, timestamps, query parameters. */
import { createHash } from 'node:crypto'
import { InvalidArgument, PermissionDenied } from '../../proto/errors.js'
import { serverCaller, type ServerCaller } from '../compute/server-model.js'
import { REST_PREFIX, type AuthedRequest, type RestRequest } from './http.js'
import { microversion, mv } from './compute-microversion.js'

/** The authenticated caller as the server catalogs take it. */
export const callerOf = (req: RestRequest): ServerCaller => serverCaller((req as AuthedRequest).auth, req.requestId)

/** Nova's links of a resource: `self` (versioned) and `bookmark` (unversioned). */
export function links(req: RestRequest, collection: string, id: string): Array<{ rel: string; href: string }> {
  const tail = `${collection}/${encodeURIComponent(id)}`
  return [{ rel: 'self', href: `${req.baseUrl}/v2.1/${tail}` }, { rel: 'bookmark', href: `${req.baseUrl}/${tail}` }]
}

/** The image service's URL beside this compute endpoint (nova's glance `generate_glance_url`), for image links and Locations. */
export function imageServiceUrl(req: RestRequest): string {
  return req.baseUrl.endsWith(REST_PREFIX.compute) ? req.baseUrl.slice(0, -REST_PREFIX.compute.length) + REST_PREFIX.image : req.baseUrl
}

/** Only the bookmark link (how a server names its flavor and image). */
export const bookmark = (req: RestRequest, collection: string, id: string) => [links(req, collection, id)[1]!]

/**
 * The `next` link of a page that came back full (Nova's `*_links`, Cinder's
 * `volumes_links`): the path the client asked, with its query, `marker` set to
 * the page's last item and the parameters `drop` names removed — so it leads
 * on from wherever the page was asked (a versioned path, a project in it).
 */
export function nextLink<T>(req: RestRequest, page: readonly T[], limit: number | undefined, markerOf: (x: T) => string, drop: readonly string[] = []): Array<{ rel: string; href: string }> | undefined {
  if (!limit || page.length < limit) return undefined
  const q = new URLSearchParams(req.query)
  for (const k of drop) q.delete(k)
  q.set('marker', markerOf(page[page.length - 1]!))
  return [{ rel: 'next', href: `${req.baseUrl}${req.path}?${q.toString()}` }]
}

/** Nova's timestamps: seconds, UTC, `Z`. */
export const isoZ = (d: Date) => d.toISOString().replace(/\.\d{3}Z$/, 'Z')

/** Nova's `launched_at`-style timestamps: microseconds, no zone. */
export const isoMicro = (d: Date | undefined) => (d ? d.toISOString().replace(/\.(\d{3})Z$/, '.$1000') : null)

/** An integer query parameter (limit, minRam …), 400 naming it when it is not one. */
export function intParam(req: RestRequest, name: string, min = 0): number | undefined {
  const v = req.query.get(name)
  if (v === null || v === '') return undefined
  if (!/^-?\d+$/.test(v) || Number(v) < min) throw new InvalidArgument(`${name} must be an integer ≥ ${min}, got '${v}'`, { field: name })
  return Number(v)
}

/** Nova's boolean query strings (`all_tenants`, `is_public`): present and not false-ish. */
export function boolParam(req: RestRequest, name: string): boolean {
  const v = req.query.get(name)
  if (v === null) return false
  return !['0', 'false', 'f', 'no', 'n', 'off'].includes(v.toLowerCase())
}

export function requireAdmin(req: RestRequest, what: string): void {
  if (!(req as AuthedRequest).auth.isCloudAdmin) throw new PermissionDenied(`${what} is for cloud admins`)
}

/**
 * An integer id for what Nova numbers by database row (keypairs, services
 * before 2.53) and Strato keys otherwise: stable, derived from the key.
 */
export const rowNumber = (key: string): number => createHash('sha256').update(key).digest().readUInt32BE(0) >>> 1

/**
 * From 2.75 Nova's query schemas allow no other parameters (additionalProperties
 * false): the first stranger is a 400 naming it. Before 2.75 they are ignored.
 */
export function onlyQuery(req: RestRequest, allowed: readonly string[]): void {
  if (microversion(req) < mv('2.75')) return
  for (const k of req.query.keys()) {
    if (!allowed.includes(k)) throw new InvalidArgument(`Invalid input for query parameters ${k}. Additional properties are not allowed ('${k}' was unexpected)`, { field: k })
  }
}

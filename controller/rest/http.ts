/**
 * The OpenStack REST edge: one HTTP(S) listener beside gRPC, paths per
 * service as DevStack lays them out (`/identity/v3`, `/compute/v2.1`,
 * `/image/v2`, `/network/v2.0`, `/volume/v3`, `/placement`). Like
 * `api/rpc.ts` for gRPC, every route goes through one runner here: request id,
 * `X-Auth-Token` authentication, the same policy table (each route names the
 * gRPC method whose entry governs it, so one table decides for both APIs),
 * the JSON body read with a limit, and errors mapped once per service to that
 * service's own error body (`faults.ts`). Handlers call the domain catalogs
 * directly: no hop through gRPC.
 */
import { randomUUID } from 'node:crypto'
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import type { Logger } from '../log.js'
import type { Visibility } from '../identity/catalog.js'
import type { AuthContext } from '../identity/model.js'
import type { Policy, TargetLookup } from '../identity/policy.js'
import { InvalidArgument, Unauthenticated, Unavailable } from '../../proto/errors.js'
import { faultOf, HttpError, type RestFault, type ServiceType } from './faults.js'

export { HttpError }

/** The path prefix of each service type (DevStack's layout). */
export const REST_PREFIX = {
  identity: '/identity',
  compute: '/compute',
  image: '/image',
  network: '/network',
  volume: '/volume',
  placement: '/placement',
} as const

/** Keystone's and Nova's `max_request_body_size` (112 KiB): bodies over it are refused (413) before they are read whole. */
export const DEFAULT_BODY_LIMIT = 114_688


export interface RestRequest {
  method: string
  /** The path below the service's prefix, e.g. `/v2.1/servers/abc`. */
  path: string
  /** `:name` segments of the route. */
  params: Record<string, string>
  query: URLSearchParams
  headers: IncomingMessage['headers']
  requestId: string
  /** Absent on public routes. */
  auth: AuthContext | undefined
  /** What the caller may see, for routes whose policy entry lists. */
  visibility: Visibility | undefined
  /** The service's base URL as the client reached it (scheme, host, prefix), for links. */
  baseUrl: string
  log: Logger
  /** The raw request, for streamed bodies (image data). Read the body once: with `json()` or from here. */
  raw: IncomingMessage
  /** The raw response, for handlers that stream an answer (return `{ streamed: true }`). */
  res: ServerResponse
  /** The JSON body (parsed once, within the body limit); `undefined` when there is none. */
  json(): Promise<unknown>
}

/** An authenticated request (non-public routes). */
export type AuthedRequest = RestRequest & { auth: AuthContext }

export interface RestResult {
  /** @default 200, or 204 without a body */
  status?: number
  body?: unknown
  /** The body as JSON already (UTF-8, assembled from kept parts), instead of `body`. */
  json?: Buffer
  headers?: Record<string, string>
  /** The handler wrote the response itself (streamed bodies). */
  streamed?: true
}

export interface Route {
  method: 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH' | 'DELETE'
  /** Below the service prefix; `:name` matches one segment. */
  path: string
  /**
   * The gRPC method (e.g. `strato.identity.v1.Domains/GetDomain`) whose
   * policy entry governs this route; `public` for routes without a token.
   */
  policy: string | 'public'
  /**
   * For a route that does several things (an `/action` whose body names
   * the action): the gRPC method whose entry governs this request, read
   * from it; `policy` is then what the route is listed under.
   */
  policyOf?: (req: RestRequest) => Promise<string>
  /** What the policy's target resolution gets (the gRPC request's shape); by default the route's params. */
  target?: (req: RestRequest) => unknown | Promise<unknown>
  /** Content types the route accepts for its body; @default JSON (`application/json`, `*+json`). */
  accepts?: string[]
  /** @default DEFAULT_BODY_LIMIT */
  bodyLimit?: number
  handler: (req: RestRequest) => Promise<RestResult>
}

export interface RestService {
  type: ServiceType
  /** e.g. `/compute`. */
  prefix: string
  routes: Route[]
  /** Headers every answer of the service carries (e.g. compute's microversion headers). */
  headers?: (req: RestRequest) => Record<string, string>
}

export interface RestDeps {
  policy: Policy
  authenticate: (token: string) => AuthContext | Promise<AuthContext>
  lookup: TargetLookup
  log: Logger
  track: <T>(p: Promise<T>) => Promise<T>
}

interface CompiledRoute extends Route {
  segments: string[]
  service: RestService
  /** Registration order: of several routes matching a path, the first added wins. */
  order: number
}

/**
 * One level of the route trie: literal segments by value, one branch for
 * `:name` segments (names are the routes' own, read back from their
 * segments), and the routes that end here by method.
 */
interface RouteNode {
  literal: Map<string, RouteNode>
  param: RouteNode | undefined
  routes: Map<string, CompiledRoute>
}

const routeNode = (): RouteNode => ({ literal: new Map(), param: undefined, routes: new Map() })

/** Header names clients read, in their usual spelling (Node lower-cases what it is given only when asked to). */
const REQUEST_ID = 'x-openstack-request-id'

const isJsonType = (ct: string) => ct === 'application/json' || ct.endsWith('+json') || ct.startsWith('application/openstack-images-v2')

export class RestServer {
  /** Every route by its path segments; dispatch walks it in steps of one segment, whatever the number of routes. */
  private readonly root = routeNode()
  /** The methods some route takes, in the order first added (a 405's Allow lists them so). */
  private readonly methods: string[] = []
  private count = 0
  private readonly services: RestService[] = []
  private server: HttpServer | undefined
  /** `http://host:port` or `https://…` as bound, known once listening. */
  origin = ''

  constructor(private readonly deps: RestDeps, private readonly publicUrl: string | null = null) {}

  add(service: RestService): void {
    this.services.push(service)
    for (const r of service.routes) {
      deps(this.deps, r)
      const compiled: CompiledRoute = { ...r, segments: split(service.prefix + r.path), service, order: this.count++ }
      let node = this.root
      for (const seg of compiled.segments) {
        if (seg.startsWith(':')) node = node.param ??= routeNode()
        else {
          let next = node.literal.get(seg)
          if (!next) node.literal.set(seg, (next = routeNode()))
          node = next
        }
      }
      if (!node.routes.has(r.method)) node.routes.set(r.method, compiled)
      if (!this.methods.includes(r.method)) this.methods.push(r.method)
    }
  }

  /** Where clients reach the service with this prefix (catalog, openrc, links). */
  url(prefix: string): string {
    return `${this.publicUrl ?? this.origin}${prefix}`
  }

  async listen(host: string, port: number, tls: { certPem: Buffer; keyPem: Buffer } | null): Promise<void> {
    const handler = (req: IncomingMessage, res: ServerResponse) => void this.deps.track(this.handle(req, res, tls !== null))
    const server = tls ? createHttpsServer({ cert: tls.certPem, key: tls.keyPem }, handler) : createHttpServer(handler)
    // Slow clients may not hold sockets forever (issue 15's lesson on gRPC).
    server.headersTimeout = 20_000
    server.requestTimeout = 300_000
    server.keepAliveTimeout = 5_000
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err) => reject(new Unavailable(`cannot listen for REST on ${host}:${port}: ${err.message}`, { cause: err })))
      server.listen(port, host, () => resolve())
    })
    const a = server.address() as AddressInfo
    this.origin = `${tls ? 'https' : 'http'}://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`
    this.server = server
  }

  async close(): Promise<void> {
    const server = this.server
    if (!server) return
    await new Promise<void>((resolve) => {
      server.close(() => resolve())
      server.closeIdleConnections()
    })
  }

  /**
   * The route for `method` and `path`: of the routes whose segments match
   * (a literal equal, a `:name` anything), the first added; HEAD falls back
   * to GET. No route for the method but some for others: those (a 405).
   */
  private match(method: string, path: string): { route: CompiledRoute; params: Record<string, string> } | { allowed: string[] } | undefined {
    const segs = split(path)
    // Every node the path ends at: a literal and a `:name` branch may both match a segment.
    const ends: RouteNode[] = []
    const walk = (node: RouteNode, i: number): void => {
      if (i === segs.length) {
        if (node.routes.size) ends.push(node)
        return
      }
      const lit = node.literal.get(segs[i]!)
      if (lit) walk(lit, i + 1)
      if (node.param) walk(node.param, i + 1)
    }
    walk(this.root, 0)
    if (!ends.length) return undefined
    const found = (m: string): CompiledRoute | undefined => {
      let best: CompiledRoute | undefined
      for (const n of ends) {
        const r = n.routes.get(m)
        if (r && (!best || r.order < best.order)) best = r
      }
      return best
    }
    const route = found(method) ?? (method === 'HEAD' ? found('GET') : undefined)
    if (route) {
      const params: Record<string, string> = {}
      for (let i = 0; i < segs.length; i++) {
        const p = route.segments[i]!
        if (p.charCodeAt(0) === 58 /* : */) params[p.slice(1)] = decodeSegment(segs[i]!)
      }
      return { route, params }
    }
    const allowed = this.methods.filter((m) => m !== method && found(m))
    return allowed.length ? { allowed } : undefined
  }

  private serviceOf(path: string): RestService | undefined {
    return this.services.find((s) => path === s.prefix || path.startsWith(`${s.prefix}/`))
  }

  private async handle(raw: IncomingMessage, res: ServerResponse, https: boolean): Promise<void> {
    const started = Date.now()
    const requestId = `req-${randomUUID()}`
    const url = new URL(raw.url ?? '/', 'http://x')
    const path = url.pathname.length > 1 ? url.pathname.replace(/\/+$/, '') : url.pathname
    const method = (raw.method ?? 'GET').toUpperCase()
    const service = this.serviceOf(path)
    const type: ServiceType = service?.type ?? 'identity'
    let log: Logger | undefined
    const childLog = () => (log ??= this.deps.log.child({ requestId, http: `${method} ${path}` }))
    let req: RestRequest | undefined
    try {
      const hit = this.match(method, path)
      // A trailing slash is the root of a service or version (`/identity/v3/`), never a resource (`/v2/images/` is not the list).
      if (!hit || (url.pathname.endsWith('/') && split(path).length > 2)) throw new HttpError(404, `the resource ${url.pathname} could not be found`)
      if ('allowed' in hit) throw new HttpError(405, `the method ${method} is not allowed for ${path} (allowed: ${hit.allowed.join(', ')})`, { allow: hit.allowed.join(', ') })
      const { route, params } = hit
      const host = raw.headers.host ?? this.origin.replace(/^https?:\/\//, '')
      const baseUrl = this.publicUrl ? `${this.publicUrl}${route.service.prefix}` : `${https ? 'https' : 'http'}://${host}${route.service.prefix}`
      let body: Promise<unknown> | undefined
      req = {
        method, path: path.slice(route.service.prefix.length) || '/', params, query: url.searchParams, headers: raw.headers, requestId,
        auth: undefined, visibility: undefined, baseUrl, raw, res,
        get log() {
          return childLog()
        },
        json: () => (body ??= readJson(raw, route)),
      }
      if (route.policy !== 'public') {
        const token = header(raw, 'x-auth-token')
        if (!token) throw new Unauthenticated('the request needs a token: send X-Auth-Token (POST /identity/v3/auth/tokens issues one)')
        req.auth = await this.deps.authenticate(token)
        const target = route.target ? await route.target(req) : params
        const policy = route.policyOf ? await route.policyOf(req) : route.policy
        req.visibility = await this.deps.policy.enforce(policy, target, req.auth, this.deps.lookup)
      }
      const out = await route.handler(req)
      if (out.streamed) return
      const headers = { ...route.service.headers?.(req), ...out.headers }
      const text = out.json ?? (out.body === undefined ? undefined : JSON.stringify(out.body))
      send(res, method, requestId, type, out.status ?? (text === undefined ? 204 : 200), text, headers)
      childLog().debug({ status: res.statusCode, ms: Date.now() - started }, 'rest call')
    } catch (err) {
      const fault: RestFault = faultOf(type, err)
      if (fault.status >= 500) childLog().error({ err, status: fault.status, ms: Date.now() - started }, 'rest call failed')
      else childLog().debug({ status: fault.status, reason: fault.message, ms: Date.now() - started }, 'rest call refused')
      if (res.headersSent) {
        res.destroy()
        return
      }
      const headers: Record<string, string> = { ...(req && service?.headers ? safe(() => service.headers!(req!)) : {}), ...fault.headers }
      if (fault.status === 401) headers['www-authenticate'] = `Keystone uri="${this.url('/identity')}"`
      // A body the refusal left unread is not read on to keep the connection: close it instead.
      const unread = !raw.complete
      if (unread) headers.connection = 'close'
      send(res, method, requestId, type, fault.status, JSON.stringify(fault.body), headers)
      if (unread) res.once('finish', () => raw.destroy())
    }
  }
}

function safe<T extends object>(f: () => T): T | object {
  try {
    return f()
  } catch {
    return {}
  }
}

function deps(d: RestDeps, r: Route): void {
  if (r.policy !== 'public') d.policy.entry(r.policy) // fail at start-up, not at call time
}

function decodeSegment(seg: string): string {
  try {
    return decodeURIComponent(seg)
  } catch {
    throw new HttpError(400, `the path segment '${seg}' is not valid percent-encoding`)
  }
}

function split(p: string): string[] {
  return p.split('/').filter(Boolean)
}

export function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name]
  return Array.isArray(v) ? v[0] : v
}

function send(res: ServerResponse, method: string, requestId: string, type: ServiceType, status: number, text: string | Buffer | undefined, headers: Record<string, string>): void {
  // A small body ended as a string goes out with the head in one write; a large one is encoded once into a Buffer
  // (as a string it would be scanned for its length and encoded again on the way out).
  const payload = text === undefined || typeof text !== 'string' || text.length < 16_384 ? text : Buffer.from(text)
  res.statusCode = status
  res.setHeader(REQUEST_ID, requestId)
  if (type === 'compute') res.setHeader('x-compute-request-id', requestId)
  for (const k in headers) res.setHeader(k, headers[k]!)
  if (payload !== undefined) {
    res.setHeader('content-type', 'application/json')
    res.setHeader('content-length', typeof payload === 'string' ? Buffer.byteLength(payload) : payload.length)
  } else if (status !== 204 && status !== 304) {
    res.setHeader('content-length', 0)
  }
  res.end(method === 'HEAD' ? undefined : payload)
}

/** Reads the JSON body within the route's limit: a declared length over it is refused before reading, a stream that outgrows it is cut. */
async function readJson(raw: IncomingMessage, route: Route): Promise<unknown> {
  const limit = route.bodyLimit ?? DEFAULT_BODY_LIMIT
  const declared = Number(header(raw, 'content-length') ?? NaN)
  const chunked = header(raw, 'transfer-encoding') !== undefined
  if (!chunked && (!Number.isFinite(declared) || declared === 0)) return undefined
  if (declared > limit) throw new HttpError(413, `the request body (${declared} bytes) is larger than the limit of ${limit} bytes`)
  const ct = (header(raw, 'content-type') ?? '').split(';')[0]!.trim().toLowerCase()
  const accepts = route.accepts
  if (accepts ? !accepts.includes(ct) : !isJsonType(ct)) {
    throw new HttpError(415, `the content type '${ct || '(none)'}' is not supported here; send ${accepts?.join(' or ') ?? 'application/json'}`)
  }
  const chunks: Buffer[] = []
  let n = 0
  for await (const c of raw as AsyncIterable<Buffer>) {
    n += c.length
    if (n > limit) throw new HttpError(413, `the request body is larger than the limit of ${limit} bytes`)
    chunks.push(c)
  }
  const text = Buffer.concat(chunks).toString('utf8')
  if (text.trim() === '') return undefined
  try {
    return JSON.parse(text)
  } catch (err) {
    throw new InvalidArgument(`the request body is not valid JSON: ${(err as Error).message}`, { field: 'body' })
  }
}

/**
 * Answers kept with a kept listing, by shape (what else the answer depends
 * on: microversion, role, base URL, query). A catalog that hands out the same
 * frozen listing for as long as nothing in it changed (ServerViews, the
 * network catalog) makes an answer kept with it current for exactly as long:
 * an unchanged listing is answered with bytes at hand. Listings that are not
 * frozen are fresh each time: their answers are made, not kept.
 */
const keptAnswers = new WeakMap<readonly unknown[], Map<string, Buffer>>()

/** A few shapes per listing: more are made, not kept. */
const KEPT_SHAPES = 4

export function keptAnswer(listing: readonly unknown[], shape: string, make: () => Buffer): Buffer {
  if (!Object.isFrozen(listing)) return make()
  let shapes = keptAnswers.get(listing)
  if (!shapes) keptAnswers.set(listing, (shapes = new Map()))
  let json = shapes.get(shape)
  if (json === undefined) {
    json = make()
    if (shapes.size < KEPT_SHAPES) shapes.set(shape, json)
  }
  return json
}

/** The JSON body, required to be an object holding `key` (e.g. `{"server": {...}}`); names the key when it is missing. */
export async function bodyObject<T = Record<string, unknown>>(req: RestRequest, key: string): Promise<T> {
  const b = await req.json()
  if (b === undefined || b === null || typeof b !== 'object' || Array.isArray(b)) throw new InvalidArgument(`the request body must be a JSON object with '${key}'`, { field: key })
  const v = (b as Record<string, unknown>)[key]
  if (v === undefined || v === null || typeof v !== 'object' || Array.isArray(v)) throw new InvalidArgument(`'${key}' is a required object in the request body`, { field: key })
  return v as T
}

/**
 * The metadata service: Nova's metadata API as a guest reaches it through
 * Neutron's proxy, at http://169.254.169.254/ inside each network's DHCP
 * namespace, served by the agent itself.
 *
 * Neutron runs one haproxy per namespace; haproxy adds X-Forwarded-For (the
 * TCP source) and sets X-Neutron-Network-ID (deleting any the guest sent),
 * the metadata agent finds the port by (network, address), and Nova answers
 * for that port's server. Here the listening socket is created inside the
 * namespace by the agent (net/netns.ts) and served by this process: the
 * network is the listener that accepted the connection, the address is the
 * connection's peer, so both are what the kernel says — the same two facts
 * Neutron's proxy adds, without a header a guest could forge and without a
 * process per network. No request header is ever read.
 *
 * Answers come from the conductor (agents never read the database), cached
 * per (network, address): a hit costs no round trip. A miss is cached
 * briefly too; the cache is dropped when ports change (`invalidate`).
 */
import http from 'node:http'
import type { Logger } from 'pino'
import { NotFound, Unavailable, toStratoError } from '../../proto/errors.js'
import type { InstanceMetadata } from '../../proto/instance-metadata.js'
import { listenInNamespace } from '../net/netns.js'
import { InstanceDocuments, methodNotAllowed, normalizePath, notFound, rootListing, TEXT, type MetadataResponse } from './paths.js'

/** Nova's and cloud-init's address of the metadata service. */
export const METADATA_ADDRESS = '169.254.169.254'

export interface MetadataServiceOptions {
  /** off: attach and detach do nothing (hosts without namespaces, fast tests). */
  enabled: boolean
  /** The server behind (network, source address). @throws NotFound when none. */
  lookup(networkId: string, address: string): Promise<InstanceMetadata>
  /** @default 80 */
  port?: number
  /** How long an answer is reused. @default 30000 */
  cacheTtlMs?: number
  /** How long "no such server" is reused. @default 3000 */
  negativeTtlMs?: number
  /** Most cached (network, address) pairs. @default 4096 */
  cacheSize?: number
  log: Logger
}

interface Entry {
  expires: number
  docs: Promise<InstanceDocuments | undefined>
}

const CLIENT_ERROR = 'An unknown error has occurred. Please try your request again.\n'

export class MetadataService {
  /** network id → its namespace and server. */
  private readonly listeners = new Map<string, { netns: string; server: http.Server }>()
  private readonly cache = new Map<string, Entry>()
  private readonly port: number
  private readonly ttl: number
  private readonly negativeTtl: number
  private readonly cacheSize: number
  private readonly log: Logger
  private closed = false

  constructor(private readonly o: MetadataServiceOptions) {
    this.port = o.port ?? 80
    this.ttl = o.cacheTtlMs ?? 30_000
    this.negativeTtl = o.negativeTtlMs ?? 3_000
    this.cacheSize = o.cacheSize ?? 4096
    this.log = o.log.child({ component: 'metadata' })
  }

  /** The networks served now, with their namespaces. */
  attached(): Map<string, string> {
    return new Map([...this.listeners].map(([n, l]) => [n, l.netns]))
  }

  /**
   * Serves `networkId`'s guests from namespace `netns` (on 169.254.169.254,
   * which need not be on an interface yet). Idempotent; a new namespace for
   * the network replaces the old listener.
   * @throws NotFound when the namespace does not exist; FailedPrecondition when the socket cannot be made there.
   */
  async attach(networkId: string, netns: string): Promise<void> {
    if (!this.o.enabled || this.closed) return
    const current = this.listeners.get(networkId)
    if (current?.netns === netns && current.server.listening) return
    if (current) await this.detach(networkId)
    const fd = listenInNamespace({ netns, address: METADATA_ADDRESS, port: this.port })
    const server = http.createServer({ requestTimeout: 10_000, headersTimeout: 5_000, keepAliveTimeout: 5_000 }, (req, res) => void this.serve(networkId, req, res))
    server.on('clientError', (_err, socket) => socket.destroy())
    this.listeners.set(networkId, { netns, server })
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject)
        server.listen({ fd }, () => {
          server.off('error', reject)
          resolve()
        })
      })
    } catch (err) {
      this.listeners.delete(networkId)
      server.close()
      throw err
    }
    server.on('error', (err) => this.log.warn({ err, network: networkId, netns }, 'metadata listener failed'))
    this.log.info({ network: networkId, netns, port: this.port }, 'metadata service attached')
  }

  /**
   * Stops serving `networkId` (open connections are cut). A network not
   * served is fine. Call it before the namespace is deleted: a socket holds
   * its namespace, so `ip netns delete` alone would leave the namespace, and
   * the interfaces in it, alive for as long as the listener.
   */
  async detach(networkId: string): Promise<void> {
    const l = this.listeners.get(networkId)
    if (!l) return
    this.listeners.delete(networkId)
    await closeServer(l.server)
    for (const key of this.cache.keys()) if (key.startsWith(`${networkId} `)) this.cache.delete(key)
    this.log.info({ network: networkId, netns: l.netns }, 'metadata service detached')
  }

  /** Forgets every cached answer (ports or servers changed). */
  invalidate(): void {
    this.cache.clear()
  }

  /** Closes every listener; attach does nothing afterwards. */
  async close(): Promise<void> {
    this.closed = true
    await Promise.all([...this.listeners.keys()].map((n) => this.detach(n)))
    this.cache.clear()
  }

  /**
   * The answer to one request from `address` on `networkId` (the transport
   * around it is `serve`); exported for tests and benchmarks.
   */
  async answer(networkId: string, address: string, method: string, url: string): Promise<MetadataResponse> {
    if (method !== 'GET' && method !== 'HEAD') return methodNotAllowed()
    const p = normalizePath(url)
    if (p === undefined) return notFound()
    if (p === '/') return rootListing()
    const docs = await this.documents(networkId, address)
    return docs ? docs.lookup(p) : notFound()
  }

  private async serve(networkId: string, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    // The peer as the kernel reports it; never X-Forwarded-For or any other header.
    const address = req.socket.remoteAddress ?? ''
    let r: MetadataResponse
    try {
      r = await this.answer(networkId, address, req.method ?? '', req.url ?? '/')
    } catch (err) {
      const e = toStratoError(err)
      this.log.warn({ err: e.message, network: networkId, address }, 'metadata lookup failed')
      r = { status: e instanceof Unavailable ? 503 : 500, contentType: TEXT, body: Buffer.from(CLIENT_ERROR) }
    }
    this.log.debug({ network: networkId, address, method: req.method, path: req.url, status: r.status }, 'metadata request')
    res.writeHead(r.status, { 'content-type': r.contentType, 'content-length': r.body.length, ...r.headers })
    res.end(req.method === 'HEAD' ? undefined : r.body)
  }

  /** The documents of the server at (network, address), cached; undefined when no server holds it. */
  private documents(networkId: string, address: string): Promise<InstanceDocuments | undefined> {
    const key = `${networkId} ${address}`
    const now = Date.now()
    const hit = this.cache.get(key)
    if (hit && hit.expires > now) return hit.docs
    if (hit) this.cache.delete(key)
    const entry: Entry = { expires: now + this.ttl, docs: Promise.resolve(undefined) }
    entry.docs = this.o.lookup(networkId, address).then(
      (meta) => new InstanceDocuments(meta, address),
      (err) => {
        if (err instanceof NotFound) {
          entry.expires = Date.now() + this.negativeTtl
          return undefined
        }
        // Not an answer (the controller is unreachable): the next request asks again.
        if (this.cache.get(key) === entry) this.cache.delete(key)
        throw err
      },
    )
    if (this.cache.size >= this.cacheSize) this.evict(now)
    this.cache.set(key, entry)
    return entry.docs
  }

  /** Drops expired entries, then the oldest if still full. */
  private evict(now: number): void {
    for (const [k, e] of this.cache) if (e.expires <= now) this.cache.delete(k)
    for (const k of this.cache.keys()) {
      if (this.cache.size < this.cacheSize) break
      this.cache.delete(k)
    }
  }
}

function closeServer(server: http.Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve())
    server.closeAllConnections()
  })
}

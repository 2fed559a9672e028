/**
 * NATS URL lists, as both daemons take them (`STRATO_NATS_URL`): one URL, or
 * several comma-separated — the nodes of a NATS cluster, all given to the
 * client (nats.js `servers: [...]`), which fails over between them.
 */
import { InvalidArgument } from './errors.js'

export interface NatsServers {
  /** The URLs, trimmed, in the order given. */
  servers: string[]
  /** True for `tls://` URLs. */
  tls: boolean
}

/**
 * A comma-separated NATS URL list, checked URL by URL: `nats://host:port` and
 * `host:port` are plaintext, `tls://host:port` is TLS. One connection has one
 * TLS setting, so a list mixing them is refused rather than silently dialled
 * in plaintext (or failing the TLS handshake) on some servers.
 */
export function parseNatsUrls(list: string): NatsServers {
  const field = { field: 'natsUrl' }
  const servers = list.split(',').map((s) => s.trim()).filter(Boolean)
  if (!servers.length) throw new InvalidArgument(`natsUrl (STRATO_NATS_URL) names no server: '${list}'`, field)
  const tls: boolean[] = []
  for (const server of servers) {
    const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//.exec(server)?.[1]?.toLowerCase()
    if (scheme !== undefined && scheme !== 'nats' && scheme !== 'tls') {
      throw new InvalidArgument(`natsUrl (STRATO_NATS_URL): '${server}' has scheme ${scheme}://; use nats://host:port (plaintext) or tls://host:port`, field)
    }
    let hostname = ''
    try {
      hostname = new URL(scheme ? server : `nats://${server}`).hostname
    } catch {
      // unparsable: no host name, refused just below
    }
    if (!hostname) throw new InvalidArgument(`natsUrl (STRATO_NATS_URL): '${server}' is not a NATS URL (nats://host:port or tls://host:port)`, field)
    tls.push(scheme === 'tls')
  }
  if (tls.some((t) => t !== tls[0])) {
    throw new InvalidArgument(`natsUrl (STRATO_NATS_URL) mixes tls:// and plaintext URLs (${servers.join(', ')}): a connection is TLS to every server or to none; list servers of one kind`, field)
  }
  return { servers, tls: tls[0]! }
}

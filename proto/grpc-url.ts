/**
 * The API's address as users, openrc files, the catalog and agents write it:
 * `grpcs://host:port` (TLS), `grpc://host:port` (plaintext), or a bare
 * `host:port` (plaintext unless a CA file is given; see each client). Shared
 * by the controller (what it announces), the agent and the CLI.
 */

export interface GrpcTarget {
  /** `host:port`, what a gRPC channel dials. */
  address: string
  /** `grpcs`, `grpc`, or '' for a bare address. */
  scheme: 'grpcs' | 'grpc' | ''
}

/** `grpcs://h:p`, `grpc://h:p` or `h:p` (a trailing slash allowed) → its parts; undefined when it is none of those. */
export function parseGrpcUrl(url: string): GrpcTarget | undefined {
  const m = /^(?:(grpcs?):\/\/)?([^/\s]+?)\/?$/.exec(url.trim())
  if (!m || !/:\d+$/.test(m[2]!) || /^[a-z][a-z0-9+.-]*:\/\//i.test(m[2]!)) return undefined
  return { address: m[2]!, scheme: (m[1] ?? '') as GrpcTarget['scheme'] }
}

/** The URL clients are given for `address`: `grpcs://` when the listener speaks TLS. */
export function grpcUrl(address: string, tls: boolean): string {
  return `${tls ? 'grpcs' : 'grpc'}://${address}`
}

/** What OpenSSL and Node say (in a grpc-js UNAVAILABLE's details) when the server's certificate does not verify. */
const CERT_FAILURE = /certificate|self[- ]signed|issuer|CERT_|verify|altnames|Hostname\/IP/i

/**
 * True when a failed connection's details say the server's certificate did
 * not verify: not a transient outage (retrying cannot help), a trust problem
 * the operator must fix (the CA file).
 */
export function isCertificateFailure(details: string): boolean {
  return CERT_FAILURE.test(details)
}

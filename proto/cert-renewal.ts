/**
 * When a certificate the cloud's CA issued is due for renewal — the one rule
 * for the controller's serving certificates (controller/tls/ca.ts) and the
 * hosts' NBD certificates (agent/volume/nbd-tls.ts), so the two sides cannot
 * drift: within 30 days of its expiry, or past 2/3 of its lifetime (the CA
 * issues leaf certificates for a year: renewed about four months early).
 */
import type { X509Certificate } from 'node:crypto'

/** Renew a certificate this close to its expiry. */
export const RENEW_BEFORE_MS = 30 * 24 * 3600 * 1000

/** Why `cert` is due for renewal at `now`, or undefined when it is not. */
export function renewalDue(cert: X509Certificate, now = Date.now()): string | undefined {
  const [from, to] = [Date.parse(cert.validFrom), Date.parse(cert.validTo)]
  if (to - now < RENEW_BEFORE_MS) return `it expires at ${cert.validTo}`
  if (now - from > ((to - from) * 2) / 3) return `it is past 2/3 of its lifetime (${cert.validFrom} to ${cert.validTo})`
  return undefined
}

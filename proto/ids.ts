/**
 * Identifiers as they appear on every wire (gRPC fields, NATS subjects and
 * cast ids, libvirt domain uuids, directory names on a host).
 */

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

/**
 * Is `s` a uuid in the canonical lower-case form Strato stores and sends?
 * Input from people (CLI arguments) may be upper case: lower it first.
 */
export function isUuid(s: string): boolean {
  return UUID_RE.test(s)
}

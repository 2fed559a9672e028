/**
 * The bus's payload limit, checked before a message is sent. nats-server
 * refuses a message larger than its `max_payload` (1 MB by default; the
 * client learns the value in the server's INFO), and the client library
 * reports it as a bare MAX_PAYLOAD_EXCEEDED that said nothing of which
 * message or why: a build spec that outgrew the limit reached the agent as
 * "internal error" with no cause logged. Both daemons encode through here.
 */
import { ResourceExhausted } from './errors.js'

/** nats-server's default `max_payload`, used when the connection has not said. */
export const DEFAULT_MAX_PAYLOAD = 1024 * 1024

/**
 * Returns `bytes` when they fit in one message of the bus.
 * @param kind what the message is, for the error ("the build spec of server …").
 * @param maxPayload the server's limit (`nc.info?.max_payload`).
 * @param headerBytes room kept for headers the message travels with
 *   (nats-server counts headers and payload together), e.g. a JetStream msg id.
 * @throws ResourceExhausted naming `kind`, its size and the limit.
 */
export function encodeBounded(kind: string, bytes: Uint8Array, maxPayload: number | undefined, headerBytes = 0): Uint8Array {
  const limit = (maxPayload !== undefined && maxPayload > 0 ? maxPayload : DEFAULT_MAX_PAYLOAD) - headerBytes
  if (bytes.length > limit) {
    throw new ResourceExhausted(`${kind} is ${bytes.length} bytes; the message bus carries at most ${limit} bytes in one message (nats-server max_payload ${maxPayload ?? DEFAULT_MAX_PAYLOAD}${headerBytes ? `, less ${headerBytes} for headers` : ''})`)
  }
  return bytes
}

/**
 * The one mapping between Strato errors and NATS service-error headers
 * (`Nats-Service-Error-Code`, `Nats-Service-Error`, as the NATS services
 * framework spells them), for request/reply over NATS.
 */
import { headers, type MsgHdrs } from '@nats-io/transport-node'
import { errorFromCode, toStratoError, type StratoError } from './errors.js'

const CODE = 'Nats-Service-Error-Code'
const MESSAGE = 'Nats-Service-Error'
const FIELD = 'Strato-Error-Field'

/** Headers that carry `err` in a reply. Internal errors do not leak their cause. */
export function errorHeaders(err: unknown): MsgHdrs {
  const e = toStratoError(err)
  const h = headers()
  h.set(CODE, e.code)
  h.set(MESSAGE, e.code === 'INTERNAL' && e.cause !== undefined ? 'internal error; see the controller log' : e.message.replace(/[\r\n]+/g, ' '))
  if (e.field) h.set(FIELD, e.field)
  return h
}

/** The error a reply carries, if any. */
export function errorFromHeaders(h: MsgHdrs | undefined): StratoError | undefined {
  const code = h?.get(CODE)
  if (!h || !code) return undefined
  const field = h.get(FIELD)
  return errorFromCode(code, h.get(MESSAGE) || code, field ? { field } : {})
}

/**
 * Strato errors as each OpenStack service answers them, in one place (as
 * `proto/grpc-errors.ts` does for gRPC): the HTTP status per error class, and
 * the service's own error body — Keystone's `{"error": {code, message,
 * title}}`, Nova's and Cinder's `{"itemNotFound": {code, message}}`,
 * Neutron's `{"NeutronError": {type, message, detail}}`, Glance's
 * `{"code": "404 Not Found", "title", "message"}`, Placement's `{"errors": [...]}`.
 */
import { STATUS_CODES } from 'node:http'
import { StratoError, type ErrorCode } from '../../proto/errors.js'

/** An HTTP-level refusal with its own status (405, 406, 413, 415 …): what no domain error says. */
export class HttpError extends Error {
  constructor(readonly status: number, message: string, readonly headers: Record<string, string> = {}) {
    super(message)
  }
}

export type ServiceType = 'identity' | 'compute' | 'image' | 'network' | 'volume' | 'placement'

export interface RestFault {
  status: number
  message: string
  body: unknown
  headers: Record<string, string>
}

/** The status of each error class; a service may differ (quota: Nova 403, Neutron 409, Cinder 413). */
const statusOf: Record<ErrorCode, number> = {
  NOT_FOUND: 404,
  ALREADY_EXISTS: 409,
  INVALID_ARGUMENT: 400,
  FAILED_PRECONDITION: 409,
  PERMISSION_DENIED: 403,
  UNAUTHENTICATED: 401,
  RESOURCE_EXHAUSTED: 413,
  CONFLICT: 409,
  UNAVAILABLE: 503,
  INTERNAL: 500,
}

const quotaStatus: Record<ServiceType, number> = { identity: 413, compute: 403, image: 413, network: 409, volume: 413, placement: 409 }

/** Where a service answers an error class otherwise: Cinder's status refusals (InvalidVolume, InvalidSnapshot, …) are its `Invalid`, 400. */
const serviceStatus: Partial<Record<ServiceType, Partial<Record<ErrorCode, number>>>> = { volume: { FAILED_PRECONDITION: 400 } }

/**
 * Where a service answers by whose state refused: an error's `field` names it.
 * Nova answers a volume that cannot be attached or detached (its status,
 * attached there already, the server's root disk) with 400, its InvalidVolume; a
 * refusal by the server's own state stays 409 (InstanceInvalidState).
 */
const fieldStatus: Partial<Record<ServiceType, Record<string, Partial<Record<ErrorCode, number>>>>> = {
  compute: { volume_id: { FAILED_PRECONDITION: 400, ALREADY_EXISTS: 400 } },
}

/** Nova's (and Cinder's) fault names per status. */
const novaFault: Record<number, string> = {
  400: 'badRequest', 401: 'unauthorized', 403: 'forbidden', 404: 'itemNotFound', 405: 'badMethod', 409: 'conflictingRequest',
  413: 'overLimit', 415: 'badMediaType', 429: 'overLimit', 501: 'notImplemented', 503: 'serviceUnavailable',
}

/** Neutron's exception types for the generic cases; a StratoError may name its own (`neutronType`). */
const neutronType: Record<number, string> = {
  400: 'BadRequest', 401: 'NotAuthorized', 403: 'PolicyNotAuthorized', 404: 'NotFound', 405: 'HTTPMethodNotAllowed', 409: 'Conflict',
  413: 'RequestEntityTooLarge', 415: 'HTTPUnsupportedMediaType', 500: 'InternalServerError', 503: 'ServiceUnavailable',
}

/** An optional hint a domain error may carry for Neutron's `type` (e.g. `NetworkNotFound`, `OverQuota`). */
export interface TypedError {
  neutronType?: string
}

function statusFor(type: ServiceType, err: StratoError): number {
  if (err.code === 'RESOURCE_EXHAUSTED') return quotaStatus[type]
  const byField = err.field === undefined ? undefined : fieldStatus[type]?.[err.field]
  return byField?.[err.code] ?? serviceStatus[type]?.[err.code] ?? statusOf[err.code]
}

export function faultOf(type: ServiceType, err: unknown): RestFault {
  let status = 500
  let message = 'The server has either erred or is incapable of performing the requested operation.'
  let headers: Record<string, string> = {}
  if (err instanceof HttpError) {
    status = err.status
    message = err.message
    headers = err.headers
  } else if (err instanceof StratoError) {
    status = statusFor(type, err)
    if (err.code !== 'INTERNAL') message = err.message
  }
  const title = STATUS_CODES[status] ?? 'Error'
  let body: unknown
  switch (type) {
    case 'identity':
      body = { error: { code: status, message, title } }
      break
    case 'compute':
    case 'volume':
      body = { [novaFault[status] ?? 'computeFault']: { code: status, message } } // nova wsgi Fault: computeFault for any status it does not name
      break
    case 'network': {
      const own = (err as TypedError | undefined)?.neutronType
      body = { NeutronError: { type: own ?? (err instanceof StratoError && err.code === 'RESOURCE_EXHAUSTED' ? 'OverQuota' : neutronType[status] ?? 'NeutronError'), message, detail: '' } }
      break
    }
    case 'image':
      body = { code: `${status} ${title}`, title, message }
      break
    case 'placement':
      body = { errors: [{ status, title, detail: message, request_id: '' }] }
      break
  }
  return { status, message, body, headers }
}

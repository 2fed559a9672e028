/** The one mapping from Strato errors to gRPC status codes (and back, for clients). */
import { Metadata, status, type ServiceError } from '@grpc/grpc-js'
import { errorFromCode, toStratoError, type ErrorCode, type StratoError } from './errors.js'

const toStatus: Record<ErrorCode, status> = {
  NOT_FOUND: status.NOT_FOUND,
  ALREADY_EXISTS: status.ALREADY_EXISTS,
  INVALID_ARGUMENT: status.INVALID_ARGUMENT,
  FAILED_PRECONDITION: status.FAILED_PRECONDITION,
  PERMISSION_DENIED: status.PERMISSION_DENIED,
  UNAUTHENTICATED: status.UNAUTHENTICATED,
  RESOURCE_EXHAUSTED: status.RESOURCE_EXHAUSTED,
  CONFLICT: status.ABORTED,
  UNAVAILABLE: status.UNAVAILABLE,
  INTERNAL: status.INTERNAL,
}

export interface GrpcErrorPayload {
  code: status
  details: string
  metadata: Metadata
}

/** Converts anything thrown by a handler into a gRPC error. Internal errors do not leak their cause. */
export function toGrpcError(err: unknown, requestId: string): { payload: GrpcErrorPayload; error: StratoError } {
  const e = toStratoError(err)
  const metadata = new Metadata()
  metadata.set('strato-error-code', e.code)
  metadata.set('x-request-id', requestId)
  if (e.field) metadata.set('strato-error-field', e.field)
  const details = e.code === 'INTERNAL' && e.cause !== undefined ? `internal error (request ${requestId}); see the controller log` : e.message
  return { payload: { code: toStatus[e.code], details, metadata }, error: e }
}

/** Client side: turns a gRPC ServiceError back into a Strato error. */
export function fromGrpcError(err: ServiceError): StratoError {
  const code = err.metadata?.get('strato-error-code')[0]
  const field = err.metadata?.get('strato-error-field')[0]
  const byStatus = (Object.entries(toStatus).find(([, s]) => s === err.code)?.[0] ?? 'INTERNAL') as ErrorCode
  return errorFromCode(typeof code === 'string' ? code : byStatus, err.details || err.message, { cause: err, ...(typeof field === 'string' ? { field } : {}) })
}

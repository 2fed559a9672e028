/**
 * The closed set of Strato errors.
 *
 * Every layer (domain code, the native engine wrapper, the virt drivers) throws
 * one of these; transports map them to wire codes in exactly one place each
 * (`proto/grpc-errors.ts` for gRPC, `proto/nats-errors.ts` for NATS).
 * Messages say what went wrong and why, and never contain secrets.
 */

/** Stable codes, one per class; they are also the NATS service-error codes. */
export type ErrorCode =
  | 'NOT_FOUND'
  | 'ALREADY_EXISTS'
  | 'INVALID_ARGUMENT'
  | 'FAILED_PRECONDITION'
  | 'PERMISSION_DENIED'
  | 'UNAUTHENTICATED'
  | 'RESOURCE_EXHAUSTED'
  | 'CONFLICT'
  | 'UNAVAILABLE'
  | 'INTERNAL'

export interface StratoErrorOptions {
  cause?: unknown
  /** The request field the error is about, e.g. `user.name`. */
  field?: string
}

/** Base class: never thrown directly. */
export abstract class StratoError extends Error {
  abstract readonly code: ErrorCode
  readonly field: string | undefined
  constructor(message: string, options: StratoErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.field = options.field
  }
}

/** The named thing does not exist (or is invisible to the caller). */
export class NotFound extends StratoError {
  override readonly name = 'NotFound'
  readonly code = 'NOT_FOUND' as const
}
/** A thing with that unique name or id already exists. */
export class AlreadyExists extends StratoError {
  override readonly name = 'AlreadyExists'
  readonly code = 'ALREADY_EXISTS' as const
}
/** The request itself is malformed; `field` names the offending field. */
export class InvalidArgument extends StratoError {
  override readonly name = 'InvalidArgument'
  readonly code = 'INVALID_ARGUMENT' as const
}
/** The request is well formed but the target is not in a state that allows it. */
export class FailedPrecondition extends StratoError {
  override readonly name = 'FailedPrecondition'
  readonly code = 'FAILED_PRECONDITION' as const
}
/** Authenticated, but the caller's roles or scope do not allow this. */
export class PermissionDenied extends StratoError {
  override readonly name = 'PermissionDenied'
  readonly code = 'PERMISSION_DENIED' as const
}
/** No, malformed, expired, revoked or forged credentials. */
export class Unauthenticated extends StratoError {
  override readonly name = 'Unauthenticated'
  readonly code = 'UNAUTHENTICATED' as const
}
/** A quota, a pool or a host's capacity is used up. */
export class ResourceExhausted extends StratoError {
  override readonly name = 'ResourceExhausted'
  readonly code = 'RESOURCE_EXHAUSTED' as const
}
/** A concurrent change won, or the request conflicts with existing state (e.g. an IP in use). */
export class Conflict extends StratoError {
  override readonly name = 'Conflict'
  readonly code = 'CONFLICT' as const
}
/** A dependency (NATS, libvirt, an agent) cannot be reached right now; retrying may help. */
export class Unavailable extends StratoError {
  override readonly name = 'Unavailable'
  readonly code = 'UNAVAILABLE' as const
}
/** A bug or an unexpected failure; the message is safe to show, the cause is logged. */
export class Internal extends StratoError {
  override readonly name = 'Internal'
  readonly code = 'INTERNAL' as const
}

const byCode: Record<ErrorCode, new (message: string, options?: StratoErrorOptions) => StratoError> = {
  NOT_FOUND: NotFound,
  ALREADY_EXISTS: AlreadyExists,
  INVALID_ARGUMENT: InvalidArgument,
  FAILED_PRECONDITION: FailedPrecondition,
  PERMISSION_DENIED: PermissionDenied,
  UNAUTHENTICATED: Unauthenticated,
  RESOURCE_EXHAUSTED: ResourceExhausted,
  CONFLICT: Conflict,
  UNAVAILABLE: Unavailable,
  INTERNAL: Internal,
}

/** Rebuilds an error from its code (for errors that crossed a wire). Unknown codes become Internal. */
export function errorFromCode(code: string, message: string, options?: StratoErrorOptions): StratoError {
  const Ctor = (byCode as Record<string, (typeof byCode)[ErrorCode] | undefined>)[code] ?? Internal
  return new Ctor(message, options)
}

/** Wraps anything thrown into a StratoError, keeping StratoErrors as they are. */
export function toStratoError(err: unknown): StratoError {
  if (err instanceof StratoError) return err
  const message = err instanceof Error ? err.message : String(err)
  return new Internal(message, { cause: err })
}

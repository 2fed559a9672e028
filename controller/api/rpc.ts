/**
 * The one server-side interceptor: every method of every service goes through
 * `implement()`, which authenticates the `x-auth-token` metadata, enforces the
 * policy table (target resolution included), logs the call with its request
 * id, user and project, and maps thrown errors to gRPC statuses. Handlers are
 * plain async functions of (request, call context).
 */
import { randomUUID } from 'node:crypto'
import type { Metadata, ServerDuplexStream, ServerReadableStream, ServerUnaryCall, ServerWritableStream, UntypedServiceImplementation, sendUnaryData } from '@grpc/grpc-js'
import type { Logger } from '../log.js'
import type { Visibility } from '../identity/catalog.js'
import type { AuthContext, ImageReadClaims } from '../identity/model.js'
import type { Policy, TargetLookup } from '../identity/policy.js'
import { toGrpcError, type GrpcErrorPayload } from '../../proto/grpc-errors.js'
import { InvalidArgument } from '../../proto/errors.js'

export interface CallContext {
  requestId: string
  /** Absent for public methods, and when the call came with an image-read token (`imageRead`). */
  auth: AuthContext | undefined
  /** Set only on methods whose policy entry takes image-read tokens, when the call came with one. */
  imageRead?: ImageReadClaims
  /** Set only on methods whose policy entry takes image-upload tokens, when the call came with one (same claims' shape). */
  imageUpload?: ImageReadClaims
  /** Set for listing methods: what the caller may see. */
  visibility: Visibility | undefined
  log: Logger
  metadata: Metadata
}

/** An authenticated call context (non-public methods). */
export type AuthedCall = CallContext & { auth: AuthContext }

export interface RpcDeps {
  policy: Policy
  /** A promise when the token names a signing key the controller has yet to read. */
  authenticate: (token: string) => AuthContext | Promise<AuthContext>
  /**
   * The grant of an image-read token, undefined when the token is not one;
   * asked only for methods whose policy entry has `imageRead`.
   */
  imageRead?: (token: string) => Promise<ImageReadClaims | undefined> | ImageReadClaims | undefined
  /** The grant of an image-upload token, undefined when the token is not one; asked only for methods whose policy entry has `imageUpload`. */
  imageUpload?: (token: string) => Promise<ImageReadClaims | undefined> | ImageReadClaims | undefined
  lookup: TargetLookup
  log: Logger
  /** Called around each call so shutdown can wait for in-flight work. */
  track: <T>(p: Promise<T>) => Promise<T>
}

interface MethodDef {
  path: string
  requestStream: boolean
  responseStream: boolean
}

type ReqOf<M> = M extends { requestDeserialize: (v: Buffer) => infer R } ? R : never
type ResOf<M> = M extends { responseSerialize: (v: infer R) => Buffer } ? R : never

/** A handler per method, typed from the generated service definition. */
export type Handlers<S> = {
  [K in keyof S]: S[K] extends { requestStream: false; responseStream: false }
    ? (req: ReqOf<S[K]>, call: CallContext) => Promise<ResOf<S[K]>>
    : S[K] extends { requestStream: false; responseStream: true }
      ? (req: ReqOf<S[K]>, call: CallContext, stream: ServerWritableStream<ReqOf<S[K]>, ResOf<S[K]>>) => Promise<void>
      : S[K] extends { requestStream: true; responseStream: false }
        ? (stream: AsyncIterable<ReqOf<S[K]>>, call: CallContext) => Promise<ResOf<S[K]>>
        : (stream: ServerDuplexStream<ReqOf<S[K]>, ResOf<S[K]>>, call: CallContext) => Promise<void>
}

/** The interceptor's two halves for one method: before the handler, and on failure. */
export interface CallRunner {
  /** Authenticates, enforces the policy (with the request as target) and builds the call context. */
  prepare(metadata: Metadata, req: unknown): Promise<CallContext>
  /** Logs a failed call and maps what it threw to a gRPC status. */
  fail(err: unknown, metadata: Metadata, started: number): GrpcErrorPayload
}

/** Errors made of a client's undecodable bytes: refused like any bad argument, but worth a warning. */
const malformedErrors = new WeakSet<object>()

/** The error for bytes that are not the request message `what` (INVALID_ARGUMENT, logged at warn without a stack). */
export function malformed(what: string, err: unknown): InvalidArgument {
  const e = new InvalidArgument(`the request is not a valid ${what} message: ${(err as Error)?.message ?? String(err)}`, { field: 'request' })
  malformedErrors.add(e)
  return e
}

/** Decodes a request message; bytes that are not one are INVALID_ARGUMENT (the client's error, not ours). */
export function decodeRequest<T>(type: { decode(bytes: Uint8Array): T }, bytes: Uint8Array, what: string): T {
  try {
    return type.decode(bytes)
  } catch (err) {
    throw malformed(what, err)
  }
}

/** What a guarded deserializer returns for bytes it cannot decode (grpc-js would answer INTERNAL to a throw). */
class Undecodable {
  constructor(readonly error: InvalidArgument) {}
}

/** Responses marked by `keepEncoding`: null until first encoded, then their bytes. */
const encodings = new WeakMap<object, Buffer | null>()

/**
 * Marks a response message that is answered again as it is (a frozen,
 * kept object): its bytes are kept with it on first encoding, and the same
 * object is not encoded again. The object must not change afterwards.
 */
export function keepEncoding<T extends object>(message: T): T {
  if (!encodings.has(message)) encodings.set(message, null)
  return message
}

/** Each kept listing's response (see `keptResponse`). */
const listingResponses = new WeakMap<readonly object[], object>()

/**
 * The response for a listing: for a kept (frozen) listing, made once, kept
 * with it and encoded once (a catalog hands the same listing out again while
 * nothing in it changed: store/kept-listings.ts); a fresh listing gets a
 * fresh response.
 */
export function keptResponse<T extends object, M extends object>(items: readonly T[], make: (items: T[]) => M): M {
  if (!Object.isFrozen(items)) return make([...items])
  let m = listingResponses.get(items) as M | undefined
  if (!m) listingResponses.set(items, (m = keepEncoding(Object.freeze(make([...items])))))
  return m
}

/**
 * The service definition with deserializers that do not throw: undecodable
 * requests reach `implement()`, which refuses them as INVALID_ARGUMENT. Its
 * serializers reuse the bytes of responses marked by `keepEncoding`.
 */
export function guardDecoding<S extends object>(service: S): S {
  const out: Record<string, unknown> = {}
  for (const [name, def] of Object.entries(service as Record<string, MethodDef & { requestDeserialize: (b: Buffer) => unknown; responseSerialize: (v: object) => Buffer }>)) {
    const what = `${def.path.slice(1)} request`
    out[name] = {
      ...def,
      responseSerialize: (v: object) => {
        const kept = encodings.get(v)
        if (kept) return kept
        const bytes = def.responseSerialize(v)
        if (kept === null) encodings.set(v, bytes)
        return bytes
      },
      requestDeserialize: (b: Buffer) => {
        try {
          return def.requestDeserialize(b)
        } catch (err) {
          return new Undecodable(malformed(what, err))
        }
      },
    }
  }
  return out as S
}

function decoded<T>(req: T): T {
  if (req instanceof Undecodable) throw req.error
  return req
}

async function* decodedStream<T>(stream: AsyncIterable<T>): AsyncIterable<T> {
  for await (const m of stream) yield decoded(m)
}

export function callRunner(path: string, deps: RpcDeps): CallRunner {
  deps.policy.entry(path) // fail at start-up, not at call time, when a method has no policy
  return {
    async prepare(metadata, req) {
      const requestId = String(metadata.get('x-request-id')[0] ?? randomUUID())
      let auth: AuthContext | undefined
      let imageRead: ImageReadClaims | undefined
      let imageUpload: ImageReadClaims | undefined
      if (!deps.policy.isPublic(path)) {
        const token = String(metadata.get('x-auth-token')[0] ?? '')
        // The handler checks the grant's image against the request's; every other method refuses such a token in authenticate().
        imageRead = deps.policy.entry(path).imageRead ? await deps.imageRead?.(token) : undefined
        imageUpload = deps.policy.entry(path).imageUpload ? await deps.imageUpload?.(token) : undefined
        if (!imageRead && !imageUpload) auth = await deps.authenticate(token)
      }
      const visibility = auth ? await deps.policy.enforce(path, req, auth, deps.lookup) : undefined
      // The child logger is made on first use: most calls log nothing.
      let log: Logger | undefined
      const who = auth ? { user: auth.userId, project: auth.projectId ?? auth.domainId } : imageRead ? { imageReadFor: imageRead.host, instance: imageRead.instanceUuid } : imageUpload ? { imageUploadFor: imageUpload.host, instance: imageUpload.instanceUuid } : {}
      return {
        requestId,
        auth,
        ...(imageRead ? { imageRead } : {}),
        ...(imageUpload ? { imageUpload } : {}),
        visibility,
        metadata,
        get log() {
          return (log ??= deps.log.child({ requestId, method: path, ...who }))
        },
      }
    },
    fail(err, metadata, started) {
      const requestId = String(metadata.get('x-request-id')[0] ?? '')
      const { payload, error } = toGrpcError(err, requestId)
      const fields = { method: path, code: error.code, ms: Date.now() - started }
      if (error.code === 'INTERNAL') deps.log.error({ ...fields, err }, 'call failed')
      else if (typeof err === 'object' && err !== null && malformedErrors.has(err)) deps.log.warn({ ...fields, reason: error.message }, 'malformed request')
      else deps.log.debug({ ...fields, reason: error.message }, 'call refused')
      return payload
    },
  }
}

export function implement<S extends Record<string, MethodDef>>(service: S, handlers: Handlers<S>, deps: RpcDeps): UntypedServiceImplementation {
  const impl: UntypedServiceImplementation = {}
  for (const [name, def] of Object.entries(service)) {
    const handler = handlers[name as keyof S] as unknown as (...args: any[]) => Promise<any>
    if (!handler) throw new Error(`no handler for ${def.path}`)
    const { prepare, fail } = callRunner(def.path, deps)
    if (!def.requestStream && !def.responseStream) {
      impl[name] = (call: ServerUnaryCall<any, any>, callback: sendUnaryData<any>) => {
        const started = Date.now()
        deps
          .track(Promise.resolve().then(() => decoded(call.request)).then((req) => prepare(call.metadata, req).then((ctx) => handler(req, ctx))))
          .then((res) => callback(null, res), (err) => callback(fail(err, call.metadata, started)))
      }
    } else if (!def.requestStream && def.responseStream) {
      impl[name] = (call: ServerWritableStream<any, any>) => {
        const started = Date.now()
        deps
          .track(Promise.resolve().then(() => decoded(call.request)).then((req) => prepare(call.metadata, req).then((ctx) => handler(req, ctx, call))))
          .then(() => call.end(), (err) => call.emit('error', fail(err, call.metadata, started)))
      }
    } else if (def.requestStream && !def.responseStream) {
      impl[name] = (call: ServerReadableStream<any, any>, callback: sendUnaryData<any>) => {
        const started = Date.now()
        deps
          .track(prepare(call.metadata, undefined).then((ctx) => handler(decodedStream(call), ctx)))
          .then((res) => callback(null, res), (err) => callback(fail(err, call.metadata, started)))
      }
    } else {
      impl[name] = (call: ServerDuplexStream<any, any>) => {
        const started = Date.now()
        deps
          .track(prepare(call.metadata, undefined).then((ctx) => handler(call, ctx)))
          .then(() => call.end(), (err) => call.emit('error', fail(err, call.metadata, started)))
      }
    }
  }
  return impl
}

/**
 * The gRPC edge of the CLI: one address (from OS_AUTH_URL), typed clients made
 * on demand, and unary calls that turn every failure into a Strato error or a
 * CliError that says what to do (unreachable server, timeout).
 */
import { credentials, Metadata, status, type CallOptions, type Client, type ClientUnaryCall, type ServiceError } from '@grpc/grpc-js'
import { fromGrpcError } from '../../proto/grpc-errors.js'
import { CliError } from './errors.js'

type Callback<Res> = (err: ServiceError | null, res: Res) => void
/** The full overload of a generated unary method (ts-proto emits it last, so inference picks it). */
export type Unary<Req, Res> = (req: Req, md: Metadata, opts: Partial<CallOptions>, cb: Callback<Res>) => ClientUnaryCall
/* eslint-disable @typescript-eslint/no-explicit-any -- `any` is what makes these signature patterns match. */
export type RequestOf<F> = F extends (req: infer Req, md: Metadata, opts: Partial<CallOptions>, cb: Callback<any>) => ClientUnaryCall ? Req : never
export type ResponseOf<F> = F extends (req: any, md: Metadata, opts: Partial<CallOptions>, cb: (err: ServiceError | null, res: infer Res) => void) => ClientUnaryCall ? Res : never
/** Names of the unary methods of a generated client. */
export type UnaryMethods<C> = { [K in keyof C]: C[K] extends Unary<any, any> ? K : never }[keyof C] & string
/* eslint-enable @typescript-eslint/no-explicit-any */

export type ClientCtor<C extends Client> = new (address: string, creds: ReturnType<typeof credentials.createInsecure>, options?: object) => C

/** Seconds a call may take before the CLI gives up. */
const DEADLINE_SECONDS = 30

/** `grpc://host:port` (or plain `host:port`) → `host:port`. */
export function addressOf(authUrl: string): string {
  const m = /^(?:grpc:\/\/)?([^/\s]+?)\/?$/.exec(authUrl.trim())
  if (/^https?:\/\//.test(authUrl)) {
    throw new CliError(`OS_AUTH_URL is '${authUrl}', an HTTP URL; Strato speaks gRPC: use grpc://host:port (e.g. grpc://127.0.0.1:8770, as written in admin-openrc)`)
  }
  if (!m || !/:\d+$/.test(m[1]!)) throw new CliError(`OS_AUTH_URL '${authUrl}' is not grpc://host:port (e.g. grpc://127.0.0.1:8770, as written in admin-openrc)`)
  return m[1]!
}

export class Transport {
  readonly address: string
  private readonly clients = new Map<unknown, Client>()

  constructor(readonly authUrl: string) {
    this.address = addressOf(authUrl)
  }

  client<C extends Client>(ctor: ClientCtor<C>): C {
    let c = this.clients.get(ctor)
    if (!c) {
      c = new ctor(this.address, credentials.createInsecure())
      this.clients.set(ctor, c)
    }
    return c as C
  }

  /** One unary call; `token` goes in `x-auth-token`. Rejects with a StratoError or a CliError. */
  unary<C extends Client, M extends UnaryMethods<C>>(client: C, method: M, req: RequestOf<C[M]>, token?: string): Promise<ResponseOf<C[M]>> {
    const md = new Metadata()
    if (token) md.set('x-auth-token', token)
    const fn = client[method] as unknown as Unary<RequestOf<C[M]>, ResponseOf<C[M]>>
    return new Promise((resolve, reject) => {
      fn.call(client, req, md, { deadline: Date.now() + DEADLINE_SECONDS * 1000 }, (err, res) => (err ? reject(this.convert(err)) : resolve(res)))
    })
  }

  /** A gRPC failure as a Strato error, or a CliError for an unreachable or silent server. */
  convert(err: ServiceError): Error {
    const fromServer = err.metadata?.get('strato-error-code')[0] !== undefined
    if (!fromServer && err.code === status.UNAVAILABLE) {
      const why = /ECONNREFUSED/.test(err.details) ? 'connection refused' : err.details
      return new CliError(
        `cannot reach the Strato API at ${this.address} (OS_AUTH_URL=${this.authUrl}): ${why}. Is the controller running? Start it with 'npm start', or check OS_AUTH_URL.`,
        { cause: err },
      )
    }
    if (!fromServer && err.code === status.DEADLINE_EXCEEDED) {
      return new CliError(`the Strato API at ${this.address} did not answer within ${DEADLINE_SECONDS} s; check that the controller is healthy (OS_AUTH_URL=${this.authUrl})`, { cause: err })
    }
    return fromGrpcError(err)
  }

  close(): void {
    for (const c of this.clients.values()) c.close()
    this.clients.clear()
  }
}

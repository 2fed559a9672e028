/**
 * The gRPC edge of the CLI: one address (from OS_AUTH_URL), typed clients made
 * on demand, and unary calls that turn every failure into a Strato error or a
 * CliError that says what to do (unreachable server, timeout, a certificate
 * that does not verify).
 *
 * `grpcs://` speaks TLS and verifies the server against OS_CACERT (or the
 * system's roots when it is unset), as openstackclient does for https;
 * `grpc://` and a bare host:port are plaintext.
 *
 * OS_AUTH_URL may list several controllers, comma-separated (several
 * controllers on one database serve the same API): calls go to the first,
 * and move on to the next when one cannot be reached (no connection, so the
 * call never arrived and sending it elsewhere does nothing twice).
 */
import { readFileSync } from 'node:fs'
import { credentials, Metadata, status, type CallOptions, type ChannelCredentials, type Client, type ClientUnaryCall, type ServiceError } from '@grpc/grpc-js'
import { fromGrpcError } from '../../proto/grpc-errors.js'
import { bulkChannelOptions } from '../../proto/grpc-channel.js'
import { isCertificateFailure, parseGrpcUrl } from '../../proto/grpc-url.js'
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

export type ClientCtor<C extends Client> = new (address: string, creds: ChannelCredentials, options?: object) => C

/** Seconds a call may take before the CLI gives up. */
const DEADLINE_SECONDS = 30

/** `grpcs://host:port`, `grpc://host:port` or plain `host:port` → `host:port` (the first, of a list). */
export function addressOf(authUrl: string): string {
  return targetsOf(authUrl)[0]!.address
}

/** The controllers a (comma-separated) OS_AUTH_URL names, in order. */
function targetsOf(authUrl: string): Array<{ address: string; tls: boolean }> {
  const urls = authUrl.split(',').map((u) => u.trim()).filter(Boolean)
  if (urls.length === 0) throw new CliError(`OS_AUTH_URL '${authUrl}' names no controller: give grpcs://host:port (or several, comma-separated)`)
  return urls.map(targetOf)
}

function targetOf(authUrl: string): { address: string; tls: boolean } {
  if (/^https?:\/\//.test(authUrl)) {
    throw new CliError(`OS_AUTH_URL is '${authUrl}', an HTTP URL; Strato speaks gRPC: use grpcs://host:port or grpc://host:port (e.g. grpcs://127.0.0.1:8770, as written in admin-openrc)`)
  }
  const t = parseGrpcUrl(authUrl)
  if (!t) throw new CliError(`OS_AUTH_URL '${authUrl}' is not grpc://host:port or grpcs://host:port (e.g. grpcs://127.0.0.1:8770, as written in admin-openrc)`)
  return { address: t.address, tls: t.scheme === 'grpcs' }
}

/** What OpenSSL says when the peer answered a ClientHello with something that is not TLS. */
const PLAINTEXT_PEER = /wrong version number|packet length too long|unknown protocol|record layer failure/i

/** The OpenSSL reason in a grpc-js "No connection established. Last error: Error: …" detail. */
function certReason(details: string): string {
  const m = /Error: (.+?)(?:\.? Resolution note:.*)?$/.exec(details)
  return (m?.[1] ?? details).trim()
}

/**
 * grpc-js sends the dialled host as TLS SNI even when it is an IP address, and
 * Node then prints DEP0123 on every `strato` run against grpcs://127.0.0.1
 * (admin-openrc's default). SNI is only a hint our server ignores; the
 * certificate is still checked against the IP's SAN. Drop just that warning.
 */
function silenceIpServernameWarning(): void {
  const emit = process.emitWarning as (...args: unknown[]) => void
  if ((emit as { strato?: boolean }).strato) return
  const filtered = (...args: unknown[]) => {
    if (args.includes('DEP0123') || (typeof args[1] === 'object' && (args[1] as { code?: string } | null)?.code === 'DEP0123')) return
    emit.apply(process, args)
  }
  ;(filtered as { strato?: boolean }).strato = true
  process.emitWarning = filtered as typeof process.emitWarning
}

export class Transport {
  /** The controller calls go to now (the first of OS_AUTH_URL that could be reached). */
  address: string
  /** True for grpcs://: TLS, server verified against `caFile` (or the system's roots). */
  tls: boolean
  private creds: ChannelCredentials | undefined
  private readonly clients = new Map<unknown, Client>()
  private readonly targets: Array<{ address: string; tls: boolean }>
  private current = 0
  /** Clients of controllers left behind. */
  private readonly retired: Client[] = []

  /** `caFile`: OS_CACERT / --os-cacert, the CA the API's certificate must chain to. */
  constructor(readonly authUrl: string, readonly caFile?: string) {
    this.targets = targetsOf(authUrl)
    this.address = this.targets[0]!.address
    this.tls = this.targets[0]!.tls
  }

  /**
   * Moves to the next controller of OS_AUTH_URL after `failed` could not be
   * reached; false when there is none left (every one was tried). Clients
   * made for the old address are closed.
   */
  private failover(failed: number): boolean {
    if (failed !== this.current) return true // another call already moved on
    if (this.current + 1 >= this.targets.length) return false
    this.current++
    const t = this.targets[this.current]!
    this.address = t.address
    if (t.tls !== this.tls) this.creds = undefined
    this.tls = t.tls
    // Callers may hold clients of the old address: unary() swaps them for the new address's; closed at close().
    this.retired.push(...this.clients.values())
    this.clients.clear()
    return true
  }

  private credentials(): ChannelCredentials {
    if (this.creds) return this.creds
    if (!this.tls) return (this.creds = credentials.createInsecure())
    let ca: Buffer | null = null
    if (this.caFile) {
      try {
        ca = readFileSync(this.caFile)
      } catch (err) {
        throw new CliError(`cannot read OS_CACERT ${this.caFile}: ${(err as Error).message}`, { cause: err })
      }
    }
    silenceIpServernameWarning()
    return (this.creds = credentials.createSsl(ca))
  }

  client<C extends Client>(ctor: ClientCtor<C>): C {
    let c = this.clients.get(ctor)
    if (!c) {
      // Every client with the same options, so they share one connection; the wide window is for `image save`.
      c = new ctor(this.address, this.credentials(), bulkChannelOptions)
      this.clients.set(ctor, c)
    }
    return c as C
  }

  /**
   * One unary call; `token` goes in `x-auth-token`. Rejects with a StratoError
   * or a CliError. A controller that cannot be reached is left for the next
   * one OS_AUTH_URL lists.
   */
  async unary<C extends Client, M extends UnaryMethods<C>>(client: C, method: M, req: RequestOf<C[M]>, token?: string): Promise<ResponseOf<C[M]>> {
    const md = new Metadata()
    if (token) md.set('x-auth-token', token)
    for (;;) {
      // A client made before a failover is for the controller that could not be reached.
      if (this.retired.includes(client)) client = this.client(client.constructor as ClientCtor<C>)
      const fn = client[method] as unknown as Unary<RequestOf<C[M]>, ResponseOf<C[M]>>
      const at = this.current
      const r = await new Promise<{ res: ResponseOf<C[M]> } | { err: ServiceError }>((resolve) => {
        fn.call(client, req, md, { deadline: Date.now() + DEADLINE_SECONDS * 1000 }, (err, res) => resolve(err ? { err } : { res }))
      })
      if ('res' in r) return r.res
      if (!this.unreachable(r.err) || !this.failover(at)) throw this.convert(r.err)
    }
  }

  /** The call never reached a server: no connection (not a TLS or certificate failure, which the next controller would share). */
  private unreachable(err: ServiceError): boolean {
    const fromServer = err.metadata?.get('strato-error-code')[0] !== undefined
    return !fromServer && err.code === status.UNAVAILABLE && !(this.tls && (isCertificateFailure(err.details) || PLAINTEXT_PEER.test(err.details)))
  }

  /** A gRPC failure as a Strato error, or a CliError for an unreachable or silent server. */
  convert(err: ServiceError): Error {
    const fromServer = err.metadata?.get('strato-error-code')[0] !== undefined
    if (!fromServer && err.code === status.UNAVAILABLE && this.tls && isCertificateFailure(err.details)) {
      const which = this.caFile ? `OS_CACERT=${this.caFile} is not the CA that signed it` : 'OS_CACERT is not set and the system does not trust it'
      return new CliError(
        `certificate verify failed for the Strato API at ${this.address} (${which}: ${certReason(err.details)}); set OS_CACERT (or --os-cacert) to the CA file admin-openrc names (the controller's tls/ca.pem)`,
        { cause: err },
      )
    }
    if (!fromServer && err.code === status.UNAVAILABLE && this.tls && PLAINTEXT_PEER.test(err.details)) {
      return new CliError(`the Strato API at ${this.address} does not speak TLS (${err.details}); if it is a plaintext loopback listener, use OS_AUTH_URL=grpc://${this.address}`, { cause: err })
    }
    if (!fromServer && err.code === status.UNAVAILABLE) {
      const refused = /ECONNREFUSED/.test(err.details)
      const why = refused ? 'connection refused' : err.details
      // A TLS listener closes a plaintext client's connection without a word: grpc-js only says it could not connect.
      const hint = !this.tls && !refused ? ` If the controller speaks TLS (the default), use OS_AUTH_URL=grpcs://${this.address} with OS_CACERT.` : ''
      return new CliError(
        `cannot reach the Strato API at ${this.targets.length > 1 ? `any of ${this.targets.map((x) => x.address).join(', ')} (last tried ${this.address})` : this.address} (OS_AUTH_URL=${this.authUrl}): ${why}. Is the controller running? Start it with 'npm start', or check OS_AUTH_URL.${hint}`,
        { cause: err },
      )
    }
    if (!fromServer && err.code === status.DEADLINE_EXCEEDED) {
      return new CliError(`the Strato API at ${this.address} did not answer within ${DEADLINE_SECONDS} s; check that the controller is healthy (OS_AUTH_URL=${this.authUrl})`, { cause: err })
    }
    return fromGrpcError(err)
  }

  close(): void {
    for (const c of [...this.clients.values(), ...this.retired.splice(0)]) c.close()
    this.clients.clear()
  }
}

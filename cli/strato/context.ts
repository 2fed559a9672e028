/**
 * What a command runs with: authenticated calls to the API, and the token's
 * own facts (`token issue`, `--auth-user`). Credentials are checked and the
 * connection made on first use, so `help` and `complete` need neither.
 */
import { Metadata, type Client, type ServiceError } from '@grpc/grpc-js'
import { Unauthenticated } from '../../proto/errors.js'
import { cacheDir, checkCredentials, credentialsFrom, Session, type Credentials, type TokenInfo } from './auth.js'
import type { Args } from './registry.js'
import { Transport, type ClientCtor, type RequestOf, type ResponseOf, type UnaryMethods } from './transport.js'

export interface Io {
  stdout(text: string): void
  stderr(text: string): void
  /** True when stderr is a terminal (progress bars are drawn only then). */
  stderrIsTTY?: boolean
}

export class Context {
  private transport_: Transport | undefined
  private session_: Session | undefined
  readonly creds: Credentials

  constructor(
    readonly env: Record<string, string | undefined>,
    readonly global: Args,
    readonly io: Io,
  ) {
    this.creds = credentialsFrom(env, global)
  }

  get session(): Session {
    if (!this.session_) {
      checkCredentials(this.creds)
      this.transport_ = new Transport(this.creds.authUrl!, this.creds.cacert)
      this.session_ = new Session(this.creds, this.transport_, cacheDir(this.env))
    }
    return this.session_
  }

  private get transport(): Transport {
    void this.session
    return this.transport_!
  }

  /** A generated gRPC client for this API. */
  client<C extends Client>(ctor: ClientCtor<C>): C {
    return this.transport.client(ctor)
  }

  /** An authenticated unary call. A cached token the server refuses is dropped and the call retried once with a new one. */
  async call<C extends Client, M extends UnaryMethods<C>>(ctor: ClientCtor<C>, method: M, req: RequestOf<C[M]>): Promise<ResponseOf<C[M]>> {
    const client = this.client(ctor)
    const token = await this.session.token()
    try {
      return await this.transport.unary(client, method, req, token)
    } catch (err) {
      if (!(err instanceof Unauthenticated) || !this.session.fromCache) throw err
      this.session.invalidate()
      return this.transport.unary(client, method, req, await this.session.token())
    }
  }

  /** Metadata carrying a valid token, for streaming calls (which are not retried). */
  async metadata(): Promise<Metadata> {
    const md = new Metadata()
    md.set('x-auth-token', await this.session.token())
    return md
  }

  /** A failed streaming call's error, as unary calls report theirs (a Strato error or a CliError). */
  convert(err: ServiceError): Error {
    return this.transport.convert(err)
  }

  tokenInfo(): Promise<TokenInfo> {
    return this.session.info()
  }

  close(): void {
    this.transport_?.close()
  }
}

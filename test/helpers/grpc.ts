/** Test-side gRPC helpers: promisified unary calls with a token, and status assertions. */
import { credentials, Metadata, status, type ChannelCredentials, type Client, type ServiceError } from '@grpc/grpc-js'

export { status }

export type Ctor<C> = new (address: string, creds: ChannelCredentials) => C

/** A client of `address`: plaintext (the test controllers' loopback default) unless `creds` are given (TLS: see `tlsCredentials`). */
export function client<C extends Client>(ctor: Ctor<C>, address: string, creds: ChannelCredentials = credentials.createInsecure()): C {
  return new ctor(address, creds)
}

/** TLS channel credentials trusting the CA in `caPem` (a test controller's `caFile`). */
export function tlsCredentials(caPem: Buffer): ChannelCredentials {
  return credentials.createSsl(caPem)
}

/**
 * A decoded message as the wire gives it: scalars and lists always present
 * (proto3 defaults), sub-messages possibly absent. ts-proto's `useOptionals=all`
 * types say every field is optional, which is true for messages we send only.
 */
export type Decoded<T> = {
  [K in keyof T]-?: NonNullable<T[K]> extends Date
    ? T[K]
    : NonNullable<T[K]> extends Array<infer U>
      ? Array<Decoded<U>>
      : NonNullable<T[K]> extends object
        ? Decoded<NonNullable<T[K]>> | undefined
        : NonNullable<T[K]>
}

/** Calls a unary method by name with an optional x-auth-token. */
export function call<Res>(c: Client, method: string, req: unknown, token?: string): Promise<Decoded<Res>> {
  const md = new Metadata()
  if (token) md.set('x-auth-token', token)
  return new Promise((resolve, reject) => {
    const fn = (c as unknown as Record<string, Function>)[method]
    if (!fn) return reject(new Error(`no method ${method}`))
    fn.call(c, req, md, (err: ServiceError | null, res: Decoded<Res>) => (err ? reject(err) : resolve(res)))
  })
}

/** Resolves to the ServiceError a call failed with (fails the test if it succeeded). */
export async function failure(p: Promise<unknown>): Promise<ServiceError> {
  try {
    await p
  } catch (err) {
    return err as ServiceError
  }
  throw new Error('expected the call to fail, but it succeeded')
}

export function fieldOf(err: ServiceError): string | undefined {
  const v = err.metadata?.get('strato-error-field')[0]
  return typeof v === 'string' ? v : undefined
}

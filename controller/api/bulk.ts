/**
 * gRPC methods served straight on the HTTP/2 streams of the grpc-js server:
 * the bulk-data ones (image upload and download). The wire is unchanged gRPC,
 * so every client works, and the calls go through the same interceptor
 * duties (`callRunner`: authentication, policy, request id, logging, status
 * mapping). What is skipped is grpc-js's per-message handling: it gathers
 * every message into a new Buffer, decodes it into another and frames every
 * response message into a third. At a GiB per image that garbage, and the
 * garbage collections it brings, took about 2 CPU-seconds per GiB — more than
 * the upload's two digests. Here request data stays in the views Node's HTTP/2
 * session received it in, and responses go out of buffers the caller reuses.
 *
 * grpc-js keeps those methods registered and serves them whenever this path
 * does not take a stream: compressed requests (grpc-encoding other than
 * identity), other content types, or a grpc-js without the server internals
 * this attaches to (then a warning is logged, and all still works).
 */
import http2 from 'node:http2'
import { Metadata, status, type Server } from '@grpc/grpc-js'
import { InvalidArgument, ResourceExhausted, Unavailable } from '../../proto/errors.js'
import type { Logger } from '../log.js'
import type { GrpcErrorPayload } from '../../proto/grpc-errors.js'
import { callRunner, type CallContext, type RpcDeps } from './rpc.js'

/**
 * Flow-control windows the server advertises. HTTP/2's default of 64 KiB
 * makes a client wait for a WINDOW_UPDATE every 64 KiB; at loopback speed
 * that round trip, not the wire, limited uploads. The stream window is also
 * what an upload waiting for its turn (api/images.ts) makes the server hold:
 * 1 MiB keeps 50 waiting uploads at 50 MiB (8 MiB made it 400), and is still
 * many round trips' worth at loopback speed. A connection's window bounds
 * what one client can make the server buffer.
 */
export const STREAM_WINDOW = 1024 * 1024
export const CONNECTION_WINDOW = 16 * 1024 * 1024
/**
 * The largest DATA frame clients may send (HTTP/2's default is 16 KiB). Each
 * frame is a chunk the server handles; bigger frames mean fewer of them, and
 * 256 KiB holds other calls on a connection back for little even on slow links.
 */
export const MAX_FRAME = 256 * 1024

export type StreamHandler = (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => void

/**
 * A method served on HTTP/2 streams: `body` runs as one call of `path`, with
 * the interceptor's duties around it (`prepare` authenticates and enforces
 * the policy with the request as target). The call ends OK when `body`
 * returns, with the mapped status when it throws.
 */
export function streamMethod(
  path: string,
  deps: RpcDeps,
  body: (stream: http2.ServerHttp2Stream, res: GrpcResponse, prepare: (req: unknown) => Promise<CallContext>) => Promise<void>,
): StreamHandler {
  const runner = callRunner(path, deps)
  return (stream, headers) => {
    const started = Date.now()
    const metadata = Metadata.fromHttp2Headers(headers)
    const res = new GrpcResponse(stream, headers)
    void deps.track((async () => {
      try {
        await body(stream, res, (req) => runner.prepare(metadata, req))
        res.status(status.OK)
      } catch (err) {
        res.fail(runner.fail(err, metadata, started))
      }
    })())
  }
}

/**
 * Serves `handlers` (by method path) on the server's HTTP/2 streams and widens
 * its flow-control windows. Call after bindAsync. False when this grpc-js
 * does not expose its HTTP/2 servers (grpc-js then serves everything).
 */
export function serveOnHttp2(server: Server, handlers: Record<string, StreamHandler>, log: Logger): boolean {
  // grpc-js has no public way to reach its HTTP/2 servers; `http2Servers` is
  // its private map from each one to its sessions (grpc-js 1.10 … 1.14).
  const h2s = (server as unknown as { http2Servers?: unknown }).http2Servers
  const isH2 = (k: unknown) => typeof (k as http2.Http2Server | undefined)?.updateSettings === 'function' && typeof (k as http2.Http2Server).listeners === 'function'
  if (!(h2s instanceof Map) || h2s.size === 0 || ![...h2s.keys()].every(isH2)) {
    log.warn({ methods: Object.keys(handlers) }, 'grpc-js does not expose its HTTP/2 servers; bulk methods go through grpc-js (slower)')
    return false
  }
  const onStreamOpened = (server as unknown as { onStreamOpened?: (s: http2.ServerHttp2Stream) => void }).onStreamOpened
  for (const h2 of h2s.keys() as Iterable<http2.Http2Server>) {
    h2.updateSettings({ initialWindowSize: STREAM_WINDOW, maxFrameSize: MAX_FRAME })
    h2.on('session', (session: http2.ServerHttp2Session) => session.setLocalWindowSize(CONNECTION_WINDOW))
    const grpcJs = h2.listeners('stream') as Array<(...args: unknown[]) => void>
    h2.removeAllListeners('stream')
    h2.on('stream', (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, ...rest: unknown[]) => {
      const handler = handlers[headers[':path'] ?? '']
      if (handler && takes(headers)) {
        // grpc-js counts a session's open streams to close idle sessions (grpc.max_connection_idle_ms);
        // count ours too, or a long upload's connection would be closed under it.
        onStreamOpened?.call(server, stream)
        handler(stream, headers)
      }
      else for (const l of grpcJs) l.call(h2, stream, headers, ...rest)
    })
  }
  return true
}

/** A plain (uncompressed, protobuf) gRPC request: anything else is grpc-js's. */
function takes(headers: http2.IncomingHttpHeaders): boolean {
  const type = String(headers['content-type'] ?? '').split(';')[0]!.trim()
  const encoding = headers['grpc-encoding']
  return headers[':method'] === 'POST' && (type === 'application/grpc' || type === 'application/grpc+proto') && (encoding === undefined || encoding === 'identity')
}

// ------------------------------------------------------------------ requests

/** One request message, as views of the DATA frames it arrived in. */
export interface RawMessage {
  pieces: Buffer[]
  length: number
}

/**
 * The largest gRPC message: the prefix's length is 4 bytes, but gRPC
 * implementations read it as a signed 32-bit number.
 */
export const GRPC_MAX_MESSAGE = 2 ** 31 - 1

/** Splits a request body into gRPC messages (flag byte, 4-byte length, bytes) without copying the bytes. */
export class MessageSplitter {
  private readonly prefix = Buffer.alloc(5)
  private prefixHave = 0
  private pieces: Buffer[] = []
  private need = -1
  private have = 0
  private readonly maxLength: number

  /** `maxLength`: longer messages are refused (ResourceExhausted); never above {@link GRPC_MAX_MESSAGE}. */
  constructor(maxLength: number) {
    this.maxLength = Math.min(maxLength, GRPC_MAX_MESSAGE)
  }

  push(chunk: Buffer): RawMessage[] {
    const out: RawMessage[] = []
    let off = 0
    while (off < chunk.length) {
      if (this.need < 0) {
        const n = Math.min(5 - this.prefixHave, chunk.length - off)
        chunk.copy(this.prefix, this.prefixHave, off, off + n)
        this.prefixHave += n
        off += n
        if (this.prefixHave < 5) break
        this.prefixHave = 0
        const flag = this.prefix[0]!
        if (flag === 1) throw new InvalidArgument('a compressed message in a request without grpc-encoding', { field: 'grpc-encoding' })
        if (flag !== 0) throw new InvalidArgument(`not a gRPC message: flag byte ${flag}`)
        const len = this.prefix.readUInt32BE(1)
        if (len > this.maxLength) throw new ResourceExhausted(`a request message of ${len} bytes is larger than the limit of ${this.maxLength}`)
        this.need = len
        this.have = 0
        this.pieces = []
      }
      const n = Math.min(this.need - this.have, chunk.length - off)
      if (n > 0) this.pieces.push(chunk.subarray(off, off + n))
      this.have += n
      off += n
      if (this.have === this.need) {
        out.push({ pieces: this.pieces, length: this.need })
        this.pieces = []
        this.need = -1
      }
    }
    return out
  }

  /** Throws when the body ended inside a message. */
  end(): void {
    if (this.need >= 0 || this.prefixHave > 0) throw new InvalidArgument('the request ended inside a message')
  }
}

/** How long a client stream may send nothing before it is aborted. */
export interface IdleLimit {
  ms: number
  /** Names the call in the error, e.g. `the upload`. */
  what: string
  /** Names the setting in the error. */
  setting: string
}

/** Pause the stream (stop granting flow-control window) above this many queued bytes. */
const QUEUE_HIGH = 4 * 1024 * 1024
const QUEUE_LOW = 1024 * 1024

/**
 * The request's messages, as they complete. Ends (without error) when the
 * client cancels: the method decides whether what it got is complete.
 */
export async function* requestMessages(stream: http2.ServerHttp2Stream, maxLength: number, idle?: IdleLimit): AsyncGenerator<RawMessage> {
  const splitter = new MessageSplitter(maxLength)
  const queue: Buffer[] = []
  let queued = 0
  let ended = false
  let closed = false
  let wake: (() => void) | undefined
  const notify = () => {
    const w = wake
    wake = undefined
    w?.()
  }
  const onData = (chunk: Buffer) => {
    queue.push(chunk)
    queued += chunk.length
    if (queued > QUEUE_HIGH) stream.pause()
    notify()
  }
  const onEnd = () => {
    ended = true
    notify()
  }
  const onClose = () => {
    closed = true
    notify()
  }
  // One timer for the idle limit, armed while waiting on the client, not one per wait: with TLS the
  // consumer waits for nearly every 16 KiB record, and a timer each cost ~0.1 CPU-s per GiB.
  let waitingSince = -1
  let timer: NodeJS.Timeout | undefined
  let timedOut = false
  const checkIdle = () => {
    timer = undefined
    if (waitingSince < 0) return
    const left = waitingSince + idle!.ms - performance.now()
    if (left > 0) timer = setTimeout(checkIdle, left)
    else {
      timedOut = true
      notify()
    }
  }
  stream.on('data', onData)
  stream.on('end', onEnd)
  stream.on('close', onClose)
  stream.on('error', onClose)
  try {
    let head = 0
    for (;;) {
      if (head < queue.length) {
        const chunk = queue[head++]!
        queued -= chunk.length
        if (head > 1024) {
          queue.splice(0, head)
          head = 0
        }
        if (queued < QUEUE_LOW && stream.isPaused()) stream.resume()
        for (const m of splitter.push(chunk)) yield m
        continue
      }
      if (ended) {
        splitter.end()
        return
      }
      if (closed) return
      // Only time spent waiting on the client counts: not the consumer's (the store's) time between messages.
      waitingSince = performance.now()
      if (idle && !timer) timer = setTimeout(checkIdle, idle.ms)
      await new Promise<void>((resolve) => (wake = resolve))
      waitingSince = -1
      if (timedOut) throw new Unavailable(`${idle!.what} sent nothing for ${idle!.ms} ms (${idle!.setting}); it was aborted`)
    }
  } finally {
    clearTimeout(timer)
    stream.off('data', onData)
    stream.off('end', onEnd)
    stream.off('close', onClose)
    stream.off('error', onClose)
    // Whatever else the client sends is not read: let it flow, and drop it.
    stream.resume()
  }
}

/** The one message of a unary request, whole. */
export async function oneMessage(stream: http2.ServerHttp2Stream, maxLength: number, method: string): Promise<Buffer> {
  const msgs: RawMessage[] = []
  for await (const m of requestMessages(stream, maxLength)) msgs.push(m)
  if (msgs.length !== 1) throw new InvalidArgument(`${method} takes one request message, got ${msgs.length}`)
  return Buffer.concat(msgs[0]!.pieces)
}

/** Reads protobuf fields across the pieces of a message. */
export class PiecesReader {
  private i = 0
  private off = 0

  constructor(private readonly pieces: Buffer[]) {}

  get done(): boolean {
    while (this.i < this.pieces.length && this.off >= this.pieces[this.i]!.length) {
      this.i++
      this.off = 0
    }
    return this.i >= this.pieces.length
  }

  private byte(): number {
    if (this.done) throw new InvalidArgument('malformed protobuf message: it ends inside a field')
    return this.pieces[this.i]![this.off++]!
  }

  /** A varint as a Number (int64 two's complement included). */
  varint(): number {
    let lo = 0
    let shift = 0
    for (; shift < 28; shift += 7) {
      const b = this.byte()
      lo |= (b & 0x7f) << shift
      if (!(b & 0x80)) return lo >>> 0
    }
    let big = BigInt(lo >>> 0)
    for (let s = BigInt(shift); s < 70n; s += 7n) {
      const b = this.byte()
      big |= BigInt(b & 0x7f) << s
      if (!(b & 0x80)) return Number(BigInt.asIntN(64, big))
    }
    throw new InvalidArgument('malformed protobuf message: a varint longer than 10 bytes')
  }

  /** The next `n` bytes, as views. */
  bytes(n: number): Buffer[] {
    // A length varint can decode negative (int64) or beyond exact integers: never a length.
    if (!Number.isSafeInteger(n) || n < 0) throw new InvalidArgument(`malformed protobuf message: a field length of ${n}`)
    const out: Buffer[] = []
    while (n > 0) {
      if (this.done) throw new InvalidArgument('malformed protobuf message: a field longer than the message')
      const p = this.pieces[this.i]!
      const take = Math.min(n, p.length - this.off)
      out.push(p.subarray(this.off, this.off + take))
      this.off += take
      n -= take
    }
    return out
  }

  /** Skips a field of the wire type. */
  skip(wireType: number): void {
    if (wireType === 0) this.varint()
    else if (wireType === 1) this.bytes(8)
    else if (wireType === 2) this.bytes(this.varint())
    else if (wireType === 5) this.bytes(4)
    else throw new InvalidArgument(`malformed protobuf message: wire type ${wireType}`)
  }
}

// ------------------------------------------------------------------ responses

const DEADLINE_UNITS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 1e-3, n: 1e-6 }

/**
 * The response side of one call: headers, messages, and the status (in
 * trailers, or trailers-only when nothing was sent), once. Honours the
 * client's grpc-timeout: past it the status is DEADLINE_EXCEEDED, the stream
 * is reset and `onDeadline` runs.
 */
export class GrpcResponse {
  private headersSent = false
  private finished = false
  private trailers: http2.OutgoingHttpHeaders = { 'grpc-status': '0' }
  private readonly timer: NodeJS.Timeout | undefined

  constructor(private readonly stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, onDeadline: () => void = () => undefined) {
    stream.on('wantTrailers', () => stream.sendTrailers(this.trailers))
    // A stream reset by the client ends in an 'error' the call already sees as a close.
    stream.on('error', () => undefined)
    const m = /^(\d{1,8})([HMSmun])$/.exec(String(headers['grpc-timeout'] ?? ''))
    if (m) {
      this.timer = setTimeout(() => {
        this.status(status.DEADLINE_EXCEEDED, 'Deadline exceeded')
        if (!stream.closed) stream.close(http2.constants.NGHTTP2_CANCEL)
        onDeadline()
      }, Math.max(0, Math.ceil(Number(m[1]) * DEADLINE_UNITS[m[2]!]!)))
      stream.once('close', () => clearTimeout(this.timer))
    }
  }

  /** The client is gone (or the call is over): nothing more can be sent. */
  get closed(): boolean {
    return this.finished || this.stream.closed || this.stream.destroyed
  }

  private sendHeaders(): void {
    if (this.headersSent) return
    this.headersSent = true
    this.stream.respond({ ':status': 200, 'content-type': 'application/grpc+proto' }, { waitForTrailers: true })
  }

  /**
   * Writes bytes that are whole gRPC messages (prefix included). `sent` runs
   * once the stream is done with them (written to the socket, or the stream
   * is gone), after which the caller may reuse the buffer.
   */
  write(framed: Buffer, sent: () => void): void {
    if (this.closed) return sent()
    this.sendHeaders()
    this.stream.write(framed, () => sent())
  }

  /** Sends one small message (copied behind a prefix). */
  message(bytes: Uint8Array): void {
    const framed = Buffer.allocUnsafe(5 + bytes.length)
    framed[0] = 0
    framed.writeUInt32BE(bytes.length, 1)
    framed.set(bytes, 5)
    this.write(framed, () => undefined)
  }

  /** Ends the call with a status; later calls do nothing. */
  status(code: status, details = '', metadata?: Metadata): void {
    if (this.finished) return
    this.finished = true
    clearTimeout(this.timer)
    if (this.stream.closed || this.stream.destroyed) return
    const trailers: http2.OutgoingHttpHeaders = { ...(metadata?.toHttp2Headers() ?? {}), 'grpc-status': String(code) }
    if (details) trailers['grpc-message'] = encodeURI(details)
    if (this.headersSent) {
      this.trailers = trailers
      this.stream.end()
    } else {
      this.headersSent = true
      this.stream.respond({ ':status': 200, 'content-type': 'application/grpc+proto', ...trailers }, { endStream: true })
    }
    // What the client still sends (it has not seen the status yet) is read and dropped, not left to fill the window.
    if (!this.stream.readableEnded) this.stream.resume()
  }

  fail(payload: GrpcErrorPayload): void {
    this.status(payload.code, payload.details, payload.metadata)
  }
}

/**
 * A message's 5-byte gRPC prefix followed by a protobuf `bytes` field header (tag, length) for `length` bytes.
 * @throws RangeError for a field above 15 or a message over {@link GRPC_MAX_MESSAGE}.
 */
export function bytesFieldFrame(field: number, length: number): Buffer {
  // One tag byte: fields 1 to 15.
  if (!Number.isInteger(field) || field < 1 || field > 15) throw new RangeError(`field ${field} needs more than one tag byte`)
  const tooLong = () => new RangeError(`a bytes field of ${length} bytes does not fit in one gRPC message (at most ${GRPC_MAX_MESSAGE} bytes)`)
  if (!Number.isSafeInteger(length) || length < 0 || length > GRPC_MAX_MESSAGE) throw tooLong()
  const head: number[] = [(field << 3) | 2]
  let n = length
  do {
    head.push((n & 0x7f) | (n > 0x7f ? 0x80 : 0))
    n = Math.floor(n / 128)
  } while (n > 0)
  if (head.length + length > GRPC_MAX_MESSAGE) throw tooLong()
  const out = Buffer.allocUnsafe(5 + head.length)
  out[0] = 0
  out.writeUInt32BE(head.length + length, 1)
  out.set(head, 5)
  return out
}

/** Room to leave in front of data for {@link bytesFieldFrame}'s bytes. */
export const FRAME_ROOM = 16

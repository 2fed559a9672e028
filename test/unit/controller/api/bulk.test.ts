// The hand-written gRPC/protobuf pieces of the bulk data path (controller/api/bulk.ts):
// the message splitter, the protobuf reader over DATA-frame views, the request reader,
// the response framing. Checked against the generated encoders (@bufbuild/protobuf's
// BinaryWriter, ts-proto's ImageChunk / UploadImageRequest) on edge cases: message
// boundaries anywhere inside frames, frames holding several messages, zero-length fields
// and messages, varints at every size boundary, and lengths of 2^31 and more refused cleanly.
import { EventEmitter } from 'node:events'
import type http2 from 'node:http2'
import { PassThrough } from 'node:stream'
import { BinaryWriter } from '@bufbuild/protobuf/wire'
import { status } from '@grpc/grpc-js'
import t from 'tap'
import {
  GRPC_MAX_MESSAGE, GrpcResponse, MessageSplitter, PiecesReader, bytesFieldFrame, oneMessage, requestMessages, type RawMessage,
} from '../../../../controller/api/bulk.js'
import { InvalidArgument, ResourceExhausted } from '../../../../proto/errors.js'
import { ImageChunk, UploadImageRequest } from '../../../../proto/gen/strato/image/v1/image.js'

/** A gRPC message on the wire: flag byte, 4-byte big-endian length, bytes. */
function frame(body: Uint8Array, flag = 0): Buffer {
  const out = Buffer.alloc(5 + body.length)
  out[0] = flag
  out.writeUInt32BE(body.length, 1)
  out.set(body, 5)
  return out
}

const bodyOf = (m: RawMessage) => Buffer.concat(m.pieces)

/** Feeds `wire` to a splitter in chunks cut at `cuts`, returns the messages' bodies. */
function split(wire: Buffer, cuts: number[], maxLength = 1 << 20): Buffer[] {
  const s = new MessageSplitter(maxLength)
  const out: Buffer[] = []
  let at = 0
  for (const cut of [...cuts, wire.length]) {
    for (const m of s.push(wire.subarray(at, cut))) {
      if (m.length !== m.pieces.reduce((n, p) => n + p.length, 0)) throw new Error(`a message of ${m.length} bytes has pieces of another size`)
      out.push(bodyOf(m))
    }
    at = cut
  }
  s.end()
  return out
}

const errorOf = (f: () => unknown): unknown => {
  try {
    f()
  } catch (e) {
    return e
  }
  return undefined
}

t.test('splitter: messages come out whole wherever the frames cut them', async (t) => {
  const bodies = [Buffer.from('hello'), Buffer.alloc(0), Buffer.from([1, 2, 3]), Buffer.alloc(0), Buffer.alloc(300, 7)]
  const wire = Buffer.concat(bodies.map((b) => frame(b)))
  t.same(split(wire, []), bodies, 'one frame holding every message, the empty ones included')
  let allCuts = true
  for (let a = 0; a <= wire.length; a++) {
    for (let b = a; b <= wire.length; b += 7) {
      const got = split(wire, [a, b])
      if (got.length !== bodies.length || got.some((g, i) => !g.equals(bodies[i]!))) allCuts = false
    }
  }
  t.ok(allCuts, 'two cuts at any bytes (inside prefixes, inside bodies, between messages): same messages')
  t.same(split(wire, Array.from({ length: wire.length }, (_, i) => i)), bodies, 'one byte per frame')
})

t.test('splitter: bodies are views of the frames, not copies', async (t) => {
  const chunk = frame(Buffer.from('abcdef'))
  const [m] = new MessageSplitter(100).push(chunk)
  t.equal(m!.pieces.length, 1)
  t.equal(m!.pieces[0]!.buffer, chunk.buffer, 'same memory')
  t.equal(m!.pieces[0]!.byteOffset, chunk.byteOffset + 5)
})

t.test('splitter: what is not a plain message is refused', async (t) => {
  const compressed = errorOf(() => new MessageSplitter(100).push(frame(Buffer.from('x'), 1)))
  t.type(compressed, InvalidArgument)
  t.match(compressed, { message: /compressed message/, field: 'grpc-encoding' })
  t.match(errorOf(() => new MessageSplitter(100).push(frame(Buffer.from('x'), 2))), { name: 'InvalidArgument', message: /flag byte 2/ })
  const big = errorOf(() => new MessageSplitter(100).push(frame(Buffer.alloc(101))))
  t.type(big, ResourceExhausted)
  t.match((big as Error).message, /101 bytes is larger than the limit of 100/)
  t.same(split(frame(Buffer.alloc(100)), [], 100).map((b) => b.length), [100], 'exactly the limit passes')
})

t.test('splitter: lengths of 2^31 and more are refused from the prefix alone, whatever the limit', async (t) => {
  for (const len of [2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1]) {
    const prefix = Buffer.alloc(5)
    prefix.writeUInt32BE(len, 1)
    for (const limit of [16 << 20, Number.MAX_SAFE_INTEGER, Infinity]) {
      const s = new MessageSplitter(limit)
      const err = errorOf(() => s.push(prefix))
      if (len > GRPC_MAX_MESSAGE || limit < len) {
        t.type(err, ResourceExhausted, `${len} with limit ${limit}: refused before any of it is buffered`)
        t.match((err as Error).message, `${len} bytes is larger than the limit of ${Math.min(limit, GRPC_MAX_MESSAGE)}`)
      } else {
        t.equal(err, undefined, `${len} with limit ${limit}: allowed, waits for its bytes`)
        t.throws(() => s.end(), /ended inside a message/)
      }
    }
  }
})

t.test('splitter: a body that ends inside a prefix or a message is refused; between messages it is fine', async (t) => {
  const wire = frame(Buffer.from('abc'))
  for (const cut of [1, 4, 5, 7]) {
    const s = new MessageSplitter(100)
    s.push(wire.subarray(0, cut))
    t.type(errorOf(() => s.end()), InvalidArgument, `ended after ${cut} bytes`)
  }
  const s = new MessageSplitter(100)
  t.equal(s.push(wire).length, 1)
  t.doesNotThrow(() => s.end())
  t.doesNotThrow(() => new MessageSplitter(100).end(), 'an empty body is no messages')
  t.same(new MessageSplitter(100).push(Buffer.alloc(0)), [], 'an empty frame is nothing')
})

// ------------------------------------------------------------------ protobuf reader

/** `bytes` cut into pieces at `cuts` (some of them empty). */
function piecesOf(bytes: Uint8Array, cuts: number[]): Buffer[] {
  const b = Buffer.from(bytes)
  const out: Buffer[] = [Buffer.alloc(0)]
  let at = 0
  for (const cut of [...cuts, b.length]) {
    out.push(b.subarray(at, cut), Buffer.alloc(0))
    at = cut
  }
  return out
}

const VARINTS: Array<[string, bigint, number]> = [
  ['0', 0n, 0], ['1', 1n, 1], ['127', 127n, 127], ['128', 128n, 128], ['2^14-1', 16383n, 16383], ['2^14', 16384n, 16384],
  ['2^21', 2n ** 21n, 2 ** 21], ['2^28-1', 2n ** 28n - 1n, 2 ** 28 - 1], ['2^28', 2n ** 28n, 2 ** 28], ['2^31-1', 2n ** 31n - 1n, 2 ** 31 - 1],
  ['2^31', 2n ** 31n, 2 ** 31], ['2^32-1', 2n ** 32n - 1n, 2 ** 32 - 1], ['2^32', 2n ** 32n, 2 ** 32], ['2^35', 2n ** 35n, 2 ** 35],
  ['2^53-1', 2n ** 53n - 1n, Number.MAX_SAFE_INTEGER], ['2^63-1', 2n ** 63n - 1n, Number(2n ** 63n - 1n)],
  ['-1 (int64, 10 bytes)', -1n, -1], ['-2^31', -(2n ** 31n), -(2 ** 31)], ['int64 min', -(2n ** 63n), -(2 ** 63)],
]

t.test('reader: varints of every size, split anywhere across pieces', async (t) => {
  for (const [name, value, expected] of VARINTS) {
    const bytes = new BinaryWriter().int64(value).finish()
    let ok = true
    for (let cut = 0; cut <= bytes.length; cut++) {
      const r = new PiecesReader(piecesOf(bytes, [cut]))
      if (r.varint() !== expected || !r.done) ok = false
    }
    t.ok(ok, `${name} (${bytes.length} bytes) reads as ${expected} at every cut`)
  }
})

t.test('reader: a varint longer than 10 bytes or cut short is refused', async (t) => {
  t.match(errorOf(() => new PiecesReader([Buffer.alloc(11, 0x80)]).varint()), { name: 'InvalidArgument', message: /longer than 10 bytes/ })
  t.match(errorOf(() => new PiecesReader([Buffer.from([0x80, 0x80])]).varint()), { name: 'InvalidArgument', message: /ends inside a field/ })
  t.match(errorOf(() => new PiecesReader([]).varint()), { name: 'InvalidArgument', message: /ends inside a field/ })
})

t.test('reader: length-delimited fields as views, zero-length ones too, across pieces', async (t) => {
  const data = Buffer.from(Array.from({ length: 40 }, (_, i) => i))
  const msg = UploadImageRequest.encode({ imageId: 'img', data, size: 2 ** 33, last: true }).finish()
  const decode = (pieces: Buffer[]) => {
    const r = new PiecesReader(pieces)
    const got: Record<string, unknown> = {}
    while (!r.done) {
      const tag = r.varint()
      const [field, wire] = [tag >>> 3, tag & 7]
      if (field === 1 && wire === 2) got.imageId = Buffer.concat(r.bytes(r.varint())).toString()
      else if (field === 2 && wire === 2) got.data = Buffer.concat(r.bytes(r.varint()))
      else if (field === 3 && wire === 0) got.size = r.varint()
      else if (field === 4 && wire === 0) got.last = r.varint() !== 0
      else r.skip(wire)
    }
    return got
  }
  let ok = true
  for (let a = 0; a <= msg.length; a++) {
    for (let b = a; b <= msg.length; b += 5) {
      const got = decode(piecesOf(msg, [a, b]))
      if (got.imageId !== 'img' || !(got.data as Buffer).equals(data) || got.size !== 2 ** 33 || got.last !== true) ok = false
    }
  }
  t.ok(ok, 'the generated encoding reads back the same at any two cuts')
  const r = new PiecesReader([Buffer.from([1, 2]), Buffer.from([3, 4, 5])])
  const views = r.bytes(4)
  t.same(views.map((v) => [...v]), [[1, 2], [3, 4]], 'a field across two pieces is two views')
  t.same(r.bytes(0), [], 'a zero-length field is no views')
  t.notOk(r.done)
  t.same(r.bytes(1).map((v) => [...v]), [[5]])
  t.ok(r.done)
  t.same(decode(piecesOf(UploadImageRequest.encode({ data: Buffer.alloc(0) }).finish(), [])), {}, 'proto3 leaves empty fields out')
  t.same(decode([Buffer.from([0x12, 0x00])]), { data: Buffer.alloc(0) }, 'a zero-length bytes field on the wire')
  t.same(decode([]), {}, 'a zero-length message has no fields')
})

t.test('reader: lengths the message cannot hold are refused cleanly', async (t) => {
  const withLength = (n: bigint) => Buffer.from(new BinaryWriter().uint32(0x12).int64(n).raw(new Uint8Array(3)).finish())
  for (const [name, n] of [['4', 4n], ['2^31', 2n ** 31n], ['2^32', 2n ** 32n], ['2^63-1', 2n ** 63n - 1n]] as const) {
    const r = new PiecesReader([withLength(n)])
    r.varint()
    const err = errorOf(() => r.bytes(r.varint()))
    t.type(err, InvalidArgument, `length ${name}`)
    t.match((err as Error).message, /malformed protobuf message: a field (longer than the message|length of)/)
  }
  const negative = new PiecesReader([withLength(-1n)])
  negative.varint()
  t.match(errorOf(() => negative.bytes(negative.varint())), { name: 'InvalidArgument', message: 'a field length of -1' }, 'a negative length (a 10-byte varint) is not read as an empty field')
  t.match(errorOf(() => new PiecesReader([Buffer.alloc(3)]).bytes(4)), { name: 'InvalidArgument', message: /longer than the message/ })
})

t.test('reader: skips every wire type, refuses groups and unknown ones', async (t) => {
  const w = new BinaryWriter()
  w.uint32((1 << 3) | 0).int64(-1n)
  w.uint32((2 << 3) | 1).fixed64(12345n)
  w.uint32((3 << 3) | 2).bytes(new Uint8Array(5))
  w.uint32((4 << 3) | 5).fixed32(7)
  w.uint32((5 << 3) | 2).bytes(new Uint8Array(0))
  const bytes = w.finish()
  const r = new PiecesReader(piecesOf(bytes, [3, 9, 14]))
  const seen: number[] = []
  while (!r.done) {
    const tag = r.varint()
    seen.push(tag >>> 3)
    r.skip(tag & 7)
  }
  t.same(seen, [1, 2, 3, 4, 5])
  for (const wire of [3, 4, 6, 7]) t.match(errorOf(() => new PiecesReader([]).skip(wire)), { name: 'InvalidArgument', message: `wire type ${wire}` })
  t.match(errorOf(() => new PiecesReader([Buffer.alloc(7)]).skip(1)), { name: 'InvalidArgument' }, 'a fixed64 cut short')
})

// ------------------------------------------------------------------ request reading

/** A stand-in for the HTTP/2 stream: what requestMessages uses of it is a Readable's. */
const fakeStream = () => {
  const s = new PassThrough()
  return { s, stream: s as PassThrough & http2.ServerHttp2Stream }
}

t.test('requestMessages: messages as they complete, across and within writes', async (t) => {
  const { s, stream } = fakeStream()
  const wire = Buffer.concat([frame(Buffer.from('one')), frame(Buffer.alloc(0)), frame(Buffer.from('three'))])
  const got: string[] = []
  const done = (async () => {
    for await (const m of requestMessages(stream, 100)) got.push(bodyOf(m).toString())
  })()
  s.write(wire.subarray(0, 6))
  s.write(wire.subarray(6, 15))
  s.end(wire.subarray(15))
  await done
  t.same(got, ['one', '', 'three'])
})

t.test('requestMessages: a body ending inside a message is an error; a cancelled call just ends', async (t) => {
  const a = fakeStream()
  const cut = (async () => {
    for await (const _ of requestMessages(a.stream, 100)) void _
  })()
  a.s.end(frame(Buffer.from('abc')).subarray(0, 6))
  await t.rejects(cut, { name: 'InvalidArgument', message: /ended inside a message/ })

  const b = fakeStream()
  const got: string[] = []
  const cancelled = (async () => {
    for await (const m of requestMessages(b.stream, 100)) got.push(bodyOf(m).toString())
  })()
  b.s.write(Buffer.concat([frame(Buffer.from('x')), frame(Buffer.from('partial')).subarray(0, 4)]))
  await new Promise((r) => setImmediate(r))
  b.s.destroy()
  await cancelled
  t.same(got, ['x'], 'what came whole is delivered; the method decides whether it is enough')
})

t.test('requestMessages: a client that sends nothing for the idle limit is aborted; a slow consumer is not', async (t) => {
  const idle = { ms: 100, what: 'the upload', setting: 'grpc.uploadIdleTimeoutMs' }
  const a = fakeStream()
  const got: string[] = []
  const stalled = (async () => {
    for await (const m of requestMessages(a.stream, 100, idle)) got.push(bodyOf(m).toString())
  })()
  a.s.write(frame(Buffer.from('first')))
  const started = Date.now()
  await t.rejects(stalled, { name: 'Unavailable', message: 'the upload sent nothing for 100 ms (grpc.uploadIdleTimeoutMs); it was aborted' })
  t.ok(Date.now() - started >= 90, `after ${Date.now() - started} ms`)
  t.same(got, ['first'])

  // Time the consumer spends between messages (the store writing) is not the client's.
  const b = fakeStream()
  const slow: string[] = []
  const consumer = (async () => {
    for await (const m of requestMessages(b.stream, 100, idle)) {
      slow.push(bodyOf(m).toString())
      await new Promise((r) => setTimeout(r, 250))
    }
  })()
  b.s.write(frame(Buffer.from('1')))
  b.s.write(frame(Buffer.from('2')))
  setTimeout(() => b.s.end(frame(Buffer.from('3'))), 50)
  await consumer
  t.same(slow, ['1', '2', '3'])
})

t.test('oneMessage: exactly one message, whole', async (t) => {
  const one = fakeStream()
  const p = oneMessage(one.stream, 100, 'DownloadImage')
  one.s.write(frame(Buffer.from('ab')).subarray(0, 3))
  one.s.end(frame(Buffer.from('ab')).subarray(3))
  t.same([...(await p)], [...Buffer.from('ab')])
  for (const [what, wire] of [['none', Buffer.alloc(0)], ['two', Buffer.concat([frame(Buffer.from('a')), frame(Buffer.from('b'))])]] as const) {
    const x = fakeStream()
    const q = oneMessage(x.stream, 100, 'DownloadImage')
    x.s.end(wire)
    await t.rejects(q, { name: 'InvalidArgument', message: /DownloadImage takes one request message, got/ }, what)
  }
})

// ------------------------------------------------------------------ response framing

t.test('bytesFieldFrame: the prefix and field header of an ImageChunk, at every varint size', async (t) => {
  for (const length of [0, 1, 127, 128, 16383, 16384, 100_000, 1 << 20]) {
    const data = Buffer.alloc(length, 0xab)
    const head = bytesFieldFrame(1, length)
    const wire = Buffer.concat([head, data])
    const [m] = split(wire, [], 2 << 20)
    t.same(ImageChunk.decode(m!).data?.length, length, `${length} bytes: one message the generated decoder reads`)
    t.ok(m!.equals(Buffer.from(new BinaryWriter().uint32(0x0a).bytes(data).finish())), `${length} bytes: the protobuf encoding of field 1, byte for byte`)
    t.ok(head.length <= 16, 'fits in FRAME_ROOM')
  }
  t.equal(bytesFieldFrame(1, 2 ** 28).length, 5 + 1 + 5, 'a 5-byte length')
  t.throws(() => bytesFieldFrame(1, GRPC_MAX_MESSAGE - 5), RangeError, 'header plus data over 2^31-1 bytes')
  for (const length of [2 ** 31, 2 ** 32, 2 ** 32 + 5, Number.MAX_SAFE_INTEGER + 2, -1, 1.5]) {
    t.throws(() => bytesFieldFrame(1, length), { name: 'RangeError', message: /does not fit in one gRPC message/ }, `${length} refused, not a wrapped-around prefix`)
  }
  t.throws(() => bytesFieldFrame(16, 1), RangeError, 'a field needing two tag bytes')
})

/** A stand-in for the HTTP/2 stream GrpcResponse writes to. */
class FakeResponseStream extends EventEmitter {
  closed = false
  destroyed = false
  readableEnded = false
  readonly responded: Array<{ headers: http2.OutgoingHttpHeaders; endStream: boolean }> = []
  readonly written: Buffer[] = []
  trailers: http2.OutgoingHttpHeaders | undefined
  ended = false
  respond(headers: http2.OutgoingHttpHeaders, o: { endStream?: boolean } = {}) {
    this.responded.push({ headers, endStream: o.endStream ?? false })
  }
  write(b: Buffer, cb: () => void) {
    this.written.push(Buffer.from(b))
    cb()
  }
  end() {
    this.ended = true
    this.emit('wantTrailers')
  }
  sendTrailers(t: http2.OutgoingHttpHeaders) {
    this.trailers = t
  }
  resume() {}
  close() {
    this.closed = true
  }
}

const responseOn = (headers: http2.IncomingHttpHeaders = {}) => {
  const fake = new FakeResponseStream()
  return { fake, res: new GrpcResponse(fake as unknown as http2.ServerHttp2Stream, headers) }
}

t.test('GrpcResponse: messages framed behind headers, then the status in trailers, once', async (t) => {
  const { fake, res } = responseOn()
  res.message(new Uint8Array([9, 8, 7]))
  res.message(new Uint8Array(0))
  t.same(fake.responded, [{ headers: { ':status': 200, 'content-type': 'application/grpc+proto' }, endStream: false }], 'headers once, before the first message')
  t.same(split(Buffer.concat(fake.written), []).map((b) => [...b]), [[9, 8, 7], []], 'each message behind its prefix, the empty one too')
  res.status(status.OK)
  res.status(status.INTERNAL, 'late')
  t.ok(fake.ended)
  t.same(fake.trailers, { 'grpc-status': '0' }, 'the first status wins')
  t.ok(res.closed)
  let sent = false
  res.write(Buffer.from('x'), () => (sent = true))
  t.ok(sent, 'a write after the status is dropped, but its buffer is released')
  t.equal(fake.written.length, 2)
})

t.test('GrpcResponse: a status with nothing sent is trailers-only, details percent-encoded', async (t) => {
  const { fake, res } = responseOn()
  res.status(status.NOT_FOUND, 'image 1 not found: ünïcode')
  t.same(fake.responded, [{ headers: { ':status': 200, 'content-type': 'application/grpc+proto', 'grpc-status': '5', 'grpc-message': encodeURI('image 1 not found: ünïcode') }, endStream: true }])
  t.same(fake.written, [])
})

t.test('GrpcResponse: past the grpc-timeout the call ends DEADLINE_EXCEEDED', async (t) => {
  const { fake } = responseOn({ 'grpc-timeout': '20m' })
  await new Promise((r) => setTimeout(r, 60))
  t.equal(fake.responded[0]?.headers['grpc-status'], String(status.DEADLINE_EXCEEDED))
  t.ok(fake.closed, 'the stream is reset')
  const { fake: none } = responseOn({ 'grpc-timeout': 'bogus' })
  await new Promise((r) => setTimeout(r, 30))
  t.same(none.responded, [], 'an unreadable timeout is no deadline')
})

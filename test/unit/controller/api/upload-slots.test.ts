// Upload turns (controller/api/images.ts): at most maxConcurrent uploads receive; the next
// ones wait in order, up to QUEUED_PER_SLOT per slot, and beyond that are RESOURCE_EXHAUSTED.
// And the UploadImage stream handler finishes its request reader when the call ends.
import type http2 from 'node:http2'
import { PassThrough } from 'node:stream'
import pino from 'pino'
import t from 'tap'
import { imageStreamHandlers, QUEUED_PER_SLOT, UploadSlots } from '../../../../controller/api/images.js'
import type { RpcDeps } from '../../../../controller/api/rpc.js'
import type { ImageCatalog } from '../../../../controller/image/catalog.js'
import { ImagesService, UploadImageRequest } from '../../../../proto/gen/strato/image/v1/image.js'

const tick = () => new Promise((r) => setImmediate(r))

t.test('turns pass on in order; a release is idempotent', async (t) => {
  const slots = new UploadSlots({ maxConcurrent: 2, idleTimeoutMs: 1000 })
  const r1 = await slots.acquire()
  const r2 = await slots.acquire()
  const order: number[] = []
  const w3 = slots.acquire().then((r) => (order.push(3), r))
  const w4 = slots.acquire().then((r) => (order.push(4), r))
  await tick()
  t.same(order, [], 'both wait while two receive')
  r1()
  r1()
  await tick()
  t.same(order, [3], 'one release lets exactly one in, the first that waited')
  r2()
  const r4 = await w4
  t.same(order, [3, 4])
  ;(await w3)()
  r4()
  const again = await Promise.race([slots.acquire(), tick().then(() => null)])
  t.ok(again, 'all released: a new upload starts at once')
})

t.test('waiting is bounded: beyond it RESOURCE_EXHAUSTED, naming the setting', async (t) => {
  const slots = new UploadSlots({ maxConcurrent: 1, idleTimeoutMs: 1000 })
  await slots.acquire()
  for (let i = 0; i < QUEUED_PER_SLOT; i++) void slots.acquire()
  await t.rejects(slots.acquire(), { name: 'ResourceExhausted', message: /1 receiving and 32 waiting \(grpc.maxConcurrentUploads is 1\)/ })
})

/** An HTTP/2 server stream as the handler uses it: readable request body, respond/write/end/trailers. */
class FakeCallStream extends PassThrough {
  override closed = false
  trailers: http2.OutgoingHttpHeaders | undefined
  respond() {}
  sendTrailers(t: http2.OutgoingHttpHeaders) {
    this.trailers = t
    this.closed = true
  }
  override end(): this {
    this.emit('wantTrailers')
    return this
  }
  close() {
    this.closed = true
  }
}

const grpcMessage = (body: Uint8Array) => {
  const out = Buffer.alloc(5 + body.length)
  out.writeUInt32BE(body.length, 1)
  out.set(body, 5)
  return out
}

t.test('UploadImage: the request reader is finished when the call ends, not left to the idle timer', async (t) => {
  const received: number[] = []
  const images = {
    async upload(id: string, data: AsyncIterable<Buffer[]>) {
      for await (const pieces of data) for (const p of pieces) received.push(...p)
      return { id, status: 'active' }
    },
  } as unknown as ImageCatalog
  const deps = {
    policy: { entry: () => ({ imageUpload: true }), isPublic: () => false },
    authenticate: () => Promise.reject(new Error('not asked: the call has an image-upload token')),
    imageUpload: () => ({ imageId: 'img-1', host: 'node1', instanceUuid: 'srv-1', issuedAt: 0, expiresAt: 0, auditId: 'a' }),
    lookup: {},
    log: pino({ level: 'silent' }),
    track: <T>(p: Promise<T>) => p,
  } as unknown as RpcDeps
  // A reader left behind would keep its idle timer (and this process) for the limit, a minute by default.
  const upload = imageStreamHandlers(images, deps, { idleTimeoutMs: 60_000, maxConcurrent: 1 })[ImagesService.uploadImage.path]!
  const stream = new FakeCallStream()
  const done = new Promise<void>((resolve) => stream.once('wantTrailers', () => setImmediate(resolve)))
  const listeners = () => ['data', 'end', 'close', 'error'].map((e) => stream.listenerCount(e))
  upload(stream as unknown as http2.ServerHttp2Stream, { 'x-auth-token': 'upload-token' })
  const responseOwn = listeners() // the response's, before the reader starts (after the call's checks)
  // The message marked last ends the upload; the client's end of the stream has not come yet.
  stream.write(grpcMessage(UploadImageRequest.encode({ imageId: 'img-1', size: 3, data: Buffer.from([1, 2, 3]), last: true }).finish()))
  await done
  t.same(stream.trailers, { 'grpc-status': '0' }, 'the call ended OK')
  t.same(received, [1, 2, 3], 'the data was uploaded')
  t.same(listeners(), responseOwn, 'the reader let go of the stream')
  t.notOk(stream.isPaused(), 'and left it flowing: whatever the client still sends is dropped')
})

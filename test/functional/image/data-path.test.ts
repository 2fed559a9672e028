// Image data on the gRPC server's HTTP/2 streams (controller/api/bulk.ts):
// UploadImage and DownloadImage served without grpc-js's per-message copies,
// still plain gRPC to every client — ours (grpc-js), one that is not (Python
// grpcio, C core), and hand-made HTTP/2 requests for what clients never send.
// Compressed requests go through grpc-js; both paths give the same result.
import { execFile } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { mkdtempSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs'
import http2 from 'node:http2'
import { tmpdir } from 'node:os'
import path from 'node:path'
import t from 'tap'
import { credentials, Metadata, type ServiceError } from '@grpc/grpc-js'
import { startController, type TestController } from '../../helpers/controller.js'
import { call, client, failure, fieldOf, status, type Decoded } from '../../helpers/grpc.js'
import { ImagesClient, type Image } from '../../../proto/gen/strato/image/v1/image.js'

const MiB = 1024 * 1024
const UPLOAD = '/strato.image.v1.Images/UploadImage'
const DOWNLOAD = '/strato.image.v1.Images/DownloadImage'

let s: TestController
let images: ImagesClient
let gzipImages: ImagesClient
let tmp: string

t.before(async () => {
  s = await startController()
  images = client(ImagesClient, s.address)
  gzipImages = new ImagesClient(s.address, credentials.createInsecure(), { 'grpc.default_compression_algorithm': 2, 'grpc.max_receive_message_length': 64 * MiB })
  tmp = mkdtempSync(path.join(tmpdir(), 'strato-datapath-'))
})
t.teardown(async () => {
  images.close()
  gzipImages.close()
  rmSync(tmp, { recursive: true, force: true })
  await s.close()
})

const md = () => {
  const m = new Metadata()
  m.set('x-auth-token', s.adminToken)
  return m
}
const md5 = (b: Buffer) => createHash('md5').update(b).digest('hex')
const newImage = (name: string) => call<Image>(images, 'createImage', { name, diskFormat: 'raw', containerFormat: 'bare' }, s.adminToken)
const status_ = async (id: string) => (await call<Image>(images, 'getImage', { id }, s.adminToken)).status
const storeFiles = (id: string) => readdirSync(path.join(s.dataDir, 'images')).filter((f) => f.startsWith(id))

/** Mixed data: random, zero and text regions (zero blocks become holes in the store). */
function sample(size: number): Buffer {
  const b = Buffer.alloc(size)
  for (let off = 0; off < size; off += 256 * 1024) {
    const k = (off / (256 * 1024)) % 3
    if (k === 0) randomBytes(Math.min(256 * 1024, size - off)).copy(b, off)
    else if (k === 2) b.fill('image ', off, Math.min(off + 256 * 1024, size))
  }
  return b
}

function upload(via: ImagesClient, imageId: string, data: Buffer, opts: { deadline?: number; stall?: boolean } = {}): Promise<Decoded<Image>> {
  return new Promise((resolve, reject) => {
    const st = via.uploadImage(md(), opts.deadline ? { deadline: Date.now() + opts.deadline } : {}, (err: ServiceError | null, res: Image) => (err ? reject(err) : resolve(res as Decoded<Image>)))
    st.write({ imageId, size: data.length })
    for (let off = 0; off < data.length; off += 300 * 1024) {
      st.write({ data: data.subarray(off, off + 300 * 1024) })
      if (opts.stall) return // never finishes
    }
    st.end()
  })
}

function download(via: ImagesClient, id: string, opts: { cancelAfter?: number } = {}): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = []
    const st = via.downloadImage({ id }, md())
    st.on('data', (c: { data: Uint8Array }) => {
      parts.push(Buffer.from(c.data))
      if (opts.cancelAfter !== undefined && parts.length === opts.cancelAfter) st.cancel()
    })
    st.on('end', () => resolve(Buffer.concat(parts)))
    st.on('error', (err: ServiceError) => (err.code === status.CANCELLED ? resolve(Buffer.concat(parts)) : reject(err)))
  })
}

/** One gRPC call made by hand: headers, raw body; the response's headers, trailers and body. */
function rawCall(method: string, body: Buffer, headers: http2.OutgoingHttpHeaders = {}): Promise<{ headers: http2.IncomingHttpHeaders; trailers: http2.IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`http://${s.address}`)
    session.on('error', reject)
    const req = session.request({ ':method': 'POST', ':path': method, 'content-type': 'application/grpc', te: 'trailers', 'x-auth-token': s.adminToken, ...headers })
    let head: http2.IncomingHttpHeaders = {}
    let trailers: http2.IncomingHttpHeaders = {}
    const parts: Buffer[] = []
    req.on('response', (h) => (head = h))
    req.on('trailers', (tr) => (trailers = tr))
    req.on('data', (c: Buffer) => parts.push(c))
    req.on('close', () => {
      session.close()
      resolve({ headers: head, trailers, body: Buffer.concat(parts) })
    })
    req.on('error', () => undefined)
    req.end(body)
  })
}

/** The gRPC status of a raw call: from trailers, or from the headers of a trailers-only response. */
const grpcStatus = (r: { headers: http2.IncomingHttpHeaders; trailers: http2.IncomingHttpHeaders }) => {
  const h = r.trailers['grpc-status'] !== undefined ? r.trailers : r.headers
  return { code: Number(h['grpc-status']), message: decodeURI(String(h['grpc-message'] ?? '')), errorCode: h['strato-error-code'], field: h['strato-error-field'] }
}

const frame = (msg: Buffer, flag = 0) => Buffer.concat([Buffer.from([flag, ...[24, 16, 8, 0].map((sh) => (msg.length >>> sh) & 0xff)]), msg])
const varint = (n: number) => {
  const out: number[] = []
  do {
    out.push((n & 0x7f) | (n > 0x7f ? 0x80 : 0))
    n = Math.floor(n / 128)
  } while (n > 0)
  return Buffer.from(out)
}
const stringField = (num: number, v: string) => Buffer.concat([Buffer.from([(num << 3) | 2]), varint(Buffer.byteLength(v)), Buffer.from(v)])

t.test('the controller serves UploadImage and DownloadImage on its HTTP/2 streams', async (t) => {
  t.same(s.controller.bulkMethods.sort(), [DOWNLOAD, UPLOAD], 'grpc-js exposes what bulk.ts attaches to (a grpc-js upgrade that hides it fails here)')
})

t.test("an upload marked last, or refused before its data, leaves no reader waiting on the client (its idle timer)", async (t) => {
  // The request reader arms one timer of grpc.uploadIdleTimeoutMs while it waits on the client; an upload that
  // ends on `last` (as a host's snapshot upload does) or is refused unread must close it, not leave it pending.
  const idleMs = s.controller.config.grpc.uploadIdleTimeoutMs
  const pending = new Set<NodeJS.Timeout>()
  const { setTimeout: realSet, clearTimeout: realClear } = globalThis
  globalThis.setTimeout = ((fn: () => void, ms?: number, ...a: unknown[]) => {
    const h: NodeJS.Timeout = Reflect.apply(realSet, globalThis, [() => (pending.delete(h), fn()), ms, ...a])
    if (ms === idleMs) pending.add(h)
    return h
  }) as typeof setTimeout
  globalThis.clearTimeout = ((h?: NodeJS.Timeout) => (h && pending.delete(h), realClear(h))) as typeof clearTimeout
  t.teardown(() => Object.assign(globalThis, { setTimeout: realSet, clearTimeout: realClear }))
  const send = (via: ImagesClient, msgs: object[]) => new Promise<Decoded<Image>>((resolve, reject) => {
    const st = via.uploadImage(md(), (err: ServiceError | null, res: Image) => (err ? reject(err) : resolve(res as Decoded<Image>)))
    for (const m of msgs) st.write(m)
    st.end()
  })
  const data = sample(MiB)
  for (const [path, via] of [['direct', images], ['grpc-js', gzipImages]] as const) {
    const img = await newImage(`last-${path}`)
    const done = await send(via, [{ imageId: img.id }, { data: data.subarray(0, MiB / 2) }, { data: data.subarray(MiB / 2), last: true }])
    t.equal(done.checksum, md5(data), `${path}: the upload marked last is stored`)
    const refused = await failure(send(via, [{ imageId: img.id }, { data: data.subarray(0, 1024), last: true }]))
    t.equal(refused.code, status.FAILED_PRECONDITION, `${path}: a second upload is refused before its data is read`)
  }
  t.equal(pending.size, 0, 'no idle timer left pending')
})

t.test('byte for byte both ways: direct path and grpc-js (compressed requests) agree', async (t) => {
  const data = sample(5 * MiB + 123)
  const plain = await newImage('plain')
  const up = await upload(images, plain.id, data)
  t.equal(up.status, 'active')
  t.equal(up.checksum, md5(data), 'MD5 as Glance computes it')
  t.equal(up.osHashValue, createHash('sha512').update(data).digest('hex'), 'SHA-512')
  t.equal(up.size, data.length)
  const gz = await newImage('gzip')
  const up2 = await upload(gzipImages, gz.id, data)
  t.equal(up2.checksum, up.checksum, 'a gzip-compressing client (served by grpc-js) stores the same bytes')
  for (const [name, via] of [['direct', images], ['grpc-js', gzipImages]] as const) {
    for (const id of [plain.id, gz.id]) t.ok((await download(via, id)).equals(data), `${name} download of ${id === plain.id ? 'the plain' : 'the gzip'} upload`)
  }
  t.same(await Promise.all([download(images, plain.id), download(images, plain.id), download(images, gz.id)]).then((bs) => bs.map(md5)), [md5(data), md5(data), md5(data)], 'concurrent downloads')
})

t.test('a client that is not ours: Python grpcio (C core) uploads and downloads', async (t) => {
  const data = sample(6 * MiB + 5)
  const file = path.join(tmp, 'py.raw')
  writeFileSync(file, data)
  const img = await newImage('python')
  const out = await new Promise<string>((resolve, reject) =>
    execFile('/usr/bin/python3', [path.join(import.meta.dirname, '../../bench/image_client.py'), s.address, s.adminToken, img.id, file], (err, stdout, stderr) => (err ? reject(new Error(stderr || err.message)) : resolve(stdout))),
  )
  t.equal(JSON.parse(out).md5, md5(data), 'what it downloaded is what it uploaded')
  t.equal((await call<Image>(images, 'getImage', { id: img.id }, s.adminToken)).checksum, md5(data))
})

t.test('malformed uploads get a clear status and change nothing', async (t) => {
  const img = await newImage('malformed')
  const first = frame(Buffer.concat([stringField(1, img.id), Buffer.from([3 << 3]), varint(100)]))
  const cases: Array<[string, Buffer, number, RegExp]> = [
    ['a flag byte that is not 0 or 1', Buffer.concat([first, frame(Buffer.alloc(10), 2)]), status.INVALID_ARGUMENT, /not a gRPC message: flag byte 2/],
    ['a compressed message without grpc-encoding', Buffer.concat([first, frame(Buffer.alloc(10), 1)]), status.INVALID_ARGUMENT, /compressed message in a request without grpc-encoding/],
    ['a message over the 16 MiB limit', Buffer.concat([first, Buffer.from([0, 0x01, 0x10, 0, 0])]), status.RESOURCE_EXHAUSTED, /larger than the limit of 16777216/],
    ['a body that ends inside a message', Buffer.concat([first, frame(Buffer.alloc(50)).subarray(0, 20)]), status.INVALID_ARGUMENT, /ended inside a message/],
    ['a protobuf field longer than its message', Buffer.concat([first, frame(Buffer.from([0x12, 0x7f, 1, 2, 3]))]), status.INVALID_ARGUMENT, /malformed protobuf message: a field longer than the message/],
    ['a wire type protobuf does not have', Buffer.concat([first, frame(Buffer.from([0x17]))]), status.INVALID_ARGUMENT, /malformed protobuf message: wire type 7/],
    ['no first message naming the image', frame(Buffer.from([0x12, 3, 1, 2, 3])), status.INVALID_ARGUMENT, /first UploadImage message must carry image_id/],
  ]
  for (const [what, body, code, message] of cases) {
    const r = grpcStatus(await rawCall(UPLOAD, body))
    t.equal(r.code, code, `${what}: status ${code}`)
    t.match(r.message, message, `${what}: says why`)
    t.equal(await status_(img.id), 'queued', `${what}: the image is still queued`)
    t.same(storeFiles(img.id), [], `${what}: no file kept`)
  }
  // A refused upload's data is read and dropped: a client sending more than the flow-control window still gets its status.
  const refused = await failure(new Promise((resolve, reject) => {
    const bad = new Metadata()
    bad.set('x-auth-token', 'not-a-token')
    const st = images.uploadImage(bad, (err: ServiceError | null, res: Image) => (err ? reject(err) : resolve(res)))
    st.write({ imageId: img.id, size: 20 * MiB })
    for (let i = 0; i < 20; i++) st.write({ data: Buffer.alloc(MiB, 1) })
    st.end()
  }))
  t.equal(refused.code, status.UNAUTHENTICATED, 'a bad token with 20 MiB behind it: UNAUTHENTICATED')
  const noToken = grpcStatus(await rawCall(UPLOAD, first, { 'x-auth-token': '' }))
  t.equal(noToken.code, status.UNAUTHENTICATED, 'no token: UNAUTHENTICATED')
  t.equal(noToken.errorCode, 'UNAUTHENTICATED', "Strato's error code travels in the trailers")
  const e = await failure(upload(images, '', Buffer.alloc(10)))
  t.equal(e.code, status.INVALID_ARGUMENT)
  t.equal(fieldOf(e), 'image_id', 'the field travels too (read by a grpc-js client)')
  // The image still takes a good upload afterwards.
  const data = sample(100)
  const ok = grpcStatus(await rawCall(UPLOAD, Buffer.concat([first, frame(Buffer.concat([Buffer.from([0x12]), varint(100), data]))])))
  t.equal(ok.code, status.OK, 'a hand-made well-formed upload works')
  t.equal(await status_(img.id), 'active')
})

t.test("a client's deadline ends the upload: DEADLINE_EXCEEDED, nothing kept", async (t) => {
  const img = await newImage('deadline')
  const e = await failure(upload(images, img.id, sample(2 * MiB), { deadline: 400, stall: true }))
  t.equal(e.code, status.DEADLINE_EXCEEDED)
  let st = ''
  for (let i = 0; i < 300 && st !== 'queued'; i++) {
    st = await status_(img.id)
    if (st !== 'queued') await new Promise((r) => setTimeout(r, 100))
  }
  t.equal(st, 'queued', 'back to queued')
  t.same(storeFiles(img.id), [], 'no partial file')
  const r = grpcStatus(await rawCall(UPLOAD, Buffer.alloc(0), { 'grpc-timeout': '1m' }))
  t.ok(r.code === status.DEADLINE_EXCEEDED || r.code === status.INVALID_ARGUMENT, `a 1 ms deadline: ${r.code} ${r.message}`)
})

t.test('downloads: errors, a client that goes away, no file left open', async (t) => {
  const data = sample(9 * MiB)
  const img = await newImage('away')
  await upload(images, img.id, data)
  const openFds = () => readdirSync('/proc/self/fd').filter((fd) => {
    try {
      return readlinkSync(`/proc/self/fd/${fd}`).includes(img.id)
    } catch {
      return false
    }
  }).length
  const part = await download(images, img.id, { cancelAfter: 2 })
  t.ok(part.length >= 2 * MiB && part.length < data.length, 'the client stopped part-way')
  for (let i = 0; i < 400 && openFds() > 0; i++) await new Promise((r) => setTimeout(r, 50))
  t.equal(openFds(), 0, 'the server closed the image file')
  t.ok((await download(images, img.id)).equals(data), 'the next download is whole')
  t.equal((await failure(download(images, 'nope'))).code, status.NOT_FOUND)
  const two = grpcStatus(await rawCall(DOWNLOAD, Buffer.concat([frame(stringField(1, img.id)), frame(stringField(1, img.id))])))
  t.equal(two.code, status.INVALID_ARGUMENT)
  t.match(two.message, /one request message, got 2/)
  const raw = await rawCall(DOWNLOAD, frame(stringField(1, img.id)))
  t.equal(grpcStatus(raw).code, status.OK)
  t.equal(raw.headers['content-type'], 'application/grpc+proto')
  // Unframe by hand: each message is ImageChunk { bytes data = 1 } of at most 1 MiB (clients take 4 MiB by default).
  const got: Buffer[] = []
  let sizes = 0
  for (let off = 0; off < raw.body.length;) {
    const len = raw.body.readUInt32BE(off + 1)
    const msg = raw.body.subarray(off + 5, off + 5 + len)
    let i = 1
    let n = 0
    for (let sh = 0; ; sh += 7) {
      const b = msg[i++]!
      n += (b & 0x7f) * 2 ** sh
      if (!(b & 0x80)) break
    }
    got.push(msg.subarray(i, i + n))
    sizes = Math.max(sizes, n)
    off += 5 + len
  }
  t.ok(Buffer.concat(got).equals(data), 'the raw frames carry the image')
  t.equal(sizes, MiB, 'messages of 1 MiB')
})

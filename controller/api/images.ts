/** gRPC adapters for strato.image.v1.Images; upload is client-streaming, download server-streaming. */
import { once } from 'node:events'
import type http2 from 'node:http2'
import type { UntypedServiceImplementation } from '@grpc/grpc-js'
import { InvalidArgument, ResourceExhausted, Unavailable } from '../../proto/errors.js'
import { Empty } from '../../proto/gen/google/protobuf/empty.js'
import { Image, ImageIdRequest, ImageMember, ImagesService, ListImageMembersResponse, ListImagesResponse, type UploadImageRequest } from '../../proto/gen/strato/image/v1/image.js'
import { imageReader, imageUploader, type ImageCatalog, type ImageViewer } from '../image/catalog.js'
import { chunksOf } from '../image/store.js'
import type { FileSource } from '../../native/index.js'
import { FRAME_ROOM, GrpcResponse, PiecesReader, bytesFieldFrame, oneMessage, requestMessages, streamMethod, type IdleLimit, type RawMessage, type StreamHandler } from './bulk.js'
import { decodeRequest, implement, malformed, type CallContext, type RpcDeps } from './rpc.js'

/** The largest request message (as grpc.max_receive_message_length on the server). */
export const MAX_MESSAGE = 16 * 1024 * 1024

/** Limits on image uploads (compiled from the controller's grpc config). */
export interface UploadLimits {
  /** An upload that sends nothing for this long is aborted. */
  idleTimeoutMs: number
  /** Uploads receiving at once; more wait their turn (up to {@link QUEUED_PER_SLOT} per slot, then RESOURCE_EXHAUSTED). */
  maxConcurrent: number
}

/** Waiting uploads per slot: a waiting upload costs its stream's flow-control window, so waiting is bounded too. */
export const QUEUED_PER_SLOT = 32

/**
 * Turns for uploads. Each receiving upload holds a few batches of data
 * (image/store.ts); one waiting for its turn is not read, so HTTP/2 flow
 * control holds its sender after one stream window: memory follows the
 * slots, not the number of clients.
 */
export class UploadSlots {
  private active = 0
  private readonly waiting: Array<() => void> = []

  constructor(private readonly limits: UploadLimits) {}

  /** Waits for a turn; returns its release. */
  async acquire(): Promise<() => void> {
    if (this.active >= this.limits.maxConcurrent) {
      if (this.waiting.length >= this.limits.maxConcurrent * QUEUED_PER_SLOT) {
        throw new ResourceExhausted(`too many image uploads at once: ${this.active} receiving and ${this.waiting.length} waiting (grpc.maxConcurrentUploads is ${this.limits.maxConcurrent}); try again later`)
      }
      await new Promise<void>((resolve) => this.waiting.push(resolve))
    } else this.active++
    let released = false
    return () => {
      if (released) return
      released = true
      const next = this.waiting.shift()
      if (next) next() // the turn passes on: active stays the same
      else this.active--
    }
  }
}

const idleLimit = (limits: UploadLimits): IdleLimit => ({ ms: limits.idleTimeoutMs, what: 'the upload', setting: 'grpc.uploadIdleTimeoutMs; nothing was kept' })

/** `parts`, aborted when the next one takes longer than the idle limit (the grpc-js path; bulk.ts does it for its own). */
async function* idleLimited<T>(parts: AsyncIterable<T>, idle: IdleLimit): AsyncIterable<T> {
  const it = parts[Symbol.asyncIterator]()
  for (;;) {
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Unavailable(`${idle.what} sent nothing for ${idle.ms} ms (${idle.setting}); it was aborted`)), idle.ms)))
    let next: IteratorResult<T>
    try {
      next = await Promise.race([it.next(), timeout])
    } finally {
      clearTimeout(timer)
    }
    if (next.done) return
    yield next.value
  }
}

function viewer(c: CallContext): ImageViewer {
  // DownloadImage may come with an image-read token (a host building a server) instead of a caller.
  if (c.imageRead) return imageReader(c.imageRead.imageId)
  // UploadImage may come with an image-upload token (a host uploading a server snapshot).
  if (c.imageUpload) return imageUploader(c.imageUpload.imageId)
  const a = c.auth!
  return { projectId: a.projectId, domainId: a.actingDomainId, isAdmin: a.isCloudAdmin, canWrite: a.roles.has('member') }
}

/** An UploadImageRequest with its data as the pieces it arrived in. */
interface UploadPart {
  imageId: string
  size: number
  last: boolean
  data: Buffer[]
}

/**
 * The first message names the image (and maybe the total size); data follows
 * (it may start in the first message). A cancelled client stream ends the same
 * way a finished one does, so completion must be explicit: the announced size
 * reached, or a message with `last`. Anything else throws, and is not kept.
 */
async function splitUpload(parts: AsyncIterable<UploadPart>): Promise<{ imageId: string; size: number; data: AsyncIterable<Buffer[]> }> {
  const it = parts[Symbol.asyncIterator]()
  const first = await it.next()
  if (first.done || !first.value.imageId) throw new InvalidArgument('the first UploadImage message must carry image_id', { field: 'image_id' })
  const size = first.value.size
  if (!Number.isInteger(size) || size < 0) throw new InvalidArgument(`size must be a non-negative integer, got ${size}`, { field: 'size' })
  // A message's pieces go on together: one step of the chain per message, not per piece.
  async function* data(): AsyncIterable<Buffer[]> {
    let received = 0
    let msg: UploadPart = first.value
    for (;;) {
      if (msg.data.length > 0) {
        for (const d of msg.data) received += d.length
        if (size > 0 && received > size) throw new InvalidArgument(`more data than the announced size of ${size} bytes`, { field: 'size' })
        yield msg.data
      }
      if (msg.last) break
      const next = await it.next()
      if (next.done) {
        if (size > 0 && received === size) return
        throw new InvalidArgument(
          size > 0 ? `the upload ended after ${received} of ${size} bytes (cancelled?); nothing was kept` : 'the upload ended without a message marked last (cancelled?); nothing was kept',
          { field: size > 0 ? 'size' : 'last' },
        )
      }
      msg = next.value
    }
    if (size > 0 && received !== size) throw new InvalidArgument(`the upload sent ${received} bytes but announced ${size}`, { field: 'size' })
  }
  return { imageId: first.value.imageId, size, data: data() }
}

async function* partsOf(stream: AsyncIterable<UploadImageRequest>): AsyncIterable<UploadPart> {
  for await (const r of stream) {
    const d = r.data
    yield { imageId: r.imageId ?? '', size: r.size ?? 0, last: r.last ?? false, data: d && d.length > 0 ? [Buffer.from(d.buffer, d.byteOffset, d.byteLength)] : [] }
  }
}

/** UploadImageRequest decoded from the pieces of a message; `data` stays in them. */
function decodeUploadPart(m: RawMessage): UploadPart {
  const r = new PiecesReader(m.pieces)
  const part: UploadPart = { imageId: '', size: 0, last: false, data: [] }
  while (!r.done) {
    const tag = r.varint()
    const field = tag >>> 3
    const wire = tag & 7
    if (field === 1 && wire === 2) part.imageId = Buffer.concat(r.bytes(r.varint())).toString('utf8')
    else if (field === 2 && wire === 2) part.data = r.bytes(r.varint()) // a repeated field: the last one wins
    else if (field === 3 && wire === 0) part.size = r.varint()
    else if (field === 4 && wire === 0) part.last = r.varint() !== 0
    else r.skip(wire)
  }
  return part
}

async function* uploadParts(stream: http2.ServerHttp2Stream, idle: IdleLimit): AsyncGenerator<UploadPart> {
  for await (const m of requestMessages(stream, MAX_MESSAGE, idle)) {
    let part: UploadPart
    try {
      part = decodeUploadPart(m)
    } catch (err) {
      throw malformed('UploadImageRequest', err)
    }
    yield part
  }
}

/** Bytes per download message: gRPC clients take 4 MiB messages by default. */
const CHUNK = 1024 * 1024
/** Download buffers per call, reused: reading runs ahead of the socket by this many chunks. */
const POOL = 4

/**
 * Sends the source's data as ImageChunk messages, each read into one of a few
 * reused buffers behind room for its frame header; closes the source.
 */
async function sendChunks(res: GrpcResponse, source: FileSource): Promise<void> {
  const free: Buffer[] = Array.from({ length: POOL }, () => Buffer.allocUnsafeSlow(FRAME_ROOM + CHUNK + 4096))
  let wake: (() => void) | undefined
  const release = (buf: Buffer) => {
    free.push(buf)
    const w = wake
    wake = undefined
    w?.()
  }
  try {
    for (;;) {
      while (free.length === 0) await new Promise<void>((resolve) => (wake = resolve))
      if (res.closed) return
      const buf = free.pop()!
      const { offset, length } = await source.read(buf, FRAME_ROOM, CHUNK)
      if (length === 0) return
      const head = bytesFieldFrame(1, length)
      head.copy(buf, offset - head.length)
      res.write(buf.subarray(offset - head.length, offset + length), () => release(buf))
    }
  } finally {
    source.close()
  }
}

export function imageServices(images: ImageCatalog, rpc: RpcDeps, limits: UploadLimits, slots = new UploadSlots(limits)): Array<[object, UntypedServiceImplementation]> {
  const upload = async (parts: AsyncIterable<UploadPart>, c: CallContext) => {
    const release = await slots.acquire()
    try {
      const { imageId, size, data } = await splitUpload(idleLimited(parts, idleLimit(limits)))
      return Image.fromPartial(await images.upload(imageId, data, viewer(c), size))
    } finally {
      release()
    }
  }
  return [
    [ImagesService, implement(ImagesService, {
      createImage: async (req, c) => Image.fromPartial(await images.create(req, viewer(c))),
      getImage: async (req, c) => Image.fromPartial(await images.get(req, viewer(c))),
      listImages: async (req, c) => ListImagesResponse.fromPartial(await images.list(req, viewer(c))),
      updateImage: async (req, c) => Image.fromPartial(await images.update(req.id, req, viewer(c))),
      deleteImage: async (req, c) => (await images.delete(req.id, viewer(c)), Empty.fromPartial({})),
      // These two are served by imageStreamHandlers() below; grpc-js takes
      // what that path does not (compressed requests).
      uploadImage: async (stream, c) => upload(partsOf(stream), c),
      downloadImage: async (req, c, out) => {
        const { source } = await images.download(req.id, viewer(c))
        for await (const chunk of chunksOf(source, CHUNK)) {
          if (out.cancelled) return
          if (!out.write({ data: chunk })) await once(out, 'drain')
        }
      },
      deactivateImage: async (req, c) => Image.fromPartial(await images.setActive(req.id, false, viewer(c))),
      reactivateImage: async (req, c) => Image.fromPartial(await images.setActive(req.id, true, viewer(c))),
      addImageMember: async (req, c) => ImageMember.fromPartial(await images.addMember(req.imageId, req.memberId, viewer(c))),
      updateImageMember: async (req, c) => ImageMember.fromPartial(await images.updateMember(req.imageId, req.memberId, req.status, viewer(c))),
      listImageMembers: async (req, c) => ListImageMembersResponse.fromPartial({ members: await images.listMembers(req.id, viewer(c)) }),
      deleteImageMember: async (req, c) => (await images.deleteMember(req.imageId, req.memberId, viewer(c)), Empty.fromPartial({})),
    }, rpc)],
  ]
}

/**
 * UploadImage and DownloadImage on the gRPC server's HTTP/2 streams (see
 * bulk.ts): the same checks and catalog calls as above, without grpc-js's
 * copies of every chunk.
 */
export function imageStreamHandlers(images: ImageCatalog, rpc: RpcDeps, limits: UploadLimits, slots = new UploadSlots(limits)): Record<string, StreamHandler> {
  return {
    [ImagesService.uploadImage.path]: streamMethod(ImagesService.uploadImage.path, rpc, async (stream, res, prepare) => {
      const c = await prepare(undefined)
      const release = await slots.acquire()
      const parts = uploadParts(stream, idleLimit(limits))
      try {
        const { imageId, size, data } = await splitUpload(parts)
        const image = await images.upload(imageId, data, viewer(c), size)
        res.message(Image.encode(Image.fromPartial(image)).finish())
      } finally {
        release()
        // The upload stops reading at the message marked last (or at a refusal), not at the stream's
        // end: finish the reader, or its idle timer (a minute by default) and its listeners on the
        // stream stay until the timer fires — and keep a stopped controller's process alive that long.
        // Not awaited: a read still waiting on the client ends when the stream closes.
        parts.return(undefined).catch(() => {})
      }
    }),
    [ImagesService.downloadImage.path]: streamMethod(ImagesService.downloadImage.path, rpc, async (stream, res, prepare) => {
      const req = decodeRequest(ImageIdRequest, await oneMessage(stream, 64 * 1024, 'DownloadImage'), 'ImageIdRequest')
      const c = await prepare(req)
      const { source } = await images.download(req.id, viewer(c))
      await sendChunks(res, source)
    }),
  }
}

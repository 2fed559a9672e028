/** gRPC adapters for strato.image.v1.Images; upload is client-streaming, download server-streaming. */
import { once } from 'node:events'
import type { UntypedServiceImplementation } from '@grpc/grpc-js'
import { InvalidArgument } from '../../proto/errors.js'
import { Empty } from '../../proto/gen/google/protobuf/empty.js'
import { Image, ImageChunk, ImageMember, ImagesService, ListImageMembersResponse, ListImagesResponse, type UploadImageRequest } from '../../proto/gen/strato/image/v1/image.js'
import type { ImageCatalog, ImageViewer } from '../image/catalog.js'
import { implement, type CallContext, type RpcDeps } from './rpc.js'

function viewer(c: CallContext): ImageViewer {
  const a = c.auth!
  return { projectId: a.projectId, domainId: a.actingDomainId, isAdmin: a.isCloudAdmin, canWrite: a.roles.has('member') }
}

/**
 * The first message names the image (and maybe the total size); data follows
 * (it may start in the first message). A cancelled client stream ends the same
 * way a finished one does, so completion must be explicit: the announced size
 * reached, or a message with `last`. Anything else throws, and is not kept.
 */
async function splitUpload(stream: AsyncIterable<UploadImageRequest>): Promise<{ imageId: string; size: number; data: AsyncIterable<Buffer> }> {
  const it = stream[Symbol.asyncIterator]()
  const first = await it.next()
  if (first.done || !first.value.imageId) throw new InvalidArgument('the first UploadImage message must carry image_id', { field: 'image_id' })
  const size = first.value.size ?? 0
  if (!Number.isInteger(size) || size < 0) throw new InvalidArgument(`size must be a non-negative integer, got ${size}`, { field: 'size' })
  async function* data(): AsyncIterable<Buffer> {
    let received = 0
    let msg: UploadImageRequest = first.value
    for (;;) {
      const d = msg.data
      if (d && d.length > 0) {
        received += d.length
        if (size > 0 && received > size) throw new InvalidArgument(`more data than the announced size of ${size} bytes`, { field: 'size' })
        yield Buffer.from(d.buffer, d.byteOffset, d.byteLength)
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

/**
 * ImageChunk { bytes data = 1 } encoded with one copy (tag, length, bytes);
 * the generic writer copies a 1 MiB chunk several times, and download speed
 * is bounded by those copies.
 */
function encodeChunk(chunk: ImageChunk): Buffer {
  const data = chunk.data ?? new Uint8Array()
  let len = data.length
  const header = [0x0a]
  do {
    header.push((len & 0x7f) | (len > 0x7f ? 0x80 : 0))
    len >>>= 7
  } while (len > 0)
  const out = Buffer.allocUnsafe(header.length + data.length)
  out.set(header, 0)
  out.set(data, header.length)
  return out
}

const ImagesServiceFast = { ...ImagesService, downloadImage: { ...ImagesService.downloadImage, responseSerialize: encodeChunk } }

export function imageServices(images: ImageCatalog, rpc: RpcDeps): Array<[object, UntypedServiceImplementation]> {
  return [
    [ImagesServiceFast, implement(ImagesServiceFast, {
      createImage: async (req, c) => Image.fromPartial(await images.create(req, viewer(c))),
      getImage: async (req, c) => Image.fromPartial(await images.get(req, viewer(c))),
      listImages: async (req, c) => ListImagesResponse.fromPartial(await images.list(req, viewer(c))),
      updateImage: async (req, c) => Image.fromPartial(await images.update(req.id, req, viewer(c))),
      deleteImage: async (req, c) => (await images.delete(req.id, viewer(c)), Empty.fromPartial({})),
      uploadImage: async (stream, c) => {
        const { imageId, size, data } = await splitUpload(stream)
        return Image.fromPartial(await images.upload(imageId, data, viewer(c), size))
      },
      downloadImage: async (req, c, out) => {
        const { data } = await images.download(req.id, viewer(c))
        for await (const chunk of data) {
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

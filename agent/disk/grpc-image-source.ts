/** ImageSource over strato.image.v1.Images: metadata by GetImage, data by the DownloadImage stream. */
import { Metadata, credentials, type ServiceError } from '@grpc/grpc-js'
import { fromGrpcError } from '../../proto/grpc-errors.js'
import { ImagesClient, type Image } from '../../proto/gen/strato/image/v1/image.js'
import type { ImageSource, KnownImage } from './image-cache.js'

export class GrpcImageSource implements ImageSource {
  private readonly client: ImagesClient

  /** `token` is read for every call, so a rotated service token is picked up. */
  constructor(address: string, private readonly token: () => string) {
    this.client = new ImagesClient(address, credentials.createInsecure(), {
      'grpc.max_receive_message_length': 64 * 1024 * 1024,
      'grpc-node.flow_control_window': 8 * 1024 * 1024,
    })
  }

  private md(token: string): Metadata {
    const md = new Metadata()
    md.set('x-auth-token', token)
    return md
  }

  /**
   * `token`, when given, is used instead of the constructor's (the agent
   * downloads with each build's image-read token). With `known` (what the
   * build spec says of the image) no GetImage is made: an image-read token
   * can only call DownloadImage.
   */
  async download(imageId: string, token = this.token(), known?: KnownImage) {
    const image: Image = known ?? await new Promise<Image>((resolve, reject) =>
      this.client.getImage({ id: imageId }, this.md(token), (err: ServiceError | null, res: Image) => (err ? reject(fromGrpcError(err)) : resolve(res))),
    )
    const stream = this.client.downloadImage({ id: imageId }, this.md(token))
    async function* data(): AsyncIterable<Uint8Array> {
      try {
        for await (const chunk of stream as AsyncIterable<{ data?: Uint8Array }>) if (chunk.data) yield chunk.data
      } catch (err) {
        throw fromGrpcError(err as ServiceError)
      }
    }
    return { image: { checksum: image.checksum ?? '', diskFormat: image.diskFormat ?? '', status: image.status ?? '' }, data: data() }
  }

  close(): void {
    this.client.close()
  }
}

/** ImageSource over strato.image.v1.Images: metadata by GetImage, data by the DownloadImage stream. */
import { readFileSync } from 'node:fs'
import { open, stat } from 'node:fs/promises'
import { Metadata, credentials, status, type ServiceError } from '@grpc/grpc-js'
import { FailedPrecondition, InvalidArgument } from '../../proto/errors.js'
import { fromGrpcError } from '../../proto/grpc-errors.js'
import { bulkChannelOptions } from '../../proto/grpc-channel.js'
import { isCertificateFailure, parseGrpcUrl } from '../../proto/grpc-url.js'
import { ImagesClient, type Image } from '../../proto/gen/strato/image/v1/image.js'
import type { ImageSource, KnownImage } from './image-cache.js'

export class GrpcImageSource implements ImageSource {
  private readonly client: ImagesClient

  /**
   * `url` is `grpcs://host:port` (TLS), `grpc://host:port` (plaintext) or
   * `host:port` (TLS when `caFile` is given). The controller's certificate
   * must chain to `caFile` (else the system's roots). `token` is read for
   * every call, so a rotated service token is picked up.
   */
  constructor(url: string, private readonly token: () => string, private readonly caFile: string | null = null) {
    const target = parseGrpcUrl(url)
    if (!target) throw new InvalidArgument(`the controller address '${url}' is not grpcs://host:port, grpc://host:port or host:port`, { field: 'controllerAddress' })
    const tls = target.scheme === 'grpcs' || (target.scheme === '' && caFile !== null)
    this.client = new ImagesClient(target.address, tls ? credentials.createSsl(readCa(caFile)) : credentials.createInsecure(), bulkChannelOptions)
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
      this.client.getImage({ id: imageId }, this.md(token), (err: ServiceError | null, res: Image) => (err ? reject(this.convert(err)) : resolve(res))),
    )
    const stream = this.client.downloadImage({ id: imageId }, this.md(token))
    const convert = (err: ServiceError) => this.convert(err)
    // The call can fail before anyone iterates (the controller is down: grpc-js fails fast while the
    // caller is still opening its file). An 'error' with no listener would kill the agent, so it is
    // kept here and thrown from the iteration, like any other failure of the download.
    let failed: ServiceError | undefined
    stream.on('error', (err: ServiceError) => (failed ??= err))
    async function* data(): AsyncIterable<Uint8Array> {
      try {
        for await (const chunk of stream as AsyncIterable<{ data?: Uint8Array }>) if (chunk.data) yield chunk.data
      } catch (err) {
        throw convert(err as ServiceError)
      }
      if (failed) throw convert(failed)
    }
    return { image: { checksum: image.checksum ?? '', diskFormat: image.diskFormat ?? '', status: image.status ?? '' }, data: data() }
  }

  /**
   * Uploads the file at `file` as the data of image `imageId` (a server
   * snapshot) with `token`, an image-upload token of that image; resolves
   * with the image as the service left it (active, with its checksum and
   * size). The size is announced first, so a quota refuses before the data.
   */
  async upload(imageId: string, file: string, token: string): Promise<Image> {
    const size = (await stat(file)).size
    const fh = await open(file, 'r')
    try {
      return await new Promise<Image>((resolve, reject) => {
        const call = this.client.uploadImage(this.md(token), (err: ServiceError | null, res: Image) => (err ? reject(this.convert(err)) : resolve(res)))
        const chunk = 1024 * 1024
        void (async () => {
          let pos = 0
          call.write({ imageId, size, last: size === 0 })
          while (pos < size) {
            const buf = Buffer.allocUnsafe(Math.min(chunk, size - pos))
            const { bytesRead } = await fh.read(buf, 0, buf.length, pos)
            if (bytesRead === 0) throw new FailedPrecondition(`${file} shrank while it was uploaded`)
            pos += bytesRead
            // Flow control: wait for the stream to drain rather than buffer the whole file.
            if (!call.write({ data: buf.subarray(0, bytesRead), last: pos >= size })) await new Promise((r) => call.once('drain', r))
          }
          call.end()
        })().catch((err) => {
          call.cancel()
          reject(err)
        })
      })
    } finally {
      await fh.close()
    }
  }

  /**
   * A gRPC failure as a Strato error. A certificate that does not verify is
   * FailedPrecondition, not Unavailable: the cast worker retries Unavailable
   * forever (the controller may be restarting), and no retry fixes trust.
   */
  private convert(err: ServiceError): Error {
    if (err.code === status.UNAVAILABLE && !err.metadata?.get('strato-error-code').length && isCertificateFailure(err.details ?? '')) {
      const trust = this.caFile ? `the CA in ${this.caFile} (STRATO_AGENT_CA_FILE)` : "the system's roots (STRATO_AGENT_CA_FILE is not set)"
      return new FailedPrecondition(`the controller's TLS certificate does not verify against ${trust}: ${err.details}`, { cause: err })
    }
    return fromGrpcError(err)
  }

  close(): void {
    this.client.close()
  }
}

function readCa(file: string | null): Buffer | null {
  if (file === null) return null
  try {
    return readFileSync(file)
  } catch (err) {
    throw new FailedPrecondition(`cannot read the controller's CA ${file} (STRATO_AGENT_CA_FILE): ${(err as Error).message}`, { cause: err })
  }
}

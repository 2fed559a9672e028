/**
 * Client side of bench:catalog with the agent's own download path, in its own
 * process: the agent's ImageCache over its GrpcImageSource (grpc-js, the
 * channel options the agent uses) fetches IMAGE_ID into a fresh cache
 * directory, as a host does on the first boot of an image: download, MD5
 * checked against the image's checksum, inspected, converted to a qcow2 base.
 * usage: node --import tsx agent-image-client.ts ADDRESS TOKEN IMAGE_ID CACHE_DIR [CA_FILE]
 *   -> JSON { downloadMs, downloadCpuS, md5, ensureMs }
 * downloadMs and downloadCpuS (this process, all threads) cover the download
 * alone, until the stream's last chunk is written; ensureMs the whole fetch.
 * md5 is the checksum the cache verified the received bytes against (it
 * throws on a mismatch).
 */
import { ImageCache, type ImageSource } from '../../agent/disk/image-cache.js'
import { GrpcImageSource } from '../../agent/disk/grpc-image-source.js'

const [address, token, imageId, cacheDir, caFile] = process.argv.slice(2)
if (!address || !token || !imageId || !cacheDir) throw new Error('usage: agent-image-client.ts ADDRESS TOKEN IMAGE_ID CACHE_DIR [CA_FILE]')

const grpc = new GrpcImageSource(address, () => token, caFile || null)
let t0 = 0
let cpu0: NodeJS.CpuUsage | undefined
let downloadMs = NaN
let downloadCpu: NodeJS.CpuUsage | undefined
let checksum = ''
// The cache as the agent has it; this source only notes when the data starts and ends.
const timed: ImageSource = {
  async download(id) {
    cpu0 = process.cpuUsage()
    t0 = performance.now()
    const { image, data } = await grpc.download(id)
    checksum = image.checksum
    async function* counted(): AsyncIterable<Uint8Array> {
      yield* data
      downloadMs = performance.now() - t0
      downloadCpu = process.cpuUsage(cpu0)
    }
    return { image, data: counted() }
  },
}
const start = performance.now()
await new ImageCache(cacheDir, timed).ensure(imageId)
const ensureMs = performance.now() - start
grpc.close()
if (!downloadCpu) throw new Error('the download did not complete')
console.log(JSON.stringify({ downloadMs, downloadCpuS: (downloadCpu.user + downloadCpu.system) / 1e6, md5: checksum, ensureMs }))

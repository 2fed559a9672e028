// The agent's disks: image cache fed by the real image service over gRPC, and
// root disks as qcow2 overlays on the cached base — checked with qemu-img.
import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import t from 'tap'
import { Metadata, type ServiceError } from '@grpc/grpc-js'
import { startController, type TestController } from '../../helpers/controller.js'
import { call, client } from '../../helpers/grpc.js'
import { ImagesClient, type Image } from '../../../proto/gen/strato/image/v1/image.js'
import { ImageCache, type ImageSource } from '../../../agent/disk/image-cache.js'
import { GrpcImageSource } from '../../../agent/disk/grpc-image-source.js'
import { createRootDisk } from '../../../agent/disk/root-disk.js'
import { readImage, writeImage } from '../../../native/index.js'

let s: TestController
let images: ImagesClient
let tmp: string
const ids: Record<string, string> = {}

async function uploadImage(name: string, diskFormat: string, file: string): Promise<string> {
  const img = await call<Image>(images, 'createImage', { name, diskFormat, containerFormat: 'bare', visibility: 'public' }, s.adminToken)
  const data = readFileSync(file)
  const md = new Metadata()
  md.set('x-auth-token', s.adminToken)
  await new Promise((resolve, reject) => {
    const st = images.uploadImage(md, (err: ServiceError | null, res: Image) => (err ? reject(err) : resolve(res)))
    st.write({ imageId: img.id, size: data.length })
    for (let off = 0; off < data.length; off += 1024 * 1024) st.write({ data: data.subarray(off, off + 1024 * 1024) })
    st.end()
  })
  return img.id
}

const qemuInfo = (file: string) => JSON.parse(execFileSync('qemu-img', ['info', '--output=json', file], { encoding: 'utf8' }))

t.before(async () => {
  s = await startController()
  images = client(ImagesClient, s.address)
  tmp = mkdtempSync(path.join(tmpdir(), 'strato-disks-'))
  const raw = path.join(tmp, 'disk.raw')
  const buf = Buffer.alloc(32 * 1024 * 1024)
  randomBytes(1024 * 1024).copy(buf, 4 * 1024 * 1024)
  Buffer.from('STRATO BASE').copy(buf, 0)
  writeFileSync(raw, buf)
  const qcow = path.join(tmp, 'disk.qcow2')
  execFileSync('qemu-img', ['convert', '-q', '-f', 'raw', '-O', 'qcow2', raw, qcow])
  ids.qcow2 = await uploadImage('base-qcow2', 'qcow2', qcow)
  ids.raw = await uploadImage('base-raw', 'raw', raw)
})
t.teardown(async () => {
  images.close()
  rmSync(tmp, { recursive: true, force: true })
  await s.close()
})

t.test('downloads once, verifies, keeps a qcow2 base; concurrent boots share one download', async (t) => {
  const grpc = new GrpcImageSource(s.address, () => s.adminToken)
  t.teardown(() => grpc.close())
  let downloads = 0
  const counting: ImageSource = { download: (id) => (downloads++, grpc.download(id)) }
  const cache = new ImageCache(path.join(tmp, 'cache1'), counting)
  const paths = await Promise.all(Array.from({ length: 5 }, () => cache.ensure(ids.qcow2!)))
  t.equal(new Set(paths).size, 1)
  t.equal(downloads, 1, 'five concurrent requests, one download')
  await cache.ensure(ids.qcow2!)
  t.equal(downloads, 1, 'a cached image is not downloaded again')
  const info = qemuInfo(paths[0]!)
  t.equal(info.format, 'qcow2')
  t.equal(info['virtual-size'], 32 * 1024 * 1024)
  // A raw image is kept as qcow2 too, with the same content.
  const rawBase = await cache.ensure(ids.raw!)
  t.equal(qemuInfo(rawBase).format, 'qcow2', 'raw images are converted to a qcow2 base')
  t.equal(execFileSync('qemu-img', ['compare', '-q', paths[0]!, rawBase]).length, 0, 'identical content (qemu-img compare)')
  t.same(readdirSync(cache.dir).sort(), [`${ids.qcow2}.qcow2`, `${ids.raw}.qcow2`].sort(), 'no temporary files left')
})

t.test('a corrupted download is discarded', async (t) => {
  const grpc = new GrpcImageSource(s.address, () => s.adminToken)
  t.teardown(() => grpc.close())
  const corrupting: ImageSource = {
    async download(id) {
      const r = await grpc.download(id)
      async function* flip() {
        let first = true
        for await (const c of r.data) {
          const copy = Buffer.from(c)
          if (first) copy.writeUInt8(copy.readUInt8(copy.length - 1) ^ 0xff, copy.length - 1)
          first = false
          yield copy
        }
      }
      return { image: r.image, data: flip() }
    },
  }
  const cache = new ImageCache(path.join(tmp, 'cache2'), corrupting)
  await t.rejects(cache.ensure(ids.qcow2!), { name: 'FailedPrecondition', message: /arrived with MD5 .* but its checksum is/ })
  t.same(readdirSync(cache.dir), [], 'nothing kept')
  await t.rejects(cache.ensure('not-a-uuid'), { name: 'InvalidArgument' })
  const missing = new ImageCache(path.join(tmp, 'cache3'), grpc)
  await t.rejects(missing.ensure('00000000-0000-4000-8000-000000000000'), { name: 'NotFound' })
})

t.test('root disk: a qcow2 overlay on the cached base, grown to the flavor', async (t) => {
  const grpc = new GrpcImageSource(s.address, () => s.adminToken)
  t.teardown(() => grpc.close())
  const cache = new ImageCache(path.join(tmp, 'cache4'), grpc)
  const base = await cache.ensure(ids.qcow2!)
  const disk = path.join(tmp, 'server-1.qcow2')
  const { virtualSize } = await createRootDisk(disk, base, 1)
  t.equal(virtualSize, 1024 ** 3)
  const info = qemuInfo(disk)
  t.match(info, { format: 'qcow2', 'virtual-size': 1024 ** 3, 'backing-filename': base, 'backing-filename-format': 'qcow2' })
  t.equal(execFileSync('qemu-img', ['check', '-q', disk]).length, 0, 'qemu-img check: clean')
  t.equal((await readImage(disk, 0, 11, 'qcow2')).toString(), 'STRATO BASE', 'reads fall through to the base')
  await writeImage(disk, 0, Buffer.from('SERVER DATA'), 'qcow2')
  t.equal((await readImage(disk, 0, 11, 'qcow2')).toString(), 'SERVER DATA', 'writes land in the overlay')
  t.equal((await readImage(base, 0, 11, 'qcow2')).toString(), 'STRATO BASE', 'the base is untouched')
  const same = path.join(tmp, 'server-2.qcow2')
  t.equal((await createRootDisk(same, base, 0)).virtualSize, 32 * 1024 * 1024, 'disk 0: the image\'s own size')
  await t.rejects(createRootDisk(path.join(tmp, 'too-small.qcow2'), base, 0.01), { name: 'FailedPrecondition', message: /smaller than the image/ })
  t.notOk(existsSync(path.join(tmp, 'too-small.qcow2')), 'nothing created when refused')
})

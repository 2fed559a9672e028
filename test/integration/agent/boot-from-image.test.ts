/**
 * Integration: the agent's whole data path on a real host, without the
 * scheduler — a boot image uploaded to the real image service, pulled once
 * into the host's cache, two root disks as qcow2 overlays on it, both guests
 * booted under KVM (TCG without /dev/kvm) by the libvirt driver, the marker
 * read from their consoles, then destroyed with nothing left behind.
 * Needs root, libvirt-daemon-system, qemu-system-x86, qemu-utils.
 */
import { randomUUID } from 'node:crypto'
import { chmod, mkdtemp, readFile, rm } from 'node:fs/promises'
import { existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { Metadata, type ServiceError } from '@grpc/grpc-js'
import { LibvirtDriver } from '../../../agent/virt/libvirt/driver.js'
import { ImageCache, type ImageSource } from '../../../agent/disk/image-cache.js'
import { GrpcImageSource } from '../../../agent/disk/grpc-image-source.js'
import { createRootDisk, removeRootDisk } from '../../../agent/disk/root-disk.js'
import { imageInfo } from '../../../native/index.js'
import { bootDiskImage, bootMarker } from '../../fixtures/boot-sector.js'
import { ensureLibvirtd, virshDomainNames } from '../../helpers/libvirt.js'
import { startController } from '../../helpers/controller.js'
import { call, client } from '../../helpers/grpc.js'
import { ImagesClient, type Image } from '../../../proto/gen/strato/image/v1/image.js'

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root to drive qemu:///system')
} else {
  t.test('two servers boot from one uploaded image through the cache and overlays', async (t) => {
    await ensureLibvirtd()
    const driver = new LibvirtDriver()
    await driver.init()
    t.comment(`accelerator: ${driver.guestAccelerator}`)
    const s = await startController()
    const images = client(ImagesClient, s.address)
    const grpc = new GrpcImageSource(s.address, () => s.adminToken)
    const workdir = await mkdtemp(join(tmpdir(), 'strato-boot-'))
    await chmod(workdir, 0o755) // QEMU runs as libvirt-qemu
    const uuids = [randomUUID(), randomUUID()]
    t.teardown(async () => {
      for (const u of uuids) await driver.destroy(u).catch(() => undefined)
      await driver.close()
      grpc.close()
      images.close()
      await s.close()
      await rm(workdir, { recursive: true, force: true })
    })

    // The image service gets a bootable qcow2 (a 512-byte boot sector that prints a marker).
    const token = randomUUID()
    const file = await bootDiskImage({ line: bootMarker(token), path: join(workdir, 'upload.qcow2'), sizeMiB: 16 })
    const data = await readFile(file)
    const img = await call<Image>(images, 'createImage', { name: 'boot-sector', diskFormat: 'qcow2', containerFormat: 'bare', visibility: 'public' }, s.adminToken)
    const md = new Metadata()
    md.set('x-auth-token', s.adminToken)
    await new Promise((resolve, reject) => {
      const st = images.uploadImage(md, (err: ServiceError | null, res: Image) => (err ? reject(err) : resolve(res)))
      st.write({ imageId: img.id, size: data.length, data })
      st.end()
    })

    let downloads = 0
    const source: ImageSource = { download: (id) => (downloads++, grpc.download(id)) }
    const cache = new ImageCache(join(workdir, 'base'), source)
    await chmod(cache.dir, 0o755)

    await Promise.all(
      uuids.map(async (uuid, i) => {
        const base = await cache.ensure(img.id)
        const disk = join(workdir, `${uuid}.qcow2`)
        await createRootDisk(disk, base, 1)
        await driver.spawn({
          uuid,
          name: `strato-it-${process.pid}-img${i}-${uuid.slice(0, 8)}`,
          vcpus: 1,
          memoryMiB: 64,
          disks: [{ path: disk, format: 'qcow2', bus: 'virtio', device: 'vda' }],
          nics: [],
          consoleLogPath: join(workdir, `${uuid}.console.log`),
        })
      }),
    )
    t.equal(downloads, 1, 'two boots of one image: one download')
    const [info] = await imageInfo(join(workdir, `${uuids[0]}.qcow2`), 'qcow2')
    t.equal(info?.backingFile, cache.basePath(img.id), 'the root disk is an overlay on the cached base')
    t.equal(info?.virtualSize, 1024 ** 3, 'grown to the flavor\'s 1 GiB')

    for (const uuid of uuids) {
      let out = ''
      for (let i = 0; i < 100 && !out.includes(bootMarker(token)); i++) {
        out = await driver.getConsoleOutput(uuid)
        if (!out.includes(bootMarker(token))) await new Promise((r) => setTimeout(r, 100))
      }
      t.match(out, bootMarker(token), `guest ${uuid.slice(0, 8)} booted from the image: its console shows the marker`)
    }
    const names = await virshDomainNames()
    t.equal(names.filter((n) => n.startsWith(`strato-it-${process.pid}-img`)).length, 2, 'virsh lists both guests')

    for (const uuid of uuids) {
      await driver.destroy(uuid)
      await removeRootDisk(join(workdir, `${uuid}.qcow2`))
      t.notOk(existsSync(join(workdir, `${uuid}.qcow2`)))
    }
    t.equal((await virshDomainNames()).filter((n) => n.startsWith(`strato-it-${process.pid}-img`)).length, 0, 'no domain left')
    t.ok(await cache.has(img.id), 'the cached base stays for the next boot')
  })
}

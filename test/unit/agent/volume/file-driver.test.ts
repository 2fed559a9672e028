// The volume driver contract against the file driver on a temp directory, in qcow2 (copy-on-write
// snapshots through backing files) and in raw (copies); after every subtest each file of the
// backend is checked by qemu-img (the reference implementation): `qemu-img check` finds no
// corruption or leak, and `qemu-img info` agrees on the format and on every backing file, which
// must be a snapshot file in the same directory.
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import t from 'tap'
import { FileVolumeDriver } from '../../../../agent/volume/file.js'
import { createImage, readImage, writeImage, type ImageFormat } from '../../../../native/index.js'
import { volumeDriverContract } from './contract.js'

function qemuImg(args: string[]): string {
  return execFileSync('qemu-img', args, { encoding: 'utf8' })
}

for (const format of ['qcow2', 'raw'] as ImageFormat[]) {
  t.test(`${format} volumes`, async (t) => {
    const dir = mkdtempSync(path.join(tmpdir(), `strato-file-vol-${format}-`))
    const scratch = mkdtempSync(path.join(tmpdir(), 'strato-file-vol-img-'))
    t.teardown(() => {
      rmSync(dir, { recursive: true, force: true })
      rmSync(scratch, { recursive: true, force: true })
    })
    const driver = new FileVolumeDriver({ dir, host: 'node1', format })
    await driver.init()
    const fileOf = (id: string) => driver.volumePath(id)
    volumeDriverContract(t, {
      driver,
      write: (id, offset, data) => writeImage(fileOf(id), offset, data, format),
      read: (id, offset, length) => readImage(fileOf(id), offset, length, format),
      leftovers: async () => readdirSync(dir),
      image: async (marker, offset) => {
        // A cached base is qcow2, as the agent's image cache keeps every image.
        const file = path.join(scratch, `${marker}.qcow2`)
        await createImage(file, 'qcow2', { size: 64 * 1024 * 1024 })
        await writeImage(file, offset, Buffer.from(marker, 'latin1'), 'qcow2')
        return { path: file, format: 'qcow2' }
      },
      check: async () => {
        for (const f of readdirSync(dir)) {
          t.notOk(f.endsWith('.part'), `no work file is left: ${f}`)
          const file = path.join(dir, f)
          const info = JSON.parse(qemuImg(['info', '--output=json', '-f', format, file])) as { format: string; 'backing-filename'?: string }
          t.equal(info.format, format, `${f} is ${format} to qemu-img`)
          if (info['backing-filename']) t.match(info['backing-filename'], /^snapshot-[0-9a-f-]{36}_[0-9a-f-]{36}\.qcow2$/, `${f} is backed by a snapshot file beside it`)
          if (format === 'qcow2') {
            const check = JSON.parse(qemuImg(['check', '--output=json', '-f', 'qcow2', file])) as { corruptions?: number; leaks?: number }
            t.equal((check.corruptions ?? 0) + (check.leaks ?? 0), 0, `qemu-img check finds ${f} clean`)
          }
        }
      },
    })
  })
}

t.test('a volume too small for its image is refused, and leaves nothing', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'strato-file-vol-small-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const driver = new FileVolumeDriver({ dir: path.join(dir, 'vols'), host: 'node1' })
  await driver.init()
  const img = path.join(dir, 'big.qcow2')
  await createImage(img, 'qcow2', { size: 2 * 1024 ** 3 })
  await t.rejects(driver.create('00000000-0000-4000-8000-00000000000b', 1, { kind: 'image', path: img, format: 'qcow2' }), { name: 'InvalidArgument' })
  t.same(readdirSync(path.join(dir, 'vols')), [])
})

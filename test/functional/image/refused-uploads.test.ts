/**
 * Uploads the inspector refuses (issue 13: qcow2 files the engine and qemu
 * cannot open) leave the image queued, say why, and keep no data: the two
 * named cases plus one refused case per damaged qcow2 header field.
 */
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import t from 'tap'
import { Metadata, type ServiceError } from '@grpc/grpc-js'
import { startController, type TestController } from '../../helpers/controller.js'
import { call, client, failure, fieldOf, status, type Decoded } from '../../helpers/grpc.js'
import { ImagesClient, type Image } from '../../../proto/gen/strato/image/v1/image.js'
import { inspectImage } from '../../../native/index.js'
import { issue13Cases, qcow2Bases, qcow2Cases, type HeaderCase } from '../../fixtures/header-cases.js'

let s: TestController
let images: ImagesClient
let tmp: string

t.before(async () => {
  s = await startController()
  images = client(ImagesClient, s.address)
  tmp = mkdtempSync(path.join(tmpdir(), 'strato-refused-'))
})
t.teardown(async () => {
  images.close()
  rmSync(tmp, { recursive: true, force: true })
  await s.close()
})

function upload(imageId: string, data: Buffer): Promise<Decoded<Image>> {
  const md = new Metadata()
  md.set('x-auth-token', s.adminToken)
  return new Promise((resolve, reject) => {
    const st = images.uploadImage(md, (err: ServiceError | null, res: Image) => (err ? reject(err) : resolve(res as Decoded<Image>)))
    st.write({ imageId, size: data.length })
    for (let off = 0; off < data.length; off += 256 * 1024) st.write({ data: data.subarray(off, off + 256 * 1024) })
    st.end()
  })
}

/** The named cases, then the first refused case of each damaged field of a v3 image with data. */
async function refusedCases(): Promise<Array<HeaderCase & { reason: string }>> {
  const p = (n: string) => path.join(tmp, n)
  const out: Array<HeaderCase & { reason: string }> = []
  const fields = new Set<string>()
  const [, v3data] = qcow2Bases(p).find(([name]) => name === 'v3-data')!
  for (const c of [...issue13Cases(p), ...qcow2Cases('v3-data', v3data)]) {
    const field = c.name.replace(/=.*|cut to .*/, '')
    if (fields.has(field)) continue
    const f = p(`probe-${out.length}`)
    writeFileSync(f, c.bytes)
    const r = await inspectImage(f)
    if (r.safe || r.format !== 'qcow2') continue
    fields.add(field)
    out.push({ ...c, reason: r.reasons.split('; ')[0]! })
  }
  return out
}

t.test('refused qcow2 uploads stay queued, name the reason and keep no file', async (t) => {
  const cases = await refusedCases()
  t.ok(cases.length >= 20, `${cases.length} refused cases`)
  t.match(cases[0], { name: 'qcow2 cut to 100 bytes', reason: 'qcow2 header too short: 100 bytes, need 104' })
  t.match(cases[1], { name: 'qcow2 with l1_size 0x7fffffff', reason: /^L1 table too large: 2147483647 entries/ })
  const img = await call<Image>(images, 'createImage', { name: 'hostile', diskFormat: 'qcow2', containerFormat: 'bare' }, s.adminToken)
  const store = path.join(s.dataDir, 'images')
  for (const c of cases) {
    const e = await failure(upload(img.id, c.bytes))
    t.equal(e.code, status.INVALID_ARGUMENT, `${c.name}: INVALID_ARGUMENT`)
    t.ok(e.details.includes(`unsafe (${c.reason}`), `${c.name}: the error names the reason (${e.details})`)
    t.equal(fieldOf(e), 'data')
    const after = await call<Image>(images, 'getImage', { id: img.id }, s.adminToken)
    t.match(after, { status: 'queued', size: 0, checksum: '', virtualSize: 0 }, `${c.name}: still queued, nothing recorded`)
    t.same(readdirSync(store).filter((f) => f.startsWith(img.id)), [], `${c.name}: no file kept in the image store`)
  }
  t.comment(`${cases.length} refused uploads`)
})

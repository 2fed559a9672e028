// ImageCatalog's upload lease (controller/image/catalog.ts): a receiving upload touches its image as
// data comes; recoverAbandonedUploads puts back to queued only the saving images nobody touched for
// abandonedAfterMs (their controller died), removes their partial data and logs why; a saving image
// touched recently (an upload alive, maybe on another controller) and images in other statuses are
// left alone.
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { randomUUID } from 'node:crypto'
import t from 'tap'
import { openDatabase, type Db } from '../../../../controller/store/db.js'
import { ImageStore } from '../../../../controller/image/store.js'
import { ImageCatalog, IMAGE_SERVICE } from '../../../../controller/image/catalog.js'
import { QuotaEngine } from '../../../../controller/quota/quota.js'
import { testDatabaseUrl } from '../../../helpers/postgres.js'

const dir = mkdtempSync(path.join(tmpdir(), 'strato-abandoned-'))
let db: Db
let store: ImageStore
let catalog: ImageCatalog
const warned: Array<{ o: object; m: string }> = []
const log = { info: () => {}, warn: (o: object, m: string) => void warned.push({ o, m }) }

t.before(async () => {
  db = await openDatabase(await testDatabaseUrl())
  store = new ImageStore(path.join(dir, 'images'))
  catalog = new ImageCatalog(db, store, new QuotaEngine(db), async () => ({ format: 'raw', virtualSize: 3, safe: true, reasons: '' }), { idleTimeoutMs: 1_000 })
})
t.teardown(async () => {
  await db.destroy()
  rmSync(dir, { recursive: true, force: true })
})

async function image(status: string, updatedAt: Date): Promise<string> {
  const id = randomUUID()
  const at = updatedAt.toISOString()
  await db.insertInto('images').values({
    id, name: status, status, visibility: 'private', owner: 'p1', owner_domain_id: 'default', disk_format: 'raw', container_format: 'bare',
    checksum: '', os_hash_value: '', size: 0, virtual_size: 0, min_disk: 0, min_ram: 0, protected: 0, created_at: at, updated_at: at,
  }).execute()
  writeFileSync(`${store.path(id)}.partial`, 'half')
  return id
}
const statusOf = async (id: string) => (await db.selectFrom('images').select('status').where('id', '=', id).executeTakeFirstOrThrow()).status

t.test('only saving images untouched for abandonedAfterMs go back to queued, without their partial data', async (t) => {
  t.equal(catalog.abandonedAfterMs, 2_250, 'twice the idle limit and one touch (a quarter of it)')
  const now = Date.now()
  const long = new Date(now - catalog.abandonedAfterMs - 1_000)
  const abandoned = await image('saving', long)
  const alive = await image('saving', new Date(now - catalog.abandonedAfterMs + 1_000))
  const queued = await image('queued', long)

  t.same(await catalog.recoverAbandonedUploads(log, now), [abandoned])
  t.equal(await statusOf(abandoned), 'queued', 'the abandoned upload\'s image takes a new upload')
  t.notOk(existsSync(`${store.path(abandoned)}.partial`), 'its partial data is gone')
  t.match(warned, [{ o: { image: abandoned, project: 'p1' }, m: /image upload abandoned: nothing received for 2 s/ }], 'and the reason is logged')
  t.equal(await statusOf(alive), 'saving', 'a saving image touched recently is left to its upload')
  t.ok(existsSync(`${store.path(alive)}.partial`), 'with its partial data')
  t.equal(await statusOf(queued), 'queued')
  t.same(await catalog.recoverAbandonedUploads(log, now), [], 'a second sweep finds nothing more')
})

t.test('a receiving upload touches its image: a sweep in the middle leaves it alone', async (t) => {
  const id = await image('queued', new Date(Date.now() - 3_600_000))
  let seen = ''
  let recovered: string[] = []
  const updatedAt = async () => db.selectFrom('images').select(['status', 'updated_at']).where('id', '=', id).executeTakeFirstOrThrow()
  async function* chunks(): AsyncIterable<Buffer[]> {
    yield [Buffer.from('a')]
    const claimed = await updatedAt() // as the upload began (saving)
    // Slower than a touch: the image's updated_at moves on with the next chunk.
    await new Promise((r) => setTimeout(r, 300))
    yield [Buffer.from('b')]
    const row = await updatedAt()
    seen = row.status
    // A sweep (maybe on another controller) abandonedAfterMs after the upload began: untouched, it would be taken.
    recovered = await catalog.recoverAbandonedUploads(log, Date.parse(claimed.updated_at) + catalog.abandonedAfterMs + 1)
    yield [Buffer.from('c')]
  }
  const done = await catalog.upload(id, chunks(), IMAGE_SERVICE)
  t.equal(seen, 'saving')
  t.notOk(recovered.includes(id), 'the touched upload is not taken as abandoned')
  t.match(done, { status: 'active', size: 3 }, 'and it finishes')
})

// ParallelHasher: what its worker threads compute equals node:crypto's digests,
// whatever the chunk sizes against how much may wait per worker.
import { createHash, randomBytes } from 'node:crypto'
import t from 'tap'
import { ParallelHasher } from '../../../../controller/image/hasher.js'

const expected = (chunks: Buffer[]) => ({
  md5: createHash('md5').update(Buffer.concat(chunks)).digest('hex'),
  sha512: createHash('sha512').update(Buffer.concat(chunks)).digest('hex'),
})

t.test('digests match node:crypto for chunks smaller than, equal to and larger than what may wait per worker', async (t) => {
  for (const inFlight of [1000, 4096, 1 << 20]) {
    const chunks = [0, 1, 999, 1000, 1001, 4096, 5000, 70_000, 3].map((n) => randomBytes(n))
    const h = new ParallelHasher(['md5', 'sha512'], inFlight)
    for (const c of chunks) await h.update(c)
    t.same(await h.digest(), expected(chunks), `${inFlight} bytes in flight`)
  }
})

t.test('nothing hashed: the digests of the empty input', async (t) => {
  const h = new ParallelHasher(['md5', 'sha512'])
  t.same(await h.digest(), expected([]))
})

t.test('200 MiB with little in flight, as an upload does', async (t) => {
  const block = randomBytes(1 << 20)
  const h = new ParallelHasher(['md5', 'sha512'], 4 << 20)
  const md5 = createHash('md5')
  const sha = createHash('sha512')
  for (let i = 0; i < 200; i++) {
    const c = block.subarray(i % 7, (1 << 20) - (i % 5))
    await h.update(c)
    md5.update(c)
    sha.update(c)
  }
  t.same(await h.digest(), { md5: md5.digest('hex'), sha512: sha.digest('hex') })
})

t.test('closed without a digest (an aborted upload): the workers end', async (t) => {
  const h = new ParallelHasher(['md5'], 1024)
  await h.update(randomBytes(100))
  await h.close()
  t.pass('closed')
})

t.test('an unknown algorithm fails the upload instead of hanging it', async (t) => {
  const h = new ParallelHasher(['md5', 'nope'], 1024)
  await t.rejects(async () => {
    for (let i = 0; i < 100; i++) await h.update(randomBytes(512))
    await h.digest()
  })
  await h.close()
})

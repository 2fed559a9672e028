// ImageStore.receive (controller/image/store.ts): received data is copied into
// batch buffers taken whole from the shared upload budget. What is stored is
// exactly what was sent, with its digests, however it was split; the budget is
// never exceeded, even by concurrent uploads sharing one buffer's worth; the
// caller's buffers are not kept; a failed upload gives its buffers back.
import { createHash, randomBytes } from 'node:crypto'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import t from 'tap'
import { BatchBuffers, ByteBudget, ImageStore } from '../../../../controller/image/store.js'

const MiB = 1024 * 1024
const dir = mkdtempSync(path.join(tmpdir(), 'strato-store-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))

/** The data in groups of uneven pieces, as messages arrive (the last piece of a group is reused by the sender afterwards). */
async function* groups(data: Buffer, scribble = false): AsyncIterable<Buffer[]> {
  const sizes = [1, 16 * 1024 - 3, 65536, 700_000, 5, 3 * MiB + 11]
  for (let off = 0, i = 0; off < data.length; i++) {
    const pieces: Buffer[] = []
    for (let k = 0; k < 3 && off < data.length; k++, i++) {
      const n = Math.min(sizes[i % sizes.length]!, data.length - off)
      pieces.push(Buffer.from(data.subarray(off, off + n)))
      off += n
    }
    yield pieces
    // A sender that reuses its buffers once a group is taken: the store must have copied them.
    if (scribble) for (const p of pieces) p.fill(0xee)
    await new Promise((r) => setImmediate(r))
  }
}

/** A budget that remembers the most it ever had taken. */
class PeakBudget extends ByteBudget {
  peak = 0
  override tryTake(n: number): boolean {
    const ok = super.tryTake(n)
    this.note()
    return ok
  }
  override release(n: number): void {
    super.release(n)
    this.note()
  }
  private note(): void {
    this.peak = Math.max(this.peak, (this as unknown as { used: number }).used)
  }
}

const md5 = (b: Buffer) => createHash('md5').update(b).digest('hex')
const sha512 = (b: Buffer) => createHash('sha512').update(b).digest('hex')

t.test('stores exactly what was sent, with its digests, without keeping the sender\'s buffers', async (t) => {
  const store = new ImageStore(path.join(dir, 'one'))
  const data = randomBytes(19 * MiB + 123)
  const got = await store.receive('a', groups(data, true), () => undefined)
  t.equal(got.size, data.length)
  t.equal(got.md5, md5(data))
  t.equal(got.sha512, sha512(data))
  t.ok(readFileSync(got.partialPath).equals(data), 'the file holds the data')
})

t.test('concurrent uploads share a budget of one batch buffer: all complete, the budget is never exceeded', async (t) => {
  const budget = new PeakBudget(8 * MiB)
  const store = new ImageStore(path.join(dir, 'shared'), budget)
  const datas = [randomBytes(17 * MiB), randomBytes(9 * MiB + 1), randomBytes(3 * MiB)]
  const got = await Promise.all(datas.map((d, i) => store.receive(`img-${i}`, groups(d), () => undefined)))
  got.forEach((g, i) => {
    t.equal(g.md5, md5(datas[i]!), `upload ${i}: its digest`)
    t.ok(readFileSync(g.partialPath).equals(datas[i]!), `upload ${i}: its data`)
  })
  t.equal(budget.peak, 8 * MiB, 'never more than the budget held')
  t.ok(budget.idle, 'everything given back')
})

t.test('a failed upload gives its buffers back and removes its file', async (t) => {
  const budget = new ByteBudget(24 * MiB)
  const store = new ImageStore(path.join(dir, 'fail'), budget)
  const data = randomBytes(20 * MiB)
  await t.rejects(store.receive('x', groups(data), (total) => {
    if (total > 12 * MiB) throw new Error('over quota')
  }), /over quota/)
  t.ok(budget.idle, 'the budget is whole again')
  t.notOk(existsSync(path.join(dir, 'fail', 'x.partial')), 'no partial file left')
  const ok = await store.receive('y', groups(data), () => undefined)
  t.equal(ok.md5, md5(data), 'the next upload works')
})

t.test('batch buffers are reused while held, dropped when none is', async (t) => {
  const budget = new ByteBudget(2 * MiB)
  const bufs = new BatchBuffers(budget, MiB)
  const a = bufs.tryTake()!
  const b = bufs.tryTake()!
  t.ok(a && b)
  t.equal(bufs.tryTake(), undefined, 'the budget is spent')
  const waiting = bufs.take()
  bufs.give(a)
  t.equal(await waiting, a, 'the waiter gets the buffer given back')
  bufs.give(b)
  bufs.give(a)
  t.ok(budget.idle)
  t.not(bufs.tryTake(), a, 'none kept once all were given back')
})

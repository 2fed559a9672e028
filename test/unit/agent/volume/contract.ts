/**
 * The VolumeDriver contract as tests (as `test/unit/agent/virt/contract.ts`
 * is for virt drivers). `volumeDriverContract(tap, harness)` registers one
 * subtest per rule of `agent/volume/driver.ts`; it runs against the fake
 * (`fake-driver.test.ts`) and the file driver on a temp directory, in qcow2
 * and raw (`file-driver.test.ts`, which also checks every file with
 * `qemu-img info/check`). The harness says how to write and read a volume's
 * bytes (what a guest would do) and, optionally, how to check the backend's
 * files independently.
 */
import { randomUUID } from 'node:crypto'
import type { Test } from 'tap'
import { InvalidArgument, NotFound, StratoError } from '../../../../proto/errors.js'
import { GiB, type VolumeDriver, type VolumeExport } from '../../../../agent/volume/driver.js'

type NbdExportInfo = Extract<VolumeExport, { kind: 'nbd' }>

export interface VolumeContractHarness {
  /** An initialised driver. */
  driver: VolumeDriver
  write(volumeId: string, offset: number, data: Buffer): Promise<void>
  read(volumeId: string, offset: number, length: number): Promise<Buffer>
  /** Independent checks of the backend (qemu-img check on every file, …); throws what is wrong. */
  check?(): Promise<void>
  /** What the backend holds on disk (file names), to prove deletes leave nothing. */
  leftovers?(): Promise<string[]>
  /** A local image file a volume can be made from, holding `marker` at `offset`. */
  image(marker: string, offset: number): Promise<{ path: string; format: 'qcow2' | 'raw' }>
  /**
   * How another host (`host`, the one the export is for) reads and writes a
   * network export (as its QEMU would), whether one is served, and how its
   * server dies (a crash), for the network-export rules.
   */
  network: {
    read(e: NbdExportInfo, host: string, offset: number, length: number): Promise<Buffer>
    write(e: NbdExportInfo, host: string, offset: number, data: Buffer): Promise<void>
    served(e: NbdExportInfo, host: string): Promise<boolean>
    /** Kills the export's server, then does what an agent restart does (init). */
    crash(volumeId: string, host: string): Promise<void>
  }
}

type Ctor = abstract new (...args: never[]) => StratoError

async function rejects(t: Test, p: Promise<unknown>, cls: Ctor, what: string): Promise<void> {
  try {
    await p
    t.fail(`${what}: resolved, expected ${cls.name}`)
  } catch (err) {
    t.type(err, cls, what)
  }
}

const text = (b: Buffer) => b.toString('latin1').replace(/\0+$/, '')

export function volumeDriverContract(t: Test, h: VolumeContractHarness): void {
  const d = h.driver
  const at = 1024 * 1024 // 1 MiB in: past any header of a raw or qcow2 guest view

  t.afterEach(async () => {
    await h.check?.()
  })

  t.test('a blank volume has its size, reads as zeros, and create is idempotent', async (t) => {
    const id = randomUUID()
    const v = await d.create(id, 2, { kind: 'blank' })
    t.match(v, { id, sizeGb: 2 })
    t.same(await d.info(id), v, 'info reports it')
    t.same(await h.read(id, at, 16), Buffer.alloc(16), 'zeros')
    await h.write(id, at, Buffer.from('kept'))
    t.same(await d.create(id, 2, { kind: 'blank' }), v, 'created again: the same volume')
    t.equal(text(await h.read(id, at, 16)), 'kept', 'and its data untouched')
    await d.delete(id)
    t.equal(await d.info(id), undefined, 'deleted')
    await d.delete(id)
    t.pass('deleting a missing volume succeeds')
  })

  t.test('bad ids and sizes are refused', async (t) => {
    await rejects(t, d.create('not-a-uuid', 1, { kind: 'blank' }), InvalidArgument, 'an id that is not a uuid')
    await rejects(t, d.create(randomUUID(), 0, { kind: 'blank' }), InvalidArgument, 'size 0')
    await rejects(t, d.extend(randomUUID(), 2), NotFound, 'extending a missing volume')
    await rejects(t, d.create(randomUUID(), 1, { kind: 'snapshot', snapshotId: randomUUID() }), NotFound, 'a missing snapshot as source')
    await rejects(t, d.clone(randomUUID(), randomUUID(), 1), NotFound, 'a missing volume as source')
  })

  t.test('extend grows a volume and keeps its data; shrinking is refused', async (t) => {
    const id = randomUUID()
    await d.create(id, 1, { kind: 'blank' })
    await h.write(id, at, Buffer.from('before'))
    t.match(await d.extend(id, 3), { sizeGb: 3 })
    t.match(await d.extend(id, 3), { sizeGb: 3 }, 'extending to its size again succeeds')
    t.equal(text(await h.read(id, at, 16)), 'before')
    await h.write(id, 2 * GiB + at, Buffer.from('beyond'))
    t.equal(text(await h.read(id, 2 * GiB + at, 16)), 'beyond', 'the new space is usable')
    await rejects(t, d.extend(id, 2), InvalidArgument, 'shrinking')
    await d.delete(id)
  })

  t.test('a snapshot keeps the data of its moment; a volume from it starts with that data', async (t) => {
    const vol = randomUUID()
    const snap = randomUUID()
    await d.create(vol, 1, { kind: 'blank' })
    await h.write(vol, at, Buffer.from('moment one'))
    t.match(await d.createSnapshot(vol, snap), { id: snap, volumeId: vol, sizeGb: 1 })
    t.match(await d.createSnapshot(vol, snap), { id: snap }, 'taken again: the same snapshot')
    await h.write(vol, at, Buffer.from('moment two'))
    t.equal(text(await h.read(vol, at, 16)), 'moment two', 'the volume writes on')
    const restored = randomUUID()
    t.match(await d.create(restored, 2, { kind: 'snapshot', snapshotId: snap }), { sizeGb: 2 })
    t.equal(text(await h.read(restored, at, 16)), 'moment one', 'the new volume has the snapshot\'s data')
    await h.write(restored, at, Buffer.from('restored!!'))
    t.equal(text(await h.read(vol, at, 16)), 'moment two', 'writes to it do not reach the source')
    await rejects(t, d.create(randomUUID(), 1, { kind: 'snapshot', snapshotId: randomUUID() }), NotFound, 'an unknown snapshot')
    await d.delete(restored)
    await d.delete(vol)
    t.equal(await d.snapshotInfo(snap), undefined, 'deleting a volume deletes its snapshots')
  })

  t.test('deleting a snapshot others were made from loses no data', async (t) => {
    const vol = randomUUID()
    const [s1, s2] = [randomUUID(), randomUUID()]
    await d.create(vol, 1, { kind: 'blank' })
    await h.write(vol, at, Buffer.from('one'))
    await d.createSnapshot(vol, s1)
    await h.write(vol, at + 4096, Buffer.from('two'))
    await d.createSnapshot(vol, s2)
    await h.write(vol, at + 8192, Buffer.from('three'))
    const child = randomUUID()
    await d.create(child, 1, { kind: 'snapshot', snapshotId: s1 })
    await d.deleteSnapshot(vol, s1)
    await d.deleteSnapshot(vol, s1)
    t.pass('deleting a deleted snapshot succeeds')
    t.equal(await d.snapshotInfo(s1), undefined)
    t.equal(text(await h.read(child, at, 8)), 'one', 'the volume made from it keeps its data')
    t.same([text(await h.read(vol, at, 8)), text(await h.read(vol, at + 4096, 8)), text(await h.read(vol, at + 8192, 8))], ['one', 'two', 'three'], 'so does the volume it was taken of')
    const fromS2 = randomUUID()
    await d.create(fromS2, 1, { kind: 'snapshot', snapshotId: s2 })
    t.same([text(await h.read(fromS2, at, 8)), text(await h.read(fromS2, at + 4096, 8)), text(await h.read(fromS2, at + 8192, 8))], ['one', 'two', ''], 'and the later snapshot')
    await d.delete(vol)
    t.equal(await d.snapshotInfo(s2), undefined, 'the volume took its last snapshot with it')
    t.equal(text(await h.read(fromS2, at + 4096, 8)), 'two', 'a volume made from that snapshot keeps its data')
    for (const id of [child, fromS2]) await d.delete(id)
    if (h.leftovers) t.same(await h.leftovers(), [], 'nothing is left on the backend')
  })

  t.test('a clone is an independent copy', async (t) => {
    const src = randomUUID()
    const clone = randomUUID()
    await d.create(src, 1, { kind: 'blank' })
    await h.write(src, at, Buffer.from('original'))
    t.match(await d.clone(clone, src, 2), { sizeGb: 2 })
    await h.write(src, at, Buffer.from('modified'))
    t.equal(text(await h.read(clone, at, 16)), 'original')
    await d.delete(src)
    t.equal(text(await h.read(clone, at, 16)), 'original', 'the clone outlives its source')
    await rejects(t, d.clone(randomUUID(), clone, 1), InvalidArgument, 'a clone smaller than its source')
    await d.delete(clone)
  })

  t.test('a volume from an image has the image\'s data', async (t) => {
    const marker = `image-${randomUUID().slice(0, 8)}`
    const img = await h.image(marker, at)
    const id = randomUUID()
    await d.create(id, 1, { kind: 'image', ...img })
    t.equal(text(await h.read(id, at, marker.length + 4)), marker)
    await d.delete(id)
  })

  t.test('exports: to the volume\'s own host; unexport is idempotent', async (t) => {
    const id = randomUUID()
    await d.create(id, 1, { kind: 'blank' })
    const e = await d.export(id, 'node1')
    t.equal(e.kind, 'file')
    await d.unexport(id, 'node1')
    await d.unexport(id, 'node1')
    await rejects(t, d.export(randomUUID(), 'node1'), NotFound, 'exporting a missing volume')
    await d.delete(id)
  })

  t.test('network exports: to another host, its data both ways, one per host, re-served after a crash, ended by unexport and by delete', async (t) => {
    const n = h.network
    const id = randomUUID()
    await d.create(id, 1, { kind: 'blank' })
    await h.write(id, at, Buffer.from('from the volume host'))
    const e = await d.export(id, 'node2')
    if (e.kind !== 'nbd') throw new Error(`export to another host is ${e.kind}, not nbd`)
    t.equal(e.format, 'raw', 'an export serves the guest\'s bytes')
    t.ok(e.port > 0 && e.address && e.name, 'an address, port and name to dial')
    t.equal(text(await n.read(e, 'node2', at, 32)), 'from the volume host', 'the other host reads the volume')
    await n.write(e, 'node2', at + 4096, Buffer.from('from the other host'))
    t.same(await d.export(id, 'node2'), e, 'exported again: the same export')
    const forced = await d.export(id, 'node1', { network: true })
    t.equal(forced.kind, 'nbd', 'the volume\'s own host gets a network export when it asks for one')
    t.same((await d.exports()).filter((x) => x.volumeId === id).map((x) => x.host).sort(), ['node1', 'node2'], 'both exports listed')
    await d.unexport(id, 'node1')
    await n.crash(id, 'node2')
    t.ok(await n.served(e, 'node2'), 'an export whose server died is served again')
    t.same(await d.export(id, 'node2'), e, 'where it was')
    t.equal(text(await n.read(e, 'node2', at + 4096, 32)), 'from the other host', 'and what was written through it is there')
    await d.unexport(id, 'node2')
    await d.unexport(id, 'node2')
    t.notOk(await n.served(e, 'node2'), 'unexported: no longer served')
    t.same((await d.exports()).filter((x) => x.volumeId === id), [], 'and not listed')
    t.equal(text(await h.read(id, at + 4096, 32)), 'from the other host', 'the volume keeps what the other host wrote')
    const e2 = await d.export(id, 'node3')
    if (e2.kind !== 'nbd') throw new Error('not nbd')
    await d.delete(id)
    t.notOk(await n.served(e2, 'node3'), 'deleting the volume ends its exports')
    t.same(await d.exports(), [], 'none listed')
    await rejects(t, d.export(id, 'node2'), NotFound, 'exporting a deleted volume')
  })

  t.test('stats report the capacity', async (t) => {
    const s = await d.stats()
    t.ok(s.totalGb > 0, 'total')
    t.ok(s.freeGb >= 0 && s.freeGb <= s.totalGb, 'free is within total')
    t.ok(s.backendName, 'a backend name')
  })
}

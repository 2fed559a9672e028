// The volume driver contract against the in-memory fake, and its failure injection.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import t from 'tap'
import pino from 'pino'
import { FakeVolumeDriver } from '../../../../agent/volume/fake.js'
import { VolumeManager } from '../../../../agent/volume/manager.js'
import type { VolumeWork } from '../../../../proto/volume-work.js'
import { ResourceExhausted } from '../../../../proto/errors.js'
import { volumeDriverContract } from './contract.js'

const driver = new FakeVolumeDriver({ totalGb: 100 })
const dir = mkdtempSync(path.join(tmpdir(), 'strato-fake-vol-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))

t.test('contract', async (t) => {
  volumeDriverContract(t, {
    driver,
    write: async (id, offset, data) => driver.write(id, offset, data),
    read: async (id, offset, length) => driver.read(id, offset, length),
    leftovers: async () => [...driver.volumes.keys(), ...driver.snapshots.keys()],
    image: async (marker, offset) => {
      const file = path.join(dir, `${marker}.raw`)
      const bytes = Buffer.alloc(offset + 4096)
      bytes.write(marker, offset, 'latin1')
      writeFileSync(file, bytes)
      return { path: file, format: 'raw' }
    },
    // The fake's exports are records: what another host reads is the volume's data.
    network: {
      read: async (e, _host, offset, length) => driver.read(e.name.slice('volume-'.length), offset, length),
      write: async (e, _host, offset, data) => driver.write(e.name.slice('volume-'.length), offset, data),
      served: async (e) => (await driver.exports()).some((x) => `volume-${x.volumeId}` === e.name),
      crash: async () => driver.init(),
    },
  })
})

t.test('failNext fails the next call once, with the code asked for', async (t) => {
  driver.failNext('create', 'RESOURCE_EXHAUSTED', 'full')
  await t.rejects(driver.create('00000000-0000-4000-8000-00000000000a', 1, { kind: 'blank' }), ResourceExhausted)
  await driver.create('00000000-0000-4000-8000-00000000000a', 1, { kind: 'blank' })
  t.ok(await driver.info('00000000-0000-4000-8000-00000000000a'))
})

t.test("the volume role takes a snapshot holding its servers' locks (none starts between finding its guest stopped and the file becoming the snapshot)", async (t) => {
  const backend = new FakeVolumeDriver({ totalGb: 10 })
  const held: string[][] = []
  let inside = false
  const snapshotted: boolean[] = []
  const createSnapshot = backend.createSnapshot.bind(backend)
  backend.createSnapshot = async (...a) => {
    snapshotted.push(inside)
    return createSnapshot(...a)
  }
  const manager = new VolumeManager(backend, {
    imageOf: async () => '', host: 'node1', log: pino({ level: 'silent' }),
    holdingGuests: async (uuids, fn) => {
      held.push(uuids)
      inside = true
      try {
        return await fn()
      } finally {
        inside = false
      }
    },
  })
  const [V1, S1, S2] = ['5a1e0c2e-8f0b-4c1e-9a59-0d5f4f6a0b11', '5a1e0c2e-8f0b-4c1e-9a59-0d5f4f6a0b12', '5a1e0c2e-8f0b-4c1e-9a59-0d5f4f6a0b13']
  const work = (op: VolumeWork['op'], snapshotId: string, attached: VolumeWork['attached']): VolumeWork => ({ op, volumeId: V1, snapshotId, sizeGb: 1, sourceVolid: '', sourceSnapshotId: '', imageId: '', attached })
  await manager.run(work('create', '', []), 'c1')
  await manager.run(work('create_snapshot', S1, [{ instanceUuid: 'i1', device: 'vdb', volumeId: V1 }]), 'c2')
  t.same(held, [['i1']], "its server's lock")
  t.same(snapshotted, [true], 'the snapshot taken while it is held')
  await manager.run(work('create_snapshot', S2, []), 'c3')
  t.same(held, [['i1']], 'a detached volume holds no server')
  t.same(snapshotted, [true, false])
})

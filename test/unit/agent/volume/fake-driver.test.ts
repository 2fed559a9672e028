// The volume driver contract against the in-memory fake, and its failure injection.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import t from 'tap'
import { FakeVolumeDriver } from '../../../../agent/volume/fake.js'
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

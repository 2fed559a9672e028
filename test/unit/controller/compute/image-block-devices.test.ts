// The block device mappings an image defines (a volume-backed snapshot's block_device_mapping with
// bdm_v2): read into a create request's mappings, none without bdm_v2, and a broken property refused
// naming the image.
import t from 'tap'
import { InvalidArgument } from '../../../../proto/errors.js'
import { imageBlockDevices } from '../../../../controller/compute/server-create-bdm.js'

const id = '0b7c7f0e-1d2a-4f3b-8c9d-112233445566'
const snap = '6f1c0c2e-8f0b-4c1e-9a59-0d5f4f6a0b11'

t.test('Nova\'s bdm_v2 mappings become a request\'s', async (t) => {
  const mapping = [{ source_type: 'snapshot', destination_type: 'volume', snapshot_id: snap, volume_id: null, volume_size: 2, boot_index: 0, device_name: '/dev/vda', delete_on_termination: true, guest_format: null }]
  t.same(imageBlockDevices({ id, properties: { bdm_v2: 'True', block_device_mapping: JSON.stringify(mapping) } }), [
    { sourceType: 'snapshot', destinationType: 'volume', uuid: snap, bootIndex: 0, volumeSize: 2, deleteOnTermination: true, deviceName: '/dev/vda' },
  ])
  t.equal(imageBlockDevices({ id, properties: {} }), undefined, 'an ordinary image defines none')
  t.equal(imageBlockDevices({ id, properties: { block_device_mapping: JSON.stringify(mapping) } }), undefined, 'legacy mappings (no bdm_v2) are not read')
})

t.test('a broken property is refused, naming the image', async (t) => {
  for (const bad of ['not json', '{}', '[]', '[1]']) {
    t.throws(() => imageBlockDevices({ id, properties: { bdm_v2: 'true', block_device_mapping: bad } }), InvalidArgument, bad)
  }
  t.throws(() => imageBlockDevices({ id, properties: { bdm_v2: 'true', block_device_mapping: 'x' } }), { message: new RegExp(`image ${id}: its block_device_mapping property is not JSON`) })
})

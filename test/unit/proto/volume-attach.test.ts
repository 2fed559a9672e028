// The attachment casts' wire vocabulary: cast ids that name the attachment, received work with
// every field filled in, and the serial a volume's disk shows the guest.
import t from 'tap'
import { attachCastId, parseAttachCastId, volumeAttachOf, volumeSerial } from '../../../proto/volume-attach.js'
import { parseCastId } from '../../../proto/subjects.js'
import { parseVolumeCastId } from '../../../proto/volume-work.js'

const id = '2f1c6a0e-8d55-4c3e-9a53-1d2f3e4a5b6c'

t.test('cast ids: attach_volume, detach_volume and extend_volume name the attachment, and no other table reads them', async (t) => {
  for (const op of ['attach_volume', 'detach_volume', 'extend_volume'] as const) {
    const castId = attachCastId(op, id, 'ab12cd34')
    t.equal(castId, `${op}.${id}.ab12cd34`)
    t.same(parseAttachCastId(castId), { op, attachmentId: id })
    t.equal(parseCastId(castId), undefined, 'not a server action')
    t.equal(parseVolumeCastId(castId), undefined, 'not volume work')
  }
  t.equal(parseAttachCastId(`stop.${id}.x`), undefined)
  t.equal(parseAttachCastId(`volume_extend.${id}.x`), undefined)
})

t.test('received work: missing fields become empty, an unknown op is refused', async (t) => {
  t.same(volumeAttachOf({ op: 'attach_volume', volumeId: id }), { op: 'attach_volume', attachmentId: '', instanceUuid: '', volumeId: id, device: '', volumeHost: '', sizeGb: 0, multiattach: false }, 'a cast of an older controller: not multiattach (attached as before)')
  t.same(volumeAttachOf({ op: 'attach_volume', volumeId: id, multiattach: true }).multiattach, true, 'a multiattach volume says so')
  t.same(volumeAttachOf({ op: 'extend_volume', volumeId: id, sizeGb: 3 }), { op: 'extend_volume', attachmentId: '', instanceUuid: '', volumeId: id, device: '', volumeHost: '', sizeGb: 3, multiattach: false }, 'extend_volume carries the size')
  t.throws(() => volumeAttachOf({ op: 'resize' }), /unknown attachment op 'resize'/)
})

t.test('the serial is the volume id cut to the 20 characters virtio-blk keeps', async (t) => {
  t.equal(volumeSerial(id), '2f1c6a0e-8d55-4c3e-9')
})

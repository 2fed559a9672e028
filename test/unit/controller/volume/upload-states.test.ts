// Uploads of volumes to images in the state table and on the wire: allowed from Cinder's statuses
// only (in-use with force), `uploading` meanwhile, back to available either way (results.ts makes
// it in-use when attached); the cast id names the image, and is no other op's.
import t from 'tap'
import { FailedPrecondition } from '../../../../proto/errors.js'
import { VOLUME_STATUSES, beginVolumeAction, volumeOutcome, type VolumeAction } from '../../../../controller/volume/states.js'
import { parseVolumeCastId, uploadCastId, uploadImageOf, volumeCastId } from '../../../../proto/volume-work.js'

const allowedFrom = (action: VolumeAction) => VOLUME_STATUSES.filter((s) => {
  try {
    beginVolumeAction(action, { id: 'v1', status: s })
    return true
  } catch {
    return false
  }
})

t.test('upload is allowed from available, forced also from in-use, and makes the volume uploading', async (t) => {
  t.same(allowedFrom('upload'), ['available'])
  t.same(allowedFrom('upload_force'), ['available', 'in-use'])
  t.equal(beginVolumeAction('upload_force', { id: 'v1', status: 'in-use' }), 'uploading')
  t.throws(() => beginVolumeAction('upload', { id: 'v1', status: 'in-use' }), new FailedPrecondition('cannot upload volume v1 while its status is in-use; upload needs status available'))
  t.same(volumeOutcome('upload_image', true), { while: 'uploading', to: 'available' })
  t.same(volumeOutcome('upload_image', false), { while: 'uploading', to: 'available' }, 'a failed upload leaves the volume usable')
})

t.test('an upload cast id names the volume and the image', async (t) => {
  const vol = '6f1c0c2e-8f0b-4c1e-9a59-0d5f4f6a0b11'
  const img = '0b7c7f0e-1d2a-4f3b-8c9d-112233445566'
  const id = uploadCastId(vol, img)
  t.same(parseVolumeCastId(id), { op: 'upload_image', id: vol })
  t.equal(uploadImageOf(id), img)
  t.equal(uploadImageOf(volumeCastId('create', vol, 'abcd')), undefined, 'other ops name no image')
  t.equal(uploadImageOf(`volume_upload_image.${vol}`), undefined)
})

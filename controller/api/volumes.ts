/** gRPC adapters for strato.volume.v1: Volumes, Snapshots, VolumeTypes, Attachments. */
import type { UntypedServiceImplementation } from '@grpc/grpc-js'
import {
  Attachment, AttachmentsService, ListAttachmentsResponse, ListSnapshotsResponse, ListVolumesResponse, ListVolumeTypesResponse, Snapshot, SnapshotsService, UploadVolumeToImageResponse, Volume, VolumesService, VolumeType, VolumeTypesService,
} from '../../proto/gen/strato/volume/v1/volume.js'
import type { VolumeCatalog } from '../volume/volumes.js'
import type { SnapshotCatalog } from '../volume/snapshots.js'
import type { VolumeTypeCatalog } from '../volume/types.js'
import type { AttachmentCatalog, AttachmentView } from '../volume/attachments.js'
import type { VolumeUploads } from '../volume/uploads.js'
import type { VolumeCaller, VolumeView } from '../volume/model.js'
import { implement, type CallContext, type RpcDeps } from './rpc.js'

function caller(c: CallContext): VolumeCaller {
  const a = c.auth!
  return { userId: a.userId, projectId: a.projectId, domainId: a.actingDomainId, isAdmin: a.isCloudAdmin, canWrite: a.roles.has('member'), requestId: c.requestId }
}

const toVolume = ({ attachments, ...v }: VolumeView): Volume => Volume.fromPartial({ ...v, attachments: attachments.map(({ attachedAt, ...a }) => ({ ...a, ...(attachedAt ? { attachedAt } : {}) })) })
const toAttachment = ({ attachedAt, ...a }: AttachmentView): Attachment => Attachment.fromPartial({ ...a, ...(attachedAt ? { attachedAt } : {}) })

export interface VolumeServiceDeps {
  volumes: VolumeCatalog
  snapshots: SnapshotCatalog
  types: VolumeTypeCatalog
  attachments: AttachmentCatalog
  uploads: VolumeUploads
}

export function volumeServices(d: VolumeServiceDeps, rpc: RpcDeps): Array<[object, UntypedServiceImplementation]> {
  return [
    [VolumesService, implement(VolumesService, {
      createVolume: async (req, c) => toVolume(await d.volumes.create(req, caller(c))),
      getVolume: async (req, c) => toVolume(await d.volumes.get(req.id, caller(c))),
      listVolumes: async (req, c) => ListVolumesResponse.fromPartial({ volumes: (await d.volumes.list(req, caller(c))).map(toVolume) }),
      updateVolume: async (req, c) => toVolume(await d.volumes.update(req, caller(c))),
      deleteVolume: async (req, c) => toVolume(await d.volumes.delete(req, caller(c))),
      extendVolume: async (req, c) => toVolume(await d.volumes.extend(req.id, req.newSize, caller(c))),
      resetVolumeState: async (req, c) => toVolume(await d.volumes.resetState(req.id, req.status, caller(c))),
      uploadVolumeToImage: async (req, c) => {
        const { volume, ...image } = await d.uploads.upload(req, caller(c))
        return UploadVolumeToImageResponse.fromPartial({ volume: toVolume(volume), ...image })
      },
    }, rpc)],

    [SnapshotsService, implement(SnapshotsService, {
      createSnapshot: async (req, c) => Snapshot.fromPartial(await d.snapshots.create(req, caller(c))),
      getSnapshot: async (req, c) => Snapshot.fromPartial(await d.snapshots.get(req.id, caller(c))),
      listSnapshots: async (req, c) => ListSnapshotsResponse.fromPartial({ snapshots: await d.snapshots.list(req, caller(c)) }),
      updateSnapshot: async (req, c) => Snapshot.fromPartial(await d.snapshots.update(req, caller(c))),
      deleteSnapshot: async (req, c) => Snapshot.fromPartial(await d.snapshots.delete(req, caller(c))),
    }, rpc)],

    [VolumeTypesService, implement(VolumeTypesService, {
      createVolumeType: async (req) => VolumeType.fromPartial(await d.types.create(req)),
      getVolumeType: async (req, c) => VolumeType.fromPartial(await d.types.get(req.id, caller(c))),
      listVolumeTypes: async (req, c) => ListVolumeTypesResponse.fromPartial({ volumeTypes: await d.types.list(req.isPublic, caller(c)) }),
      updateVolumeType: async (req, c) => VolumeType.fromPartial(await d.types.update(req, caller(c))),
      deleteVolumeType: async (req, c) => {
        await d.types.delete(req.id, caller(c))
        return {}
      },
    }, rpc)],

    [AttachmentsService, implement(AttachmentsService, {
      createAttachment: async (req, c) => toAttachment(await d.attachments.reserve(req, caller(c))),
      getAttachment: async (req, c) => toAttachment(await d.attachments.get(req.id, caller(c))),
      listAttachments: async (req, c) => ListAttachmentsResponse.fromPartial({ attachments: (await d.attachments.list(req, caller(c))).map(toAttachment) }),
      deleteAttachment: async (req, c) => toAttachment(await d.attachments.remove(req.id, caller(c))),
    }, rpc)],
  ]
}

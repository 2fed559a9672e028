/**
 * Nova's os-volume_attachments (`/servers/{id}/os-volume_attachments[/{volume_id}]`)
 * over the attachments catalog the gRPC Servers AttachVolume, DetachVolume and
 * ListServerVolumes call: list, show, attach (200 with the attachment; the
 * volume is attaching until the host reports) and detach (202). Shapes per
 * microversion as Tempest checks them: `id` is the volume's id, `tag` from
 * 2.70 (Strato keeps no device tags: null). Swapping a volume (PUT) is not offered.
 */
import { InvalidArgument, NotFound } from '../../proto/errors.js'
import { isUuid } from '../../proto/ids.js'
import type { ServerVolumeView } from '../volume/attachments.js'
import { bodyObject, type RestRequest, type Route } from './http.js'
import type { RestDomain } from './services.js'
import { microversion, mv } from './compute-microversion.js'
import { callerOf } from './compute-common.js'
import { onlyKeys, str } from './body.js'

const S = 'strato.compute.v1.Servers'

function attachmentJson(req: RestRequest, a: ServerVolumeView): Record<string, unknown> {
  return { id: a.volumeId, serverId: a.serverId, volumeId: a.volumeId, device: a.device, ...(microversion(req) >= mv('2.70') ? { tag: null } : {}) }
}

/** The volume id in the path: Nova looks attachments up by it (a malformed one finds nothing). */
function volumeParam(req: RestRequest): string {
  const id = req.params.volume!
  if (!isUuid(id)) throw new NotFound(`Volume ${id} could not be found.`)
  return id
}

export function volumeAttachmentRoutes(d: RestDomain): Route[] {
  const { attachments } = d.volume
  const of = async (req: RestRequest) => attachments.serverVolumes(req.params.id, callerOf(req))
  return [
    {
      method: 'GET', path: '/servers/:id/os-volume_attachments', policy: `${S}/ListServerVolumes`,
      handler: async (req) => ({ body: { volumeAttachments: (await of(req)).map((a) => attachmentJson(req, a)) } }),
    },
    {
      method: 'GET', path: '/servers/:id/os-volume_attachments/:volume', policy: `${S}/ListServerVolumes`,
      handler: async (req) => {
        const volumeId = volumeParam(req)
        const a = (await of(req)).find((x) => x.volumeId === volumeId)
        if (!a) throw new NotFound(`volume ${volumeId} is not attached to server ${req.params.id}`)
        return { body: { volumeAttachment: attachmentJson(req, a) } }
      },
    },
    {
      method: 'POST', path: '/servers/:id/os-volume_attachments', policy: `${S}/AttachVolume`,
      handler: async (req) => {
        const b = await bodyObject(req, 'volumeAttachment')
        onlyKeys(b, microversion(req) >= mv('2.49') ? ['volumeId', 'device', 'tag'] : ['volumeId', 'device'])
        const volumeId = str(b, 'volumeId')
        if (!volumeId) throw new InvalidArgument("'volumeId' is a required property", { field: 'volumeId' })
        if (!isUuid(volumeId)) throw new InvalidArgument(`Invalid input for field/attribute volumeId. Value: ${volumeId}. '${volumeId}' is not a 'uuid'`, { field: 'volumeId' })
        if (b.tag !== undefined && b.tag !== null) throw new InvalidArgument('tag: Strato keeps no device tags', { field: 'tag' })
        const a = await attachments.attach({ serverId: req.params.id, volumeId, device: str(b, 'device') ?? '' }, callerOf(req))
        return { body: { volumeAttachment: attachmentJson(req, a) } }
      },
    },
    {
      method: 'DELETE', path: '/servers/:id/os-volume_attachments/:volume', policy: `${S}/DetachVolume`,
      handler: async (req) => {
        await attachments.detach({ serverId: req.params.id, volumeId: volumeParam(req) }, callerOf(req))
        return { status: 202 }
      },
    },
  ]
}

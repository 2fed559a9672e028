/**
 * Nova's os-volume_attachments (`/servers/{id}/os-volume_attachments[/{volume_id}]`)
 * over the attachments catalog the gRPC Servers AttachVolume, DetachVolume and
 * ListServerVolumes call: list, show, attach (200 with the attachment; the
 * volume is attaching until the host reports) and detach (202). Shapes per
 * microversion as Tempest checks them: `id` is the volume's id, `tag` from
 * 2.70 (Strato keeps no device tags: null), `delete_on_termination` from 2.79
 * (attach may set it), and from 2.89 the listing and show answer
 * `attachment_id` and `bdm_uuid` instead of `id` (attach's answer keeps `id`,
 * as Nova's does). Strato's attachment row is both Nova's block device mapping
 * and Cinder's attachment, so both name it. From 2.85 PUT changes
 * delete_on_termination; swapping a volume (PUT naming another volume, or
 * any PUT before 2.85) is not offered.
 */
import { InvalidArgument, NotFound } from '../../proto/errors.js'
import { isUuid } from '../../proto/ids.js'
import type { ServerVolumeView } from '../volume/attachments.js'
import { HttpError, bodyObject, type RestRequest, type Route } from './http.js'
import type { RestDomain } from './services.js'
import { microversion, mv } from './compute-microversion.js'
import { callerOf, intParam, onlyQuery } from './compute-common.js'
import { bool, onlyKeys, str } from './body.js'

/** Nova's `parameter_types.boolean` (null is not one of them). */
function dotParam(b: Record<string, unknown>): boolean | undefined {
  if (b.delete_on_termination === null) throw new InvalidArgument('delete_on_termination must be a boolean, got null', { field: 'delete_on_termination' })
  return bool(b.delete_on_termination, 'delete_on_termination')
}

const S = 'strato.compute.v1.Servers'

/** One attachment as Nova's GET answers show it (`created`: attach's answer, which never took up 2.89). */
function attachmentJson(req: RestRequest, a: ServerVolumeView, created = false): Record<string, unknown> {
  const v = microversion(req)
  const newIds = v >= mv('2.89') && !created
  return {
    ...(newIds ? {} : { id: a.volumeId }), serverId: a.serverId, volumeId: a.volumeId, device: a.device,
    ...(v >= mv('2.70') ? { tag: null } : {}),
    ...(v >= mv('2.79') ? { delete_on_termination: a.deleteOnTermination } : {}),
    ...(newIds ? { attachment_id: a.attachmentId, bdm_uuid: a.attachmentId } : {}),
  }
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
      handler: async (req) => {
        onlyQuery(req, ['limit', 'offset'])
        const offset = intParam(req, 'offset') ?? 0, limit = intParam(req, 'limit')
        const page = (await of(req)).slice(offset, limit === undefined ? undefined : offset + limit)
        return { body: { volumeAttachments: page.map((a) => attachmentJson(req, a)) } }
      },
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
        const v = microversion(req)
        onlyKeys(b, [...['volumeId', 'device'], ...(v >= mv('2.49') ? ['tag'] : []), ...(v >= mv('2.79') ? ['delete_on_termination'] : [])])
        const volumeId = str(b, 'volumeId')
        if (!volumeId) throw new InvalidArgument("'volumeId' is a required property", { field: 'volumeId' })
        if (!isUuid(volumeId)) throw new InvalidArgument(`Invalid input for field/attribute volumeId. Value: ${volumeId}. '${volumeId}' is not a 'uuid'`, { field: 'volumeId' })
        if (b.tag !== undefined && b.tag !== null) throw new InvalidArgument('tag: Strato keeps no device tags', { field: 'tag' })
        const deleteOnTermination = dotParam(b) ?? false
        const a = await attachments.attach({ serverId: req.params.id, volumeId, device: str(b, 'device') ?? '', deleteOnTermination, multiattach: v >= mv('2.60') }, callerOf(req))
        return { body: { volumeAttachment: attachmentJson(req, a, true) } }
      },
    },
    {
      method: 'PUT', path: '/servers/:id/os-volume_attachments/:volume', policy: `${S}/AttachVolume`,
      handler: async (req) => {
        // Before 2.85 Nova's PUT only swaps volumes, which Strato does not offer: the method is refused as it was before the route existed.
        if (microversion(req) < mv('2.85')) throw new HttpError(405, `the method PUT is not allowed for ${req.path} before microversion 2.85 (swapping a volume is not offered; allowed: GET, DELETE)`, { allow: 'GET, DELETE' })
        const b = await bodyObject(req, 'volumeAttachment')
        onlyKeys(b, ['volumeId', 'device', 'tag', 'delete_on_termination', 'serverId', 'id'])
        const volumeId = str(b, 'volumeId')
        if (!volumeId) throw new InvalidArgument("'volumeId' is a required property", { field: 'volumeId' })
        if (!isUuid(volumeId)) throw new InvalidArgument(`Invalid input for field/attribute volumeId. Value: ${volumeId}. '${volumeId}' is not a 'uuid'`, { field: 'volumeId' })
        const deleteOnTermination = dotParam(b)
        const path = volumeParam(req)
        if (volumeId !== path) throw new InvalidArgument(`volumeId ${volumeId} is not the volume in the path (${path}): swapping a volume is not offered`, { field: 'volumeId' })
        const a = (await of(req)).find((x) => x.volumeId === path)
        if (!a) throw new NotFound(`volume ${path} is not attached to server ${req.params.id}`)
        // The rest of the attachment may be restated but not changed (Nova's words).
        if (b.id !== undefined && b.id !== path) throw new InvalidArgument('The id property is not mutable', { field: 'id' })
        if (b.serverId !== undefined && b.serverId !== a.serverId) throw new InvalidArgument('The serverId property is not mutable', { field: 'serverId' })
        if (b.device !== undefined && b.device !== a.device) throw new InvalidArgument('The device property is not mutable', { field: 'device' })
        if (b.tag !== undefined && b.tag !== null) throw new InvalidArgument('The tag property is not mutable', { field: 'tag' })
        if (deleteOnTermination !== undefined) await attachments.setDeleteOnTermination({ serverId: a.serverId, volumeId: path, deleteOnTermination }, callerOf(req))
        return { status: 202 }
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

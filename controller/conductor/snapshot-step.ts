/**
 * A host's steps while it makes a server snapshot (Nova's
 * update_task_state callbacks from the driver): the server's task_state
 * moves along the state table, and at the upload step the host gets an
 * image-upload token for the snapshot's image — issued now, never carried
 * in a cast, and good for that one image's data only.
 */
import { FailedPrecondition, InvalidArgument, NotFound, Unavailable } from '../../proto/errors.js'
import { snapshotImageOf } from '../../proto/subjects.js'
import type { Db } from '../store/db.js'
import { snapshotStep as checkStep } from '../compute/server-states.js'
import { now } from '../compute/server-model.js'

/**
 * An upload's image still `saving` when its host asks again: the upload before
 * was interrupted (its host restarted, or the controller receiving it died).
 * The host tries again; the image is back to queued once that upload is
 * aborted or found abandoned (`ImageCatalog.recoverAbandonedUploads`).
 */
export function interruptedUpload(imageId: string): Unavailable {
  return new Unavailable(`image ${imageId} is still saving from an upload that was interrupted; it takes a new upload once that one is aborted or found abandoned, try again`)
}

/** Issues a token that uploads `imageId` only, for the host snapshotting `instanceUuid` (Authenticator.issueImageUpload). */
export type ImageUploadTokens = (imageId: string, host: string, instanceUuid: string) => string

/**
 * Applies a snapshot step of server `uuid` reported by `host` under `castId`.
 * @throws NotFound when the server is not placed on `host`.
 * @throws FailedPrecondition when `castId` is not the server's pending snapshot,
 *   the step does not follow its task, or the image is gone or no longer queued.
 * @throws Unavailable while the image is still saving from an interrupted upload (the host tries again).
 */
export async function snapshotStep(db: Db, issue: ImageUploadTokens, q: { host: string; uuid: string; castId: string; taskState: string }): Promise<{ imageId: string; imageUploadToken: string }> {
  const imageId = snapshotImageOf(q.castId)
  if (!imageId) throw new InvalidArgument(`cast '${q.castId}' is not a server snapshot`, { field: 'cast_id' })
  const row = await db.selectFrom('servers').select(['uuid', 'host', 'task_state', 'pending_cast_id']).where('uuid', '=', q.uuid).where('deleted', '=', 0).executeTakeFirst()
  if (!row || row.host !== q.host) throw new NotFound(`no server ${q.uuid} is placed on host '${q.host}'`)
  if (row.pending_cast_id !== q.castId) throw new FailedPrecondition(`server ${q.uuid} no longer waits for snapshot ${q.castId} (its task is '${row.task_state || 'none'}'); the snapshot is abandoned`)
  const task = checkStep(row, q.taskState)
  const image = await db.selectFrom('images').select(['id', 'status']).where('id', '=', imageId).executeTakeFirst()
  if (!image) throw new FailedPrecondition(`image ${imageId} of the snapshot of server ${q.uuid} was deleted; the snapshot is abandoned`)
  if (image.status === 'saving') throw interruptedUpload(imageId)
  if (image.status !== 'queued') throw new FailedPrecondition(`image ${imageId} of the snapshot of server ${q.uuid} is ${image.status}, not queued: it takes no upload`)
  if (task !== row.task_state) {
    const r = await db.updateTable('servers').set({ task_state: task, updated_at: now() }).where('uuid', '=', q.uuid).where('pending_cast_id', '=', q.castId).where('task_state', '=', row.task_state).executeTakeFirst()
    if (Number(r.numUpdatedRows) !== 1) throw new FailedPrecondition(`server ${q.uuid} changed while its snapshot went to ${task}; the snapshot is abandoned`)
  }
  return { imageId, imageUploadToken: task === 'image_uploading' ? issue(imageId, q.host, q.uuid) : '' }
}

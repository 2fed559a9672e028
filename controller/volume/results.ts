/**
 * What volume backends report back (cinder-volume updating the volume): the
 * result of a cast, applied only to the volume or snapshot still waiting for
 * that cast, from the host it lives on; anything else is stale (a reset or
 * force-delete came in between) or forged, and ignored. New statuses come
 * from the state table; a failure's message becomes the status reason.
 */
import type { Db } from '../store/db.js'
import { forUpdate } from '../store/engine.js'
import type { CastResultEvent } from '../compute/transport.js'
import { now, type Log } from '../compute/server-model.js'
import { parseVolumeCastId, uploadImageOf } from '../../proto/volume-work.js'
import { checkVolumeTransition, snapshotOutcome, volumeOutcome } from './states.js'
import { liveAttachments, type AttachmentCatalog } from './attachments.js'
import { NO_CAST } from './casts.js'
import type { ImageCatalog } from '../image/catalog.js'

export class VolumeResults {
  private sweepTimer: NodeJS.Timeout | undefined

  constructor(
    private readonly db: Db,
    private readonly log: Log,
    /** Whether a backend host's agent is alive (heartbeats). */
    private readonly isUp: (host: string) => boolean = () => true,
    /** @see ControllerConfig.volumes.stuckAfterMs */
    private readonly stuckAfterMs = 600_000,
    /** Attachments, swept with the volumes (their casts go to servers' hosts); told of extends. */
    private readonly attachments?: Pick<AttachmentCatalog, 'sweep' | 'extendedIn' | 'sendCasts'>,
    /** The image catalog: a failed upload's image is discarded. */
    private readonly images?: Pick<ImageCatalog, 'discardUnfinished'>,
  ) {}

  /** Sweeps for stuck work every quarter of `stuckAfterMs` (at most every 30 s). */
  start(): void {
    this.sweepTimer ??= setInterval(() => void this.sweep().catch((err) => this.log.warn({ err }, 'volume sweep failed')), Math.min(30_000, Math.max(100, this.stuckAfterMs / 4)))
    this.sweepTimer.unref()
  }

  stop(): void {
    if (this.sweepTimer) clearInterval(this.sweepTimer)
    this.sweepTimer = undefined
  }

  /**
   * Work pending longer than `stuckAfterMs` on a host that is down ends as
   * that work's failure (error, error_deleting, error_extending; a snapshot
   * error or error_deleting; an attach or detach, see
   * `AttachmentCatalog.sweep`) with a reason naming the host: no volume waits
   * forever for an agent that does not come back. Returns how many it ended.
   */
  async sweep(now = Date.now()): Promise<number> {
    const before = new Date(now - this.stuckAfterMs).toISOString()
    const vols = await this.db.selectFrom('volumes').select(['id', 'host', 'pending_cast_id']).where('pending_cast_id', '!=', '').where('updated_at', '<', before).execute()
    const snaps = await this.db.selectFrom('volume_snapshots').innerJoin('volumes', 'volumes.id', 'volume_snapshots.volume_id')
      .select(['volume_snapshots.id', 'volumes.host', 'volume_snapshots.pending_cast_id', 'volume_snapshots.volume_id']).where('volume_snapshots.pending_cast_id', '!=', '').where('volume_snapshots.updated_at', '<', before).execute()
    let ended = 0
    for (const r of [...vols.map((v) => ({ ...v, volume_id: v.id })), ...snaps]) {
      if (!r.host || this.isUp(r.host)) continue
      const op = parseVolumeCastId(r.pending_cast_id)?.op ?? 'work'
      this.log.warn({ volume: r.volume_id, host: r.host, cast: r.pending_cast_id }, 'volume work stuck on a host that is down: ended as failed')
      await this.apply({
        castId: r.pending_cast_id, host: r.host, ok: false, errorCode: 'UNAVAILABLE', powerState: 0, instanceUuid: '', action: `volume_${op}`, volumeId: r.volume_id, snapshotId: r.id === r.volume_id ? '' : r.id,
        message: `host '${r.host}' is down and did not finish ${op} within ${Math.round(this.stuckAfterMs / 1000)} s; its agent will not be waited for`,
      })
      ended++
    }
    if (this.attachments) ended += await this.attachments.sweep(before, this.isUp, this.stuckAfterMs)
    return ended
  }

  /** True when `r` is a volume cast's result (handled here), false for anything else. */
  async apply(r: CastResultEvent): Promise<boolean> {
    const p = parseVolumeCastId(r.castId)
    if (!p) return false
    const reason = r.ok ? '' : `${r.errorCode || 'INTERNAL'}: ${r.message || 'the backend failed'}`
    const vo = volumeOutcome(p.op, r.ok)
    const so = snapshotOutcome(p.op, r.ok)
    let told: Awaited<ReturnType<AttachmentCatalog['extendedIn']>> = []
    const applied = await this.db.transaction().execute(async (trx) => {
      if (vo) {
        const row = await forUpdate(trx, trx.selectFrom('volumes').selectAll().where('id', '=', p.id)).executeTakeFirst()
        if (!row || row.pending_cast_id !== r.castId || row.status !== vo.while) return this.stale(r, row?.pending_cast_id)
        if (row.host !== r.host) return this.forged(r, row.host)
        if (vo.to === 'deleted') {
          // Failed attachments are all a deletable volume can still have.
          await trx.deleteFrom('volume_attachments').where('volume_id', '=', row.id).execute()
          await trx.deleteFrom('volume_snapshots').where('volume_id', '=', row.id).execute()
          await trx.deleteFrom('volumes').where('id', '=', row.id).execute()
        } else {
          const grown = p.op === 'extend' && r.ok ? { size: row.pending_size } : {}
          // An extended volume that is attached is back in use (Cinder's in-use extend);
          // one made for a new server is promised to it (its attachment waits: server-volumes.ts);
          // an uploaded one is as before the upload, done or not.
          const attached = (r.ok || p.op === 'upload_image') && ['extend', 'create', 'upload_image'].includes(p.op) && (await liveAttachments(trx, row.id)) > 0
          const to = attached ? (p.op === 'create' ? 'reserved' : 'in-use') : vo.to
          if (to !== vo.to) checkVolumeTransition(vo.while, to)
          await trx.updateTable('volumes').set({ status: to, status_reason: reason, pending_size: 0, ...grown, ...NO_CAST, updated_at: now() }).where('id', '=', row.id).execute()
          // Servers of other hosts read it over the network: their hosts are told the new size (Nova's volume-extended event).
          if (p.op === 'extend' && r.ok && this.attachments) told = await this.attachments.extendedIn(trx, row.id, row.host, row.pending_request_id)
          // Snapshots that went down with a failed cascade delete are as stuck as their volume.
          if (p.op === 'delete') await trx.updateTable('volume_snapshots').set({ status: 'error_deleting', status_reason: reason, updated_at: now() }).where('volume_id', '=', row.id).where('status', '=', 'deleting').execute()
        }
      } else if (so) {
        const row = await trx.selectFrom('volume_snapshots').innerJoin('volumes', 'volumes.id', 'volume_snapshots.volume_id').selectAll('volume_snapshots').select('volumes.host').where('volume_snapshots.id', '=', p.id).executeTakeFirst()
        if (!row || row.pending_cast_id !== r.castId || row.status !== so.while) return this.stale(r, row?.pending_cast_id)
        if (row.host !== r.host) return this.forged(r, row.host)
        if (so.to === 'deleted') await trx.deleteFrom('volume_snapshots').where('id', '=', row.id).execute()
        else await trx.updateTable('volume_snapshots').set({ status: so.to, status_reason: reason, ...NO_CAST, updated_at: now() }).where('id', '=', row.id).execute()
      }
      return true
    })
    if (applied && told.length) await this.attachments?.sendCasts(told)
    const uploaded = uploadImageOf(r.castId)
    if (applied && uploaded && !r.ok) await this.images?.discardUnfinished(uploaded, { what: 'volume upload', why: reason, log: this.log, context: { volume: p.id } })
    this.log.info({ volume: r.volumeId, snapshot: r.snapshotId || undefined, host: r.host, op: p.op, ok: r.ok, ...(r.ok ? {} : { reason }) }, `volume ${p.op} ${r.ok ? 'done' : 'failed'}`)
    return true
  }

  private stale(r: CastResultEvent, waitingFor: string | undefined): undefined {
    this.log.debug({ cast: r.castId, waitingFor }, 'stale volume cast result ignored')
    return undefined
  }

  private forged(r: CastResultEvent, placedOn: string): undefined {
    this.log.warn({ cast: r.castId, host: r.host, placedOn }, `volume cast result ignored: host '${r.host}' reported on a volume that lives on '${placedOn}'`)
    return undefined
  }
}

/**
 * What agents report back (Nova's compute manager updating the instance):
 * the result of a cast, applied only to the server waiting for that cast, and
 * the power states of a host's guests, which servers with no action in
 * progress follow (the hypervisor is the authority). The new states come from
 * the state table; the server's ports follow through network/'s PortCatalog.
 */
import type { Db } from '../store/db.js'
import type { ServerTable } from '../store/schema.js'
import type { Trx } from '../quota/quota.js'
import type { PortCatalog } from '../network/ports.js'
import type { Scheduler } from '../scheduler/scheduler.js'
import { outcomeOf, syncPower, type Outcome } from './server-states.js'
import type { CastResultEvent } from './transport.js'
import { actionOfCast } from './cast-outbox.js'
import { forUpdate } from '../store/engine.js'
import { isSnapshot } from '../../proto/server-actions.js'
import { json, now, type Log } from './server-model.js'
import { builtWithVolumes, releaseServerVolumes, type ServerVolumes } from '../volume/server-volumes.js'
import type { VolumeTable } from '../store/schema.js'

/**
 * Writes an outcome of the state table to a server inside the caller's
 * transaction, ending its pending cast; a releasing outcome frees the
 * server's ports here (its allocation is the caller's to release after the
 * transaction).
 */
export async function writeOutcome(trx: Trx, ports: PortCatalog, row: ServerTable, o: Outcome, fault: { code: string; message: string } | undefined, log: Log): Promise<VolumeTable[]> {
  const ts = now()
  await trx.updateTable('servers').set({
    ...(o.vm_state ? { vm_state: o.vm_state } : {}),
    task_state: o.task_state,
    ...(o.power_state !== undefined ? { power_state: o.power_state } : {}),
    pending_cast_id: '',
    pending_request_id: '',
    cast_sent_at: null,
    updated_at: ts,
    ...(fault ? { fault_code: fault.code || 'INTERNAL', fault_message: fault.message || 'the action failed on the host', fault_at: ts } : o.vm_state && o.vm_state !== 'error' && o.vm_state !== 'deleted' ? { fault_code: '', fault_message: '', fault_at: null } : {}),
    ...(o.launched ? { launched_at: ts } : {}),
    ...(o.terminated ? { terminated_at: ts, deleted: 1 } : {}),
  }).where('uuid', '=', row.uuid).execute()
  if (o.release) await ports.releaseDeviceIn(trx, row.uuid, new Set(json<string[]>(row.own_ports, [])))
  // A deleted server's volumes, or a failed build's, are free again (its host destroyed the guest, or is
  // gone); those it goes with are deleted (their casts are the caller's to send after the transaction).
  const doomed = o.release ? await releaseServerVolumes(trx, row.uuid, log) : []
  if (o.vm_state === 'active' || o.vm_state === 'stopped') await ports.setDeviceStatusIn(trx, row.uuid, o.vm_state === 'active' ? 'ACTIVE' : 'DOWN')
  return doomed
}

export class CastResults {
  constructor(
    private readonly db: Db,
    private readonly deps: { ports: PortCatalog; scheduler: Scheduler; serverVolumes: ServerVolumes },
    private readonly log: Log,
  ) {}

  /**
   * Applies an agent's result to the server waiting for that cast, when it
   * comes from the host the server is placed on; other results are stale (or
   * forged) and ignored.
   */
  async applyResult(r: CastResultEvent): Promise<void> {
    const action = actionOfCast(r.castId)
    if (!action || !r.instanceUuid) return
    let doomed: VolumeTable[] = []
    const released = await this.db.transaction().execute(async (trx) => {
      const row = await forUpdate(trx, trx.selectFrom('servers').selectAll().where('uuid', '=', r.instanceUuid)).executeTakeFirst()
      if (!row || row.pending_cast_id !== r.castId) {
        this.log.debug({ instance: r.instanceUuid, cast: r.castId, waitingFor: row?.pending_cast_id }, 'stale cast result ignored')
        return false
      }
      // Cast ids are predictable (`build.<uuid>`): only the host the server is placed on may answer one.
      if (row.host !== r.host) {
        this.log.warn({ instance: r.instanceUuid, cast: r.castId, host: r.host, placedOn: row.host }, `cast result ignored: host '${r.host}' reported on a server placed on '${row.host}'`)
        return false
      }
      const outcome = outcomeOf(action, r.ok)
      // A failed result carries no power state; a failed snapshot leaves the guest as it was, so its own stays.
      const power = outcome.power_state ?? (r.ok || !isSnapshot(action) ? r.powerState : undefined)
      doomed = await writeOutcome(trx, this.deps.ports, row, { ...outcome, ...(power !== undefined ? { power_state: power } : {}) }, r.ok ? undefined : { code: r.errorCode, message: r.message }, this.log)
      // Built: the volumes it was built with are attached.
      if (action === 'build' && r.ok) await builtWithVolumes(trx, row.uuid)
      return outcome.release === true
    })
    await this.deps.serverVolumes.sendDeletes(doomed)
    if (released) {
      await this.deps.scheduler.release(r.instanceUuid)
      // Its ports were deleted or unbound: hosts' filtering and metadata caches follow.
      this.deps.ports.onChange()
    }
    this.log.info({ instance: r.instanceUuid, host: r.host, action, ok: r.ok, ...(r.ok ? {} : { fault: r.message }) }, `server ${action} ${r.ok ? 'done' : 'failed'}`)
  }

  /**
   * A host's hypervisor reported its guests (`sentAt` is when it looked).
   * Servers with no action in progress follow it (the hypervisor is the
   * authority); servers that changed since it looked are left alone.
   */
  async applyPowerStates(host: string, sentAt: Date, guests: Map<string, number>): Promise<void> {
    const seen = sentAt.toISOString()
    const rows = await this.db.selectFrom('servers').selectAll().where('host', '=', host).where('deleted', '=', 0).where('task_state', '=', '').where('vm_state', 'in', ['active', 'stopped']).execute()
    for (const r of rows) {
      if (r.updated_at > seen) continue
      const power = guests.get(r.uuid)
      const sync = syncPower(r.vm_state, power ?? 'missing')
      if (!sync) continue
      if (!sync.vm_state && sync.power_state === Number(r.power_state)) continue
      const ts = now()
      await this.db.updateTable('servers').set({
        power_state: sync.power_state,
        ...(sync.vm_state ? { vm_state: sync.vm_state, updated_at: ts } : {}),
        ...(sync.fault ? { fault_code: 'NOT_FOUND', fault_message: `${sync.fault} (${host})`, fault_at: ts } : {}),
      }).where('uuid', '=', r.uuid).where('updated_at', '=', r.updated_at).execute()
      if (sync.vm_state) this.log.warn({ instance: r.uuid, host, from: r.vm_state, to: sync.vm_state, power: sync.power_state }, 'server state synced from the hypervisor')
    }
  }
}

/**
 * Volume backends (cinder-volume services) and the choice of one for a new
 * volume. Each agent with the volume role reports its backend's capacity in
 * its announce and in every heartbeat (agent.v1 `VolumeBackendStats`); the
 * controller keeps the last report per host.
 *
 * A volume is placed inside the transaction that creates it (with the quota
 * check), on the up, enabled, mapped host in the volume's zone whose backend
 * (by `volume_backend_name`, when the type names one) has the most room,
 * room being the reported total less what the controller already promised
 * there (the size of every volume and snapshot on the host: thick
 * accounting, so concurrent creates can never over-promise a backend).
 * When nothing fits, the refusal says why, host by host.
 */
import { FailedPrecondition, ResourceExhausted } from '../../proto/errors.js'
import type { Db } from '../store/db.js'
import type { Trx } from '../quota/quota.js'
import { now } from '../compute/server-model.js'
import { lockNames } from '../store/engine.js'

/** Room is checked and promised by one transaction at a time (other controllers' too, on PostgreSQL). */
const BACKENDS_LOCK = 'volume-backends'

export interface BackendStats {
  backendName: string
  totalGb: number
  freeGb: number
}

export interface BackendChoice {
  sizeGb: number
  /** '' : any zone. */
  availabilityZone: string
  /** '' : any backend (the type names none). */
  backendName: string
}

export class VolumeBackends {
  constructor(
    private readonly db: Db,
    private readonly isUp: (host: string) => boolean,
  ) {}

  /** A host's report: its backend's capacity, or undefined when it runs no volume role (any record goes). */
  async report(host: string, stats: BackendStats | undefined): Promise<void> {
    if (!host) return
    if (!stats) {
      await this.db.deleteFrom('volume_backends').where('host', '=', host).execute()
      return
    }
    const row = { host, backend_name: stats.backendName, total_gb: Math.max(0, Math.floor(stats.totalGb)), free_gb: Math.max(0, Math.floor(stats.freeGb)), updated_at: now() }
    await this.db.insertInto('volume_backends').values(row).onConflict((oc) => oc.column('host').doUpdateSet({ backend_name: row.backend_name, total_gb: row.total_gb, free_gb: row.free_gb, updated_at: row.updated_at })).execute()
  }

  /** Each volume host's backend name (Cinder's host@backend#pool). */
  async names(): Promise<Map<string, string>> {
    return new Map((await this.db.selectFrom('volume_backends').select(['host', 'backend_name']).execute()).map((r) => [r.host, r.backend_name]))
  }

  /** The backend name of `host` ('' when it reports none), read in `db` (a transaction's view of it). */
  async nameOf(db: Trx, host: string): Promise<string> {
    if (!host) return ''
    return (await db.selectFrom('volume_backends').select('backend_name').where('host', '=', host).executeTakeFirst())?.backend_name ?? ''
  }

  /**
   * Cinder's availability zones: those of the mapped hosts that run the
   * volume role, each available when one of them is enabled and up.
   */
  async zones(): Promise<Array<{ name: string; available: boolean }>> {
    const rows = await this.db.selectFrom('volume_backends').innerJoin('compute_hosts', 'compute_hosts.host', 'volume_backends.host')
      .select(['volume_backends.host as host', 'availability_zone', 'disabled']).where('mapped', '=', 1).execute()
    const zones = new Map<string, boolean>()
    for (const r of rows) zones.set(r.availability_zone, (zones.get(r.availability_zone) ?? false) || (r.disabled !== 1 && this.isUp(r.host)))
    return [...zones].sort(([a], [b]) => a.localeCompare(b)).map(([name, available]) => ({ name, available }))
  }

  /** GiB promised on each backend host: its volumes and their snapshots. */
  private async provisioned(trx: Trx): Promise<Map<string, number>> {
    const vols = await trx.selectFrom('volumes').select(['host', (eb) => eb.fn.sum<number>('size').as('gb')]).where('host', '!=', '').groupBy('host').execute()
    const snaps = await trx.selectFrom('volume_snapshots').innerJoin('volumes', 'volumes.id', 'volume_snapshots.volume_id')
      .select(['volumes.host as host', (eb) => eb.fn.sum<number>('volume_snapshots.size').as('gb')]).where('volumes.host', '!=', '').groupBy('volumes.host').execute()
    const out = new Map<string, number>()
    for (const r of [...vols, ...snaps]) out.set(r.host, (out.get(r.host) ?? 0) + Number(r.gb ?? 0))
    return out
  }

  /**
   * Checks that `host`'s backend can take `gb` more (a copy or snapshot kept
   * beside its source, an extend); call it in the transaction that promises them.
   * @throws FailedPrecondition when the host runs no volume role now.
   * @throws ResourceExhausted when its room is less than `gb`.
   */
  async ensureRoom(trx: Trx, host: string, gb: number): Promise<void> {
    await lockNames(trx, [BACKENDS_LOCK])
    const b = await trx.selectFrom('volume_backends').select('total_gb').where('host', '=', host).executeTakeFirst()
    if (!b) throw new FailedPrecondition(`host '${host}' runs no volume backend now`)
    const room = Number(b.total_gb) - ((await this.provisioned(trx)).get(host) ?? 0)
    if (room < gb) throw new ResourceExhausted(`the volume backend of host '${host}' has room for ${Math.max(0, room)} GiB; ${gb} GiB more do not fit`)
  }

  /**
   * The host a new volume goes to; call it in the creating transaction.
   * @throws FailedPrecondition when no volume backend is up in the zone (and of the type's backend).
   * @throws ResourceExhausted when some are, but none has room, with each one's room.
   */
  async pick(trx: Trx, c: BackendChoice): Promise<string> {
    return (await this.hostsWithRoom(trx, c))[0]!
  }

  /**
   * Every host a new volume could go to, the most room first (`pick` takes
   * the first; a server booting from new volumes is placed among them).
   * @throws as `pick`.
   */
  async hostsWithRoom(trx: Trx, c: BackendChoice): Promise<string[]> {
    await lockNames(trx, [BACKENDS_LOCK])
    const rows = await trx.selectFrom('volume_backends').innerJoin('compute_hosts', 'compute_hosts.host', 'volume_backends.host')
      .select(['volume_backends.host as host', 'backend_name', 'total_gb', 'availability_zone', 'disabled', 'mapped']).orderBy('volume_backends.host').execute()
    const dropped: string[] = []
    const candidates = rows.filter((r) => {
      const why = r.mapped !== 1 ? 'not mapped' : r.disabled === 1 ? 'disabled' : !this.isUp(r.host) ? 'down'
        : c.availabilityZone && r.availability_zone !== c.availabilityZone ? `in zone ${r.availability_zone}`
          : c.backendName && r.backend_name !== c.backendName ? `backend ${r.backend_name}` : ''
      if (why) dropped.push(`${r.host} (${why})`)
      return !why
    })
    const wanted = `${c.availabilityZone ? ` in zone ${c.availabilityZone}` : ''}${c.backendName ? ` with volume_backend_name ${c.backendName}` : ''}`
    if (!candidates.length) throw new FailedPrecondition(`no valid backend was found: no volume backend is up${wanted}${dropped.length ? `; ${dropped.join(', ')}` : rows.length ? '' : ' (no host runs the volume role)'}`)
    const promised = await this.provisioned(trx)
    const room = candidates.map((r) => ({ host: r.host, room: Number(r.total_gb) - (promised.get(r.host) ?? 0) })).sort((a, b) => b.room - a.room || a.host.localeCompare(b.host))
    const best = room[0]!
    if (best.room < c.sizeGb) throw new ResourceExhausted(`no valid backend was found: no volume backend${wanted} has room for ${c.sizeGb} GiB; ${room.map((r) => `${r.host} has ${Math.max(0, r.room)} GiB`).join(', ')}`)
    return room.filter((r) => r.room >= c.sizeGb).map((r) => r.host)
  }
}

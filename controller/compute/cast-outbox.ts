/**
 * The cast outbox (Nova's rpc.cast, made durable): a server's pending cast is
 * recorded on its row (`pending_cast_id`, with the request id of the API call
 * behind it) before it is sent; once JetStream has it, `cast_sent_at` is set.
 * A cast the bus did not take (NATS away, the controller stopped in between)
 * stays pending and `resend()` sends it again, on a timer and at start-up.
 *
 * Several controllers on one PostgreSQL database all run the resend: a cast
 * is sent by the one that claims its row — one conditional UPDATE that
 * stamps a lease on the cast (`cast_claim_id`, `cast_claimed_at`) while it
 * is unsent and not claimed, committed at once — and marked sent (the lease
 * cleared) once the bus took it; the others pass a row with a live lease
 * by. So each unsent cast is
 * published once — not once per controller with JetStream's duplicate window
 * hiding the rest (and not at all hidden once the window has passed) — and
 * no row lock is held while NATS takes the cast (up to its publish timeout
 * when NATS is away), so API calls touching the row do not wait on the bus.
 * A send that fails gives its lease back; one whose controller died leaves
 * it to run out (`CAST_LEASE_MS`). On SQLite one controller owns the file:
 * no claim.
 */
import { randomBytes } from 'node:crypto'
import type { Db } from '../store/db.js'
import { engineOf } from '../store/engine.js'
import { castIdFor as castId, parseCastId } from '../../proto/subjects.js'
import { castAction } from '../../proto/server-actions.js'
import type { ServerAction } from './server-states.js'
import type { AgentTransport, CastAction } from './transport.js'
import { now, type Log } from './server-model.js'

/** A cast id for `action` on server `uuid` (builds have one per server; other actions a fresh nonce). */
export function castIdFor(action: ServerAction, uuid: string): string {
  // A build's id has no nonce: no random bytes drawn for it (a syscall per create).
  return castId(action, uuid, action === 'build' ? '' : randomBytes(4).toString('hex'))
}

/** The action a cast id carries. */
export function actionOfCast(id: string): ServerAction | undefined {
  return parseCastId(id)?.action
}


/** One cast to send: to `host`, about server `uuid`, under `castId`, caused by the API call `requestId`. */
export interface OutgoingCast {
  uuid: string
  host: string
  action: ServerAction
  castId: string
  requestId: string
}

/** The tables whose rows carry a pending cast, and the key that names a row of each. */
const CAST_ROW_KEYS = { servers: 'uuid', volumes: 'id', volume_snapshots: 'id', volume_attachments: 'id' } as const

/** The row a cast is pending on: `queue` marks it sent (`cast_sent_at`) once the bus has the cast. */
export interface CastRow {
  table: keyof typeof CAST_ROW_KEYS
  id: string
}

/**
 * Who sends: `wait` (the API call that made the cast) or `skip` (a resend).
 * Both claim the row the same way on PostgreSQL (a lease, see above) and
 * pass by a row another send holds — that send marks it sent; the log says
 * which of the two found it held. `held`: the API call that wrote the row
 * with this send's lease already on it (`castLease`, in the transaction that
 * made the cast pending: a create's), so it sends without claiming — one
 * statement fewer per cast; should it die first, the lease runs out as any.
 */
export type Claim = 'wait' | 'skip' | 'held'

/**
 * How long a claim keeps other senders off a row: three times the longest the
 * bus takes a cast (JetStream's publish timeout is 5 s), so a slow send is not
 * sent twice; a controller that died while sending holds its rows this long
 * (its casts wait that much longer), so no longer than that.
 */
export const CAST_LEASE_MS = 15_000

/** The lease columns of a row written with its pending cast `castId` about to be sent by the writer (see `Claim`'s `held`). */
export function castLease(castId: string, at: string): { cast_claim_id: string; cast_claimed_at: string } {
  return { cast_claim_id: castId, cast_claimed_at: at }
}

/**
 * What every outbox shares (servers' casts here, volumes' in `volume/casts.ts`):
 * the bus once connected, the one send path (queue, then mark the row sent),
 * a timer that sends again what the bus did not take, and one such resend at
 * a time.
 */
export abstract class Outbox {
  private retryTimer: NodeJS.Timeout | undefined
  private resending: Promise<void> | undefined
  /** What the outbox holds, for its log lines ("casts", "volume casts"). */
  protected abstract readonly what: string

  constructor(
    protected readonly db: Db,
    private readonly retryMs: number,
    protected readonly log: Log,
    protected transport: AgentTransport | undefined = undefined,
  ) {}

  /** The bus, once connected (until then casts wait on their rows). */
  get bus(): AgentTransport | undefined {
    return this.transport
  }

  /** Connects the bus (after it started) and resends, every `retryMs`, what could not be sent. */
  attach(transport: AgentTransport): void {
    this.transport = transport
    if (!this.retryTimer) {
      this.retryTimer = setInterval(() => void this.resend(), this.retryMs)
      this.retryTimer.unref()
    }
  }

  stop(): void {
    if (this.retryTimer) clearInterval(this.retryTimer)
    this.retryTimer = undefined
  }

  /** Sends again every cast the bus did not take (NATS was away, or the controller stopped in between). */
  resend(): Promise<void> {
    this.resending ??= this.resendPending()
      .catch((err) => this.log.warn({ err: (err as Error).message }, `resending ${this.what} failed`))
      .finally(() => {
        this.resending = undefined
      })
    return this.resending
  }

  /** Sends every pending cast the bus has not taken yet. */
  protected abstract resendPending(): Promise<void>

  /**
   * Queues `action` for `host` under `castId`, then marks `row` sent (when the
   * cast is a row's pending one); on failure it stays pending for the next
   * resend. `about`: the log fields naming what the cast is for.
   */
  protected async queue(host: string, action: CastAction, castId: string, requestId: string, about: Record<string, string>, row: CastRow | undefined, claim: Claim = 'wait'): Promise<void> {
    const transport = this.transport
    if (!transport) {
      this.log.warn({ ...about, host }, `no message bus: the ${this.what.replace(/s$/, '')} waits`)
      return
    }
    try {
      if (!row) {
        await transport.cast(host, action, castId, requestId || undefined)
      } else if (engineOf(this.db) !== 'postgres') {
        await transport.cast(host, action, castId, requestId || undefined)
        await this.sent(row, castId)
      } else if (claim !== 'held' && !(await this.claim(row, castId))) {
        this.log.debug({ ...about, host, castId, by: claim === 'wait' ? 'api' : 'resend' }, `${this.what.replace(/s$/, '')} already sent or being sent by another controller`)
      } else {
        // The claim is committed: no row lock is held while the bus takes the cast.
        try {
          await transport.cast(host, action, castId, requestId || undefined)
        } catch (err) {
          await this.release(row, castId).catch(() => {})
          throw err
        }
        await this.sent(row, castId)
      }
    } catch (err) {
      this.log.warn({ ...about, host, err: (err as Error).message }, `${this.what.replace(/s$/, '')} not queued; it will be sent again`)
    }
  }

  /**
   * Stamps this send's lease on `row` if its cast `castId` is still unsent and
   * no live lease is on that cast (one on an older cast of the row does not
   * count); true when it did (this send goes ahead). One statement: two
   * senders updating the row at once are ordered by its row lock, held only
   * for the statement, and the second finds the lease set.
   */
  private async claim(row: CastRow, castId: string): Promise<boolean> {
    const at = new Date()
    const expired = new Date(at.getTime() - CAST_LEASE_MS).toISOString()
    const r = await this.db.updateTable(row.table).set({ cast_claim_id: castId, cast_claimed_at: at.toISOString() })
      .where(CAST_ROW_KEYS[row.table], '=', row.id).where('pending_cast_id', '=', castId).where('cast_sent_at', 'is', null)
      .where((eb) => eb.or([eb('cast_claim_id', 'is', null), eb('cast_claim_id', '!=', castId), eb('cast_claimed_at', '<', expired)]))
      .executeTakeFirst()
    return Number(r.numUpdatedRows) === 1
  }

  /** Gives back the lease of a send the bus did not take, so the next resend (here or elsewhere) tries at once. */
  private async release(row: CastRow, castId: string): Promise<void> {
    await this.db.updateTable(row.table).set({ cast_claim_id: null, cast_claimed_at: null }).where(CAST_ROW_KEYS[row.table], '=', row.id).where('cast_claim_id', '=', castId).execute()
  }

  /**
   * Records that the bus took `castId` (`cast_sent_at`) and ends its send's
   * lease, unless the row has moved on to another cast — on either engine the
   * one way: the casts the bus took in one tick are marked together, one
   * UPDATE per table (a statement per create added up: SQLite has one writer,
   * and on PostgreSQL it was one more round trip per cast). A batch the
   * database refused (PostgreSQL can end one as a deadlock's victim: an UPDATE
   * of several rows locks them in its scan's order) is marked row by row.
   */
  private sent(row: CastRow, castId: string): Promise<void> {
    return new Promise((resolve, reject) => {
      this.unsent.push({ row, castId, resolve, reject })
      if (this.unsent.length === 1) setImmediate(() => void this.markSent())
    })
  }

  private readonly unsent: Array<{ row: CastRow; castId: string; resolve(): void; reject(err: unknown): void }> = []

  private async markSent(): Promise<void> {
    const batch = this.unsent.splice(0)
    const at = now()
    const mark = (table: CastRow['table'], rows: typeof batch) =>
      this.db.updateTable(table).set({ cast_sent_at: at, cast_claim_id: null, cast_claimed_at: null })
        .where((eb) => eb.or(rows.map((b) => eb.and([eb(CAST_ROW_KEYS[table], '=', b.row.id), eb('pending_cast_id', '=', b.castId)]))))
        .execute()
    for (const table of Object.keys(CAST_ROW_KEYS) as Array<CastRow['table']>) {
      const rows = batch.filter((b) => b.row.table === table)
      // Bounded statements (two parameters a row); a row is marked only while its pending cast is this one.
      for (let i = 0; i < rows.length; i += 400) {
        const chunk = rows.slice(i, i + 400)
        try {
          await mark(table, chunk)
          for (const b of chunk) b.resolve()
        } catch (err) {
          if (chunk.length === 1) {
            chunk[0]!.reject(err)
            continue
          }
          for (const b of chunk) await mark(table, [b]).then(b.resolve, b.reject)
        }
      }
    }
  }
}

export class CastOutbox extends Outbox {
  protected readonly what = 'casts'

  /**
   * Queues a cast; on failure it stays pending and `resend()` tries again.
   * `record`: the cast is the server's pending one (its row learns it was
   * sent); false for a cast nothing waits for (a local delete's clean-up).
   */
  async send(c: OutgoingCast, record = true, claim: Claim = 'wait'): Promise<void> {
    await this.queue(c.host, castAction(c.action, c.uuid), c.castId, c.requestId, { instance: c.uuid }, record ? { table: 'servers', id: c.uuid } : undefined, claim)
  }

  protected async resendPending(): Promise<void> {
    const rows = await this.db.selectFrom('servers').select(['uuid', 'host', 'pending_cast_id', 'pending_request_id']).where('pending_cast_id', '!=', '').where('cast_sent_at', 'is', null).where('deleted', '=', 0).execute()
    for (const r of rows) {
      const action = actionOfCast(r.pending_cast_id)
      if (!r.host || !action) continue
      await this.send({ uuid: r.uuid, host: r.host, action, castId: r.pending_cast_id, requestId: r.pending_request_id }, true, 'skip')
    }
  }
}

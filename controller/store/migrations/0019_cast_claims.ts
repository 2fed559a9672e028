/**
 * `cast_claim_id` and `cast_claimed_at` on every row that carries a pending
 * cast (servers, volumes, volume snapshots, volume attachments): a lease on
 * one cast, stamped by the controller about to hand it to the bus and
 * committed at once, so that no row lock is held while NATS takes the cast
 * (up to its publish timeout when NATS is away). Other senders of that cast
 * pass the row by while the lease lives; a newer cast on the row is not held
 * up by a lease on an older one. Null when nobody is sending. See
 * controller/compute/cast-outbox.ts.
 *
 * And `servers.pending_cast_id` as text on PostgreSQL: a snapshot's cast id
 * (`snapshot.<server uuid>.<image uuid>`, 82 characters) did not fit its
 * varchar(64), which SQLite never enforced.
 */
import type { Kysely, Migration } from 'kysely'
import { engineOf } from '../engine.js'

export const migration: Migration = {
  async up(db: Kysely<unknown>) {
    for (const table of ['servers', 'volumes', 'volume_snapshots', 'volume_attachments']) {
      // One column per statement: SQLite's ALTER TABLE adds one at a time.
      await db.schema.alterTable(table).addColumn('cast_claim_id', 'text').execute()
      await db.schema.alterTable(table).addColumn('cast_claimed_at', 'varchar(40)').execute()
    }
    if (engineOf(db) === 'postgres') await db.schema.alterTable('servers').alterColumn('pending_cast_id', (c) => c.setDataType('text')).execute()
  },
}

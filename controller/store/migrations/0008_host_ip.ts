/** The address a compute host reports (Nova's my_ip, shown as host_ip). */
import type { Kysely, Migration } from 'kysely'

export const migration: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema.alterTable('compute_hosts').addColumn('host_ip', 'varchar(64)', (c) => c.notNull().defaultTo('')).execute()
  },
}

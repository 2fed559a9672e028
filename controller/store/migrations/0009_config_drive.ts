/** Whether a server has a config drive (Nova's config_drive: 'True' or ''). */
import type { Kysely, Migration } from 'kysely'

export const migration: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema.alterTable('servers').addColumn('config_drive', 'varchar(8)', (c) => c.notNull().defaultTo('')).execute()
  },
}

/**
 * Server groups (Nova instance groups) and the group a server joined; and a
 * partial index for the cast re-sender, which looks every few seconds for the
 * few servers whose cast the bus has not taken.
 */
import { sql, type Kysely, type Migration } from 'kysely'

export const migration: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema
      .createTable('server_groups')
      .addColumn('id', 'varchar(36)', (c) => c.primaryKey())
      .addColumn('name', 'varchar(255)', (c) => c.notNull())
      .addColumn('policy', 'varchar(32)', (c) => c.notNull())
      .addColumn('max_server_per_host', 'integer', (c) => c.notNull().defaultTo(1))
      .addColumn('project_id', 'varchar(64)', (c) => c.notNull())
      .addColumn('user_id', 'varchar(64)', (c) => c.notNull())
      .addColumn('created_at', 'varchar(40)', (c) => c.notNull())
      .execute()
    await db.schema.createIndex('server_groups_project_idx').on('server_groups').column('project_id').execute()
    await db.schema.alterTable('servers').addColumn('server_group_id', 'varchar(36)', (c) => c.notNull().defaultTo('')).execute()
    await db.schema.createIndex('servers_group_idx').on('servers').columns(['server_group_id', 'deleted']).execute()
    await sql`CREATE INDEX servers_unsent_cast_idx ON servers (uuid) WHERE pending_cast_id != '' AND cast_sent_at IS NULL`.execute(db)
  },
}

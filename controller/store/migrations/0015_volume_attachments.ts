/**
 * Volume attachments (Cinder's attachment records, Nova's block device
 * mappings of attached volumes): one row per attachment of a volume to a
 * server, with its own status and its own pending cast (the durable cast
 * outbox, as volumes have: attach and detach are cast to the server's host).
 *
 * `server_device` and `server_volume` hold `<server>/<device>` and
 * `<server>/<volume>` while the attachment is live, NULL once it failed:
 * their unique indexes make "device taken" and "attached twice" impossible
 * even for concurrent requests (both SQLite and PostgreSQL let NULLs repeat).
 */
import type { Kysely, Migration } from 'kysely'

export const migration: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema
      .createTable('volume_attachments')
      .addColumn('id', 'varchar(36)', (c) => c.primaryKey())
      .addColumn('volume_id', 'varchar(36)', (c) => c.notNull().references('volumes.id'))
      .addColumn('server_id', 'varchar(36)', (c) => c.notNull())
      // The server's host when the attachment was made (Cinder's connector host).
      .addColumn('host', 'varchar(255)', (c) => c.notNull().defaultTo(''))
      // vdb…vdz (shown as /dev/vdX).
      .addColumn('device', 'varchar(32)', (c) => c.notNull())
      .addColumn('status', 'varchar(32)', (c) => c.notNull())
      .addColumn('status_reason', 'text', (c) => c.notNull().defaultTo(''))
      .addColumn('attach_mode', 'varchar(8)', (c) => c.notNull().defaultTo('rw'))
      .addColumn('server_device', 'varchar(80)', (c) => c.unique())
      .addColumn('server_volume', 'varchar(80)', (c) => c.unique())
      .addColumn('attached_at', 'varchar(40)')
      .addColumn('project_id', 'varchar(64)', (c) => c.notNull())
      .addColumn('user_id', 'varchar(64)', (c) => c.notNull())
      .addColumn('pending_cast_id', 'varchar(128)', (c) => c.notNull().defaultTo(''))
      .addColumn('pending_request_id', 'varchar(128)', (c) => c.notNull().defaultTo(''))
      .addColumn('cast_sent_at', 'varchar(40)')
      .addColumn('created_at', 'varchar(40)', (c) => c.notNull())
      .addColumn('updated_at', 'varchar(40)', (c) => c.notNull())
      .execute()
    await db.schema.createIndex('volume_attachments_volume_idx').on('volume_attachments').column('volume_id').execute()
    await db.schema.createIndex('volume_attachments_server_idx').on('volume_attachments').column('server_id').execute()
  },
}

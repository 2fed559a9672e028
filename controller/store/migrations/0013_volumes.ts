/**
 * Block storage (Cinder): volume types (with `__DEFAULT__`), volumes,
 * volume snapshots, and the capacity each host's volume backend reports.
 * Volumes and snapshots carry their pending cast as servers do (the durable
 * cast outbox: recorded before it is sent, `cast_sent_at` once the bus has it).
 */
import { sql, type CreateTableBuilder, type Kysely, type Migration } from 'kysely'

/** Owner, the pending cast (the outbox) and timestamps: the columns volumes and snapshots share. */
function ownedWithPendingCast<T extends string>(t: CreateTableBuilder<T, never>): CreateTableBuilder<T, never> {
  return t
    .addColumn('project_id', 'varchar(64)', (c) => c.notNull())
    .addColumn('user_id', 'varchar(64)', (c) => c.notNull())
    .addColumn('pending_cast_id', 'varchar(128)', (c) => c.notNull().defaultTo(''))
    .addColumn('pending_request_id', 'varchar(128)', (c) => c.notNull().defaultTo(''))
    .addColumn('cast_sent_at', 'varchar(40)')
    .addColumn('created_at', 'varchar(40)', (c) => c.notNull())
    .addColumn('updated_at', 'varchar(40)', (c) => c.notNull())
}

/** The id of the default volume type (Cinder creates `__DEFAULT__` in a migration too). */
export const DEFAULT_VOLUME_TYPE_ID = '00000000-0000-4000-8000-000000000001'

export const migration: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema
      .createTable('volume_types')
      .addColumn('id', 'varchar(36)', (c) => c.primaryKey())
      .addColumn('name', 'varchar(255)', (c) => c.notNull().unique())
      .addColumn('description', 'varchar(255)', (c) => c.notNull().defaultTo(''))
      .addColumn('is_public', 'integer', (c) => c.notNull().defaultTo(1))
      // JSON object of extra specs.
      .addColumn('extra_specs', 'text', (c) => c.notNull().defaultTo('{}'))
      .addColumn('created_at', 'varchar(40)', (c) => c.notNull())
      .addColumn('updated_at', 'varchar(40)', (c) => c.notNull())
      .execute()
    const ts = new Date().toISOString()
    await sql`INSERT INTO volume_types (id, name, description, is_public, extra_specs, created_at, updated_at) VALUES (${DEFAULT_VOLUME_TYPE_ID}, '__DEFAULT__', 'Default Volume Type', 1, '{}', ${ts}, ${ts})`.execute(db)

    await db.schema
      .createTable('volumes')
      .addColumn('id', 'varchar(36)', (c) => c.primaryKey())
      .addColumn('name', 'varchar(255)', (c) => c.notNull().defaultTo(''))
      .addColumn('description', 'varchar(255)', (c) => c.notNull().defaultTo(''))
      .addColumn('size', 'integer', (c) => c.notNull())
      // The size an extend in progress grows it to (counted by the gigabytes quota), else 0.
      .addColumn('pending_size', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('status', 'varchar(32)', (c) => c.notNull())
      .addColumn('status_reason', 'text', (c) => c.notNull().defaultTo(''))
      .addColumn('bootable', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('volume_type_id', 'varchar(36)', (c) => c.notNull().references('volume_types.id'))
      .addColumn('availability_zone', 'varchar(255)', (c) => c.notNull())
      .addColumn('source_volid', 'varchar(36)', (c) => c.notNull().defaultTo(''))
      .addColumn('snapshot_id', 'varchar(36)', (c) => c.notNull().defaultTo(''))
      .addColumn('image_id', 'varchar(36)', (c) => c.notNull().defaultTo(''))
      .addColumn('volume_image_metadata', 'text', (c) => c.notNull().defaultTo('{}'))
      .addColumn('multiattach', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('metadata', 'text', (c) => c.notNull().defaultTo('{}'))
      // The backend host the volume lives on ('' until scheduled).
      .addColumn('host', 'varchar(255)', (c) => c.notNull().defaultTo(''))
      .$call(ownedWithPendingCast)
      .execute()
    await db.schema.createIndex('volumes_project_idx').on('volumes').column('project_id').execute()
    await db.schema.createIndex('volumes_host_idx').on('volumes').column('host').execute()

    await db.schema
      .createTable('volume_snapshots')
      .addColumn('id', 'varchar(36)', (c) => c.primaryKey())
      .addColumn('name', 'varchar(255)', (c) => c.notNull().defaultTo(''))
      .addColumn('description', 'varchar(255)', (c) => c.notNull().defaultTo(''))
      .addColumn('volume_id', 'varchar(36)', (c) => c.notNull().references('volumes.id'))
      .addColumn('size', 'integer', (c) => c.notNull())
      .addColumn('status', 'varchar(32)', (c) => c.notNull())
      .addColumn('status_reason', 'text', (c) => c.notNull().defaultTo(''))
      .addColumn('metadata', 'text', (c) => c.notNull().defaultTo('{}'))
      .$call(ownedWithPendingCast)
      .execute()
    await db.schema.createIndex('volume_snapshots_volume_idx').on('volume_snapshots').column('volume_id').execute()
    await db.schema.createIndex('volume_snapshots_project_idx').on('volume_snapshots').column('project_id').execute()

    await db.schema
      .createTable('volume_backends')
      .addColumn('host', 'varchar(255)', (c) => c.primaryKey())
      .addColumn('backend_name', 'varchar(255)', (c) => c.notNull())
      .addColumn('total_gb', 'integer', (c) => c.notNull())
      .addColumn('free_gb', 'integer', (c) => c.notNull())
      .addColumn('updated_at', 'varchar(40)', (c) => c.notNull())
      .execute()
  },
}

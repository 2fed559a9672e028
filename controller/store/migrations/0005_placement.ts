/** Compute hosts and placement: resource providers, inventories, traits, allocations. */
import type { Kysely, Migration } from 'kysely'
import { engineOf } from '../engine.js'

export const migration: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema
      .createTable('resource_providers')
      .addColumn('uuid', 'varchar(36)', (c) => c.primaryKey())
      .addColumn('name', 'varchar(255)', (c) => c.notNull().unique())
      .addColumn('generation', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('created_at', 'varchar(40)', (c) => c.notNull())
      .execute()
    await db.schema
      .createTable('compute_hosts')
      .addColumn('host', 'varchar(255)', (c) => c.primaryKey())
      .addColumn('uuid', 'varchar(36)', (c) => c.notNull().unique().references('resource_providers.uuid').onDelete('cascade'))
      .addColumn('availability_zone', 'varchar(255)', (c) => c.notNull())
      .addColumn('cpu_model', 'varchar(255)', (c) => c.notNull())
      .addColumn('arch', 'varchar(32)', (c) => c.notNull())
      .addColumn('accelerator', 'varchar(16)', (c) => c.notNull())
      .addColumn('hypervisor_type', 'varchar(64)', (c) => c.notNull())
      .addColumn('hypervisor_version', 'varchar(64)', (c) => c.notNull())
      .addColumn('vcpus', 'integer', (c) => c.notNull())
      .addColumn('memory_mb', 'bigint', (c) => c.notNull())
      .addColumn('disk_gb', 'bigint', (c) => c.notNull())
      .addColumn('mapped', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('mapped_at', 'varchar(40)')
      .addColumn('disabled', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('disabled_reason', 'varchar(255)', (c) => c.notNull().defaultTo(''))
      .addColumn('last_heartbeat_at', 'varchar(40)')
      .addColumn('created_at', 'varchar(40)', (c) => c.notNull())
      .addColumn('updated_at', 'varchar(40)', (c) => c.notNull())
      .execute()
    await db.schema
      .createTable('inventories')
      .addColumn('provider_uuid', 'varchar(36)', (c) => c.notNull().references('resource_providers.uuid').onDelete('cascade'))
      .addColumn('resource_class', 'varchar(255)', (c) => c.notNull())
      .addColumn('total', 'bigint', (c) => c.notNull())
      .addColumn('reserved', 'bigint', (c) => c.notNull())
      .addColumn('min_unit', 'bigint', (c) => c.notNull())
      .addColumn('max_unit', 'bigint', (c) => c.notNull())
      .addColumn('step_size', 'bigint', (c) => c.notNull())
      // SQLite's REAL is an 8-byte double; PostgreSQL's `real` is 4 bytes (1.1 would come back 1.10000002).
      .addColumn('allocation_ratio', engineOf(db) === 'postgres' ? 'double precision' : 'real', (c) => c.notNull())
      .addPrimaryKeyConstraint('inventories_pk', ['provider_uuid', 'resource_class'])
      .execute()
    await db.schema
      .createTable('provider_traits')
      .addColumn('provider_uuid', 'varchar(36)', (c) => c.notNull().references('resource_providers.uuid').onDelete('cascade'))
      .addColumn('trait', 'varchar(255)', (c) => c.notNull())
      .addPrimaryKeyConstraint('provider_traits_pk', ['provider_uuid', 'trait'])
      .execute()
    await db.schema
      .createTable('allocations')
      .addColumn('consumer_uuid', 'varchar(36)', (c) => c.notNull())
      .addColumn('provider_uuid', 'varchar(36)', (c) => c.notNull().references('resource_providers.uuid'))
      .addColumn('resource_class', 'varchar(255)', (c) => c.notNull())
      .addColumn('used', 'bigint', (c) => c.notNull())
      .addColumn('project_id', 'varchar(64)', (c) => c.notNull())
      .addColumn('user_id', 'varchar(64)', (c) => c.notNull())
      .addColumn('created_at', 'varchar(40)', (c) => c.notNull())
      .addPrimaryKeyConstraint('allocations_pk', ['consumer_uuid', 'provider_uuid', 'resource_class'])
      .execute()
    await db.schema.createIndex('allocations_provider_idx').on('allocations').columns(['provider_uuid', 'resource_class']).execute()
    await db.schema.createIndex('allocations_project_idx').on('allocations').columns(['project_id', 'resource_class']).execute()
  },
}

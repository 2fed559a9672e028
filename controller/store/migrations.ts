/**
 * Versioned schema migrations, applied in name order by Kysely's Migrator.
 * Never edit a released migration: add a new one.
 */
import { sql, type Kysely, type Migration } from 'kysely'

export const migrations: Record<string, Migration> = {
  '0001_identity': {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('domains')
        .addColumn('id', 'varchar(64)', (c) => c.primaryKey())
        .addColumn('name', 'varchar(64)', (c) => c.notNull().unique())
        .addColumn('description', 'text', (c) => c.notNull().defaultTo(''))
        .addColumn('enabled', 'integer', (c) => c.notNull().defaultTo(1))
        .addColumn('created_at', 'varchar(40)', (c) => c.notNull())
        .execute()
      await db.schema
        .createTable('projects')
        .addColumn('id', 'varchar(64)', (c) => c.primaryKey())
        .addColumn('name', 'varchar(64)', (c) => c.notNull())
        .addColumn('domain_id', 'varchar(64)', (c) => c.notNull().references('domains.id').onDelete('cascade'))
        .addColumn('description', 'text', (c) => c.notNull().defaultTo(''))
        .addColumn('enabled', 'integer', (c) => c.notNull().defaultTo(1))
        .addColumn('created_at', 'varchar(40)', (c) => c.notNull())
        .addUniqueConstraint('projects_domain_name', ['domain_id', 'name'])
        .execute()
      await db.schema
        .createTable('users')
        .addColumn('id', 'varchar(64)', (c) => c.primaryKey())
        .addColumn('name', 'varchar(255)', (c) => c.notNull())
        .addColumn('domain_id', 'varchar(64)', (c) => c.notNull().references('domains.id').onDelete('cascade'))
        .addColumn('password_hash', 'text', (c) => c.notNull())
        .addColumn('enabled', 'integer', (c) => c.notNull().defaultTo(1))
        .addColumn('default_project_id', 'varchar(64)', (c) => c.references('projects.id').onDelete('set null'))
        .addColumn('description', 'text', (c) => c.notNull().defaultTo(''))
        .addColumn('email', 'varchar(255)', (c) => c.notNull().defaultTo(''))
        .addColumn('password_changed_at', 'varchar(40)', (c) => c.notNull())
        .addColumn('created_at', 'varchar(40)', (c) => c.notNull())
        .addUniqueConstraint('users_domain_name', ['domain_id', 'name'])
        .execute()
      await db.schema
        .createTable('roles')
        .addColumn('id', 'varchar(64)', (c) => c.primaryKey())
        .addColumn('name', 'varchar(255)', (c) => c.notNull().unique())
        .addColumn('description', 'text', (c) => c.notNull().defaultTo(''))
        .execute()
      await db.schema
        .createTable('role_implications')
        .addColumn('prior_role_id', 'varchar(64)', (c) => c.notNull().references('roles.id').onDelete('cascade'))
        .addColumn('implied_role_id', 'varchar(64)', (c) => c.notNull().references('roles.id').onDelete('cascade'))
        .addPrimaryKeyConstraint('role_implications_pk', ['prior_role_id', 'implied_role_id'])
        .execute()
      await db.schema
        .createTable('role_assignments')
        .addColumn('role_id', 'varchar(64)', (c) => c.notNull().references('roles.id').onDelete('cascade'))
        .addColumn('user_id', 'varchar(64)', (c) => c.notNull().references('users.id').onDelete('cascade'))
        .addColumn('target_type', 'varchar(16)', (c) => c.notNull())
        .addColumn('target_id', 'varchar(64)', (c) => c.notNull())
        .addPrimaryKeyConstraint('role_assignments_pk', ['role_id', 'user_id', 'target_type', 'target_id'])
        .execute()
      await db.schema.createIndex('role_assignments_target').on('role_assignments').columns(['target_type', 'target_id']).execute()
      await db.schema.createIndex('role_assignments_user').on('role_assignments').column('user_id').execute()
      await db.schema
        .createTable('revocation_events')
        .addColumn('id', 'integer', (c) => c.primaryKey().autoIncrement())
        .addColumn('audit_id', 'varchar(64)')
        .addColumn('audit_chain_id', 'varchar(64)')
        .addColumn('user_id', 'varchar(64)')
        .addColumn('project_id', 'varchar(64)')
        .addColumn('domain_id', 'varchar(64)')
        .addColumn('scope_domain_id', 'varchar(64)')
        .addColumn('role_id', 'varchar(64)')
        .addColumn('issued_before', 'bigint', (c) => c.notNull())
        .addColumn('created_at', 'varchar(40)', (c) => c.notNull())
        .execute()
      await db.schema.createIndex('revocation_events_issued').on('revocation_events').column('issued_before').execute()
      void sql
    },
  },
  '0002_compute_catalogs': {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('flavors')
        .addColumn('id', 'varchar(255)', (c) => c.primaryKey())
        .addColumn('name', 'varchar(255)', (c) => c.notNull().unique())
        .addColumn('vcpus', 'integer', (c) => c.notNull())
        .addColumn('ram', 'integer', (c) => c.notNull())
        .addColumn('disk', 'integer', (c) => c.notNull())
        .addColumn('ephemeral', 'integer', (c) => c.notNull())
        .addColumn('swap', 'integer', (c) => c.notNull())
        .addColumn('is_public', 'integer', (c) => c.notNull())
        .addColumn('description', 'text', (c) => c.notNull().defaultTo(''))
        .addColumn('created_at', 'varchar(40)', (c) => c.notNull())
        .execute()
      await db.schema
        .createTable('flavor_extra_specs')
        .addColumn('flavor_id', 'varchar(255)', (c) => c.notNull().references('flavors.id').onDelete('cascade'))
        .addColumn('key', 'varchar(255)', (c) => c.notNull())
        .addColumn('value', 'varchar(255)', (c) => c.notNull())
        .addPrimaryKeyConstraint('flavor_extra_specs_pk', ['flavor_id', 'key'])
        .execute()
      await db.schema
        .createTable('flavor_projects')
        .addColumn('flavor_id', 'varchar(255)', (c) => c.notNull().references('flavors.id').onDelete('cascade'))
        .addColumn('project_id', 'varchar(64)', (c) => c.notNull().references('projects.id').onDelete('cascade'))
        .addPrimaryKeyConstraint('flavor_projects_pk', ['flavor_id', 'project_id'])
        .execute()
      await db.schema
        .createTable('keypairs')
        .addColumn('user_id', 'varchar(64)', (c) => c.notNull().references('users.id').onDelete('cascade'))
        .addColumn('name', 'varchar(255)', (c) => c.notNull())
        .addColumn('type', 'varchar(16)', (c) => c.notNull())
        .addColumn('public_key', 'text', (c) => c.notNull())
        .addColumn('fingerprint', 'varchar(64)', (c) => c.notNull())
        .addColumn('fingerprint_sha256', 'varchar(64)', (c) => c.notNull())
        .addColumn('created_at', 'varchar(40)', (c) => c.notNull())
        .addPrimaryKeyConstraint('keypairs_pk', ['user_id', 'name'])
        .execute()
      await db.schema
        .createTable('project_quotas')
        .addColumn('project_id', 'varchar(64)', (c) => c.notNull().references('projects.id').onDelete('cascade'))
        .addColumn('resource', 'varchar(64)', (c) => c.notNull())
        .addColumn('hard_limit', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('project_quotas_pk', ['project_id', 'resource'])
        .execute()
    },
  },
}

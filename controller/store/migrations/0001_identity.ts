/** Identity: domains, projects, users, roles, assignments, revocation events. */
import type { Kysely, Migration } from 'kysely'
import { engineOf } from '../engine.js'

export const migration: Migration = {
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
      // SQLite's AUTOINCREMENT key; PostgreSQL's equivalent is a serial column.
      .$call((t) => (engineOf(db) === 'postgres' ? t.addColumn('id', 'serial', (c) => c.primaryKey()) : t.addColumn('id', 'integer', (c) => c.primaryKey().autoIncrement())))
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
  },
}

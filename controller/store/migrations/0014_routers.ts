/**
 * Neutron L3: routers (their interfaces and gateway are ports with the
 * router as device id), the router a floating IP is associated through, and
 * which hosts' agents have the L3 role.
 */
import type { Kysely, Migration } from 'kysely'

export const migration: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema
      .createTable('routers')
      .addColumn('id', 'varchar(36)', (c) => c.primaryKey())
      .addColumn('project_id', 'varchar(64)', (c) => c.notNull())
      .addColumn('name', 'varchar(255)', (c) => c.notNull())
      .addColumn('description', 'text', (c) => c.notNull().defaultTo(''))
      .addColumn('admin_state_up', 'integer', (c) => c.notNull())
      .addColumn('status', 'varchar(16)', (c) => c.notNull())
      // The network:router_gateway port; null without a gateway.
      .addColumn('gw_port_id', 'varchar(36)', (c) => c.references('ports.id'))
      .addColumn('enable_snat', 'integer', (c) => c.notNull().defaultTo(1))
      // JSON: Array<{ destination: string; nexthop: string }>
      .addColumn('routes', 'text', (c) => c.notNull().defaultTo('[]'))
      // The host whose L3 agent holds the router ('' when not placed).
      .addColumn('l3_host', 'varchar(255)', (c) => c.notNull().defaultTo(''))
      .addColumn('revision_number', 'integer', (c) => c.notNull())
      .addColumn('created_at', 'varchar(40)', (c) => c.notNull())
      .addColumn('updated_at', 'varchar(40)', (c) => c.notNull())
      .execute()
    await db.schema.createIndex('routers_project_idx').on('routers').column('project_id').execute()
    await db.schema.createIndex('routers_l3_host_idx').on('routers').column('l3_host').execute()
    await db.schema.alterTable('floating_ips').addColumn('router_id', 'varchar(36)').execute()
    await db.schema.createIndex('floating_ips_router_idx').on('floating_ips').column('router_id').execute()
    await db.schema.alterTable('compute_hosts').addColumn('l3', 'integer', (c) => c.notNull().defaultTo(1)).execute()
  },
}

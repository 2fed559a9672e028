/** Networking: networks, subnets, ports and their addresses, security groups, floating IPs. */
import { sql, type CreateTableBuilder, type Kysely, type Migration } from 'kysely'

export const migration: Migration = {
  async up(db: Kysely<unknown>) {
    const stamps = (t: CreateTableBuilder<string, string>) =>
      t.addColumn('created_at', 'varchar(40)', (c) => c.notNull()).addColumn('updated_at', 'varchar(40)', (c) => c.notNull())

    await stamps(
      db.schema
        .createTable('networks')
        .addColumn('id', 'varchar(36)', (c) => c.primaryKey())
        .addColumn('project_id', 'varchar(64)', (c) => c.notNull())
        .addColumn('name', 'varchar(255)', (c) => c.notNull())
        .addColumn('description', 'text', (c) => c.notNull().defaultTo(''))
        .addColumn('admin_state_up', 'integer', (c) => c.notNull())
        .addColumn('shared', 'integer', (c) => c.notNull())
        .addColumn('router_external', 'integer', (c) => c.notNull())
        .addColumn('network_type', 'varchar(16)', (c) => c.notNull())
        .addColumn('physical_network', 'varchar(64)')
        .addColumn('segmentation_id', 'integer')
        .addColumn('mtu', 'integer', (c) => c.notNull())
        .addColumn('status', 'varchar(16)', (c) => c.notNull())
        .addColumn('revision_number', 'integer', (c) => c.notNull()),
    ).execute()
    await db.schema.createIndex('networks_project_idx').on('networks').column('project_id').execute()
    // One flat network per physical network; one vlan network per (physnet, VLAN id).
    await db.schema.createIndex('networks_flat_uq').unique().on('networks').column('physical_network').where(sql.ref('network_type'), '=', 'flat').execute()
    await db.schema.createIndex('networks_vlan_uq').unique().on('networks').columns(['physical_network', 'segmentation_id']).where(sql.ref('network_type'), '=', 'vlan').execute()

    await stamps(
      db.schema
        .createTable('subnets')
        .addColumn('id', 'varchar(36)', (c) => c.primaryKey())
        .addColumn('network_id', 'varchar(36)', (c) => c.notNull().references('networks.id').onDelete('cascade'))
        .addColumn('project_id', 'varchar(64)', (c) => c.notNull())
        .addColumn('name', 'varchar(255)', (c) => c.notNull())
        .addColumn('description', 'text', (c) => c.notNull().defaultTo(''))
        .addColumn('ip_version', 'integer', (c) => c.notNull())
        .addColumn('cidr', 'varchar(64)', (c) => c.notNull())
        .addColumn('gateway_ip', 'varchar(64)')
        .addColumn('enable_dhcp', 'integer', (c) => c.notNull())
        .addColumn('allocation_pools', 'text', (c) => c.notNull())
        .addColumn('dns_nameservers', 'text', (c) => c.notNull())
        .addColumn('host_routes', 'text', (c) => c.notNull())
        .addColumn('revision_number', 'integer', (c) => c.notNull()),
    ).execute()
    await db.schema.createIndex('subnets_network_idx').on('subnets').column('network_id').execute()
    await db.schema.createIndex('subnets_project_idx').on('subnets').column('project_id').execute()

    await stamps(
      db.schema
        .createTable('ports')
        .addColumn('id', 'varchar(36)', (c) => c.primaryKey())
        .addColumn('network_id', 'varchar(36)', (c) => c.notNull().references('networks.id'))
        .addColumn('project_id', 'varchar(64)', (c) => c.notNull())
        .addColumn('name', 'varchar(255)', (c) => c.notNull())
        .addColumn('description', 'text', (c) => c.notNull().defaultTo(''))
        .addColumn('mac_address', 'varchar(17)', (c) => c.notNull().unique())
        .addColumn('admin_state_up', 'integer', (c) => c.notNull())
        .addColumn('status', 'varchar(16)', (c) => c.notNull())
        .addColumn('device_owner', 'varchar(255)', (c) => c.notNull())
        .addColumn('device_id', 'varchar(255)', (c) => c.notNull())
        .addColumn('revision_number', 'integer', (c) => c.notNull()),
    ).execute()
    await db.schema.createIndex('ports_network_idx').on('ports').column('network_id').execute()
    await db.schema.createIndex('ports_project_idx').on('ports').column('project_id').execute()
    await db.schema.createIndex('ports_device_idx').on('ports').column('device_id').execute()

    await db.schema
      .createTable('ip_allocations')
      .addColumn('port_id', 'varchar(36)', (c) => c.notNull().references('ports.id').onDelete('cascade'))
      .addColumn('subnet_id', 'varchar(36)', (c) => c.notNull().references('subnets.id'))
      .addColumn('network_id', 'varchar(36)', (c) => c.notNull())
      .addColumn('ip_address', 'varchar(64)', (c) => c.notNull())
      .addColumn('ip_key', 'varchar(32)', (c) => c.notNull())
      // The backstop: one address is never held twice.
      .addUniqueConstraint('ip_allocations_address_uq', ['subnet_id', 'ip_address'])
      .execute()
    await db.schema.createIndex('ip_allocations_key_uq').unique().on('ip_allocations').columns(['subnet_id', 'ip_key']).execute()
    await db.schema.createIndex('ip_allocations_port_idx').on('ip_allocations').column('port_id').execute()

    await stamps(
      db.schema
        .createTable('security_groups')
        .addColumn('id', 'varchar(36)', (c) => c.primaryKey())
        .addColumn('project_id', 'varchar(64)', (c) => c.notNull())
        .addColumn('name', 'varchar(255)', (c) => c.notNull())
        .addColumn('description', 'text', (c) => c.notNull().defaultTo(''))
        .addColumn('stateful', 'integer', (c) => c.notNull())
        .addColumn('is_default', 'integer', (c) => c.notNull())
        .addColumn('revision_number', 'integer', (c) => c.notNull()),
    ).execute()
    await db.schema.createIndex('security_groups_project_idx').on('security_groups').column('project_id').execute()
    // One `default` group per project, even when two first uses race.
    await db.schema.createIndex('security_groups_default_uq').unique().on('security_groups').column('project_id').where(sql.ref('is_default'), '=', 1).execute()

    await db.schema
      .createTable('security_group_rules')
      .addColumn('id', 'varchar(36)', (c) => c.primaryKey())
      .addColumn('security_group_id', 'varchar(36)', (c) => c.notNull().references('security_groups.id').onDelete('cascade'))
      .addColumn('project_id', 'varchar(64)', (c) => c.notNull())
      .addColumn('direction', 'varchar(8)', (c) => c.notNull())
      .addColumn('ethertype', 'varchar(8)', (c) => c.notNull())
      .addColumn('protocol', 'varchar(40)')
      .addColumn('port_range_min', 'integer')
      .addColumn('port_range_max', 'integer')
      .addColumn('remote_ip_prefix', 'varchar(64)')
      .addColumn('remote_group_id', 'varchar(36)', (c) => c.references('security_groups.id').onDelete('cascade'))
      .addColumn('description', 'text', (c) => c.notNull().defaultTo(''))
      .addColumn('canonical', 'varchar(255)', (c) => c.notNull())
      .addColumn('created_at', 'varchar(40)', (c) => c.notNull())
      .addUniqueConstraint('security_group_rules_uq', ['security_group_id', 'canonical'])
      .execute()
    await db.schema.createIndex('security_group_rules_project_idx').on('security_group_rules').column('project_id').execute()
    await db.schema.createIndex('security_group_rules_remote_idx').on('security_group_rules').column('remote_group_id').execute()

    await db.schema
      .createTable('port_security_groups')
      .addColumn('port_id', 'varchar(36)', (c) => c.notNull().references('ports.id').onDelete('cascade'))
      .addColumn('security_group_id', 'varchar(36)', (c) => c.notNull().references('security_groups.id'))
      .addPrimaryKeyConstraint('port_security_groups_pk', ['port_id', 'security_group_id'])
      .execute()
    await db.schema.createIndex('port_security_groups_sg_idx').on('port_security_groups').column('security_group_id').execute()

    await stamps(
      db.schema
        .createTable('floating_ips')
        .addColumn('id', 'varchar(36)', (c) => c.primaryKey())
        .addColumn('project_id', 'varchar(64)', (c) => c.notNull())
        .addColumn('description', 'text', (c) => c.notNull().defaultTo(''))
        .addColumn('floating_network_id', 'varchar(36)', (c) => c.notNull().references('networks.id'))
        .addColumn('floating_ip_address', 'varchar(64)', (c) => c.notNull())
        .addColumn('floating_port_id', 'varchar(36)', (c) => c.notNull().references('ports.id'))
        .addColumn('port_id', 'varchar(36)', (c) => c.references('ports.id'))
        .addColumn('fixed_ip_address', 'varchar(64)')
        .addColumn('status', 'varchar(16)', (c) => c.notNull())
        .addColumn('revision_number', 'integer', (c) => c.notNull())
        // One floating IP per fixed address of a port.
        .addUniqueConstraint('floating_ips_fixed_uq', ['port_id', 'fixed_ip_address']),
    ).execute()
    await db.schema.createIndex('floating_ips_project_idx').on('floating_ips').column('project_id').execute()
  },
}

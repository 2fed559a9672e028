// dhcp-ports.test.ts on PostgreSQL (the tap run's shared cluster, see test/helpers/postgres-run.ts): network:dhcp ports made and removed per (host, network) as agents ask, quotas, and Neutron's auto-delete of a network's DHCP ports.
process.env.STRATO_TEST_DATABASE = 'postgres'
await import('./dhcp-ports.test.js')

// keypair-limits.test.ts on PostgreSQL (the tap run's shared cluster, see test/helpers/postgres-run.ts): oversized keys refused before anything is stored; a key at the limits stored and read back whole.
process.env.STRATO_TEST_DATABASE = 'postgres'
await import('./keypair-limits.test.js')

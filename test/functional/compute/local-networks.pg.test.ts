// local-networks.test.ts on PostgreSQL (the tap run's shared cluster, see test/helpers/postgres-run.ts): placement of servers on local networks read from port and server rows, and the claims under the scheduler's locks.
process.env.STRATO_TEST_DATABASE = 'postgres'
await import('./local-networks.test.js')

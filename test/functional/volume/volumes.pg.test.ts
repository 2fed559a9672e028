// volumes.test.ts on PostgreSQL (the tap run's shared cluster, see test/helpers/postgres-run.ts): quotas under 50 concurrent creates, per-type quotas in the creating transaction, snapshots and their cascade.
process.env.STRATO_TEST_DATABASE = 'postgres'
await import('./volumes.test.js')

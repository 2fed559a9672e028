// cast-outbox.test.ts on PostgreSQL (the tap run's shared cluster, see test/helpers/postgres-run.ts): the claims.
process.env.STRATO_TEST_DATABASE = 'postgres'
await import('./cast-outbox.test.js')

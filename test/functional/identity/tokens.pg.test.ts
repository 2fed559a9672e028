// tokens.test.ts on PostgreSQL (the tap run's shared cluster, see test/helpers/postgres-run.ts): tokens, revocation events and signing-key rotation as stored rows.
process.env.STRATO_TEST_DATABASE = 'postgres'
await import('./tokens.test.js')

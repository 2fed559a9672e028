// cast-outbox.test.ts on PostgreSQL (a private cluster, started once for this file): the claims.
process.env.STRATO_TEST_DATABASE = 'postgres'
await import('./cast-outbox.test.js')

// servers.test.ts on PostgreSQL (the tap run's shared cluster, see test/helpers/postgres-run.ts): quotas under concurrent creates, server groups (placed under a session lock), a failed build giving its claims back, the cast outbox.
process.env.STRATO_TEST_DATABASE = 'postgres'
await import('./servers.test.js')

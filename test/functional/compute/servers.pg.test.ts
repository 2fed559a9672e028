// servers.test.ts on PostgreSQL (this process's private cluster, started once): quotas under concurrent creates, server groups (placed under a session lock), a failed build giving its claims back, the cast outbox.
process.env.STRATO_TEST_DATABASE = 'postgres'
await import('./servers.test.js')

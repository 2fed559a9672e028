// scheduler.test.ts on PostgreSQL (this process's private cluster, started once): placement claims (provider row locks) and quota claims under 200 concurrent requests.
process.env.STRATO_TEST_DATABASE = 'postgres'
await import('./scheduler.test.js')

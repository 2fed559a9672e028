// scheduler.test.ts on PostgreSQL (the tap run's shared cluster, see test/helpers/postgres-run.ts): placement claims (provider row locks) and quota claims under 200 concurrent requests.
process.env.STRATO_TEST_DATABASE = 'postgres'
await import('./scheduler.test.js')

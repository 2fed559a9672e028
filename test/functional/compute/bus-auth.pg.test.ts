// bus-auth.test.ts on PostgreSQL (the tap run's shared cluster, see test/helpers/postgres-run.ts): the conductor's build specs and host records read for agents with their own credentials, and the events that speak for another host changing no row.
process.env.STRATO_TEST_DATABASE = 'postgres'
await import('./bus-auth.test.js')

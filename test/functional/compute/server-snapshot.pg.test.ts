// server-snapshot.test.ts on PostgreSQL (the tap run's shared cluster, see test/helpers/postgres-run.ts): a snapshot's task_state steps and image rows, quota refusals that change nothing, a failed snapshot's clean-up.
process.env.STRATO_TEST_DATABASE = 'postgres'
await import('./server-snapshot.test.js')

// data-path.test.ts on PostgreSQL (the tap run's shared cluster, see test/helpers/postgres-run.ts): image uploads on both data paths claiming queued → saving and ending active (or queued again), with the rows each step writes.
process.env.STRATO_TEST_DATABASE = 'postgres'
await import('./data-path.test.js')

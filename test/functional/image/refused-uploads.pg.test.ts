// refused-uploads.test.ts on PostgreSQL (the tap run's shared cluster, see test/helpers/postgres-run.ts): a refused upload leaves the image queued with its reason and no data, its rows as before.
process.env.STRATO_TEST_DATABASE = 'postgres'
await import('./refused-uploads.test.js')

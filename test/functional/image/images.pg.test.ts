// images.test.ts on PostgreSQL (the tap run's shared cluster, see test/helpers/postgres-run.ts): image quotas (image_size_total), upload claims (queued → saving by one conditional update), visibility and membership reads.
process.env.STRATO_TEST_DATABASE = 'postgres'
await import('./images.test.js')

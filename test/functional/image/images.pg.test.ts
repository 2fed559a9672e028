// images.test.ts on PostgreSQL (this process's private cluster, started once): image quotas (image_size_total), upload claims (queued → saving by one conditional update), visibility and membership reads.
process.env.STRATO_TEST_DATABASE = 'postgres'
await import('./images.test.js')

// volume-backed-snapshot.test.ts on PostgreSQL (the tap run's shared cluster, see test/helpers/postgres-run.ts): snapshots of a server's volumes and the image whose block_device_mapping names them, a server booted from it, a quota refusal changing nothing.
process.env.STRATO_TEST_DATABASE = 'postgres'
await import('./volume-backed-snapshot.test.js')

// boot-from-volume.test.ts on PostgreSQL (the tap run's shared cluster, see test/helpers/postgres-run.ts): block device mappings stored with the server, volumes reserved → attaching → in-use, delete_on_termination, and a volumes quota refusal changing nothing.
process.env.STRATO_TEST_DATABASE = 'postgres'
await import('./boot-from-volume.test.js')

// attachments.test.ts on PostgreSQL (the tap run's shared cluster, see test/helpers/postgres-run.ts): attachment records and their states, attach/detach casts and results, refusals, delete_on_termination
process.env.STRATO_TEST_DATABASE = 'postgres'
await import('./attachments.test.js')

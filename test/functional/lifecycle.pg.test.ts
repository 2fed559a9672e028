// lifecycle.test.ts on PostgreSQL (the tap run's shared cluster, see test/helpers/postgres-run.ts): a stop that finishes an in-flight upload before the store's pool closes, and refuses new calls.
process.env.STRATO_TEST_DATABASE = 'postgres'
await import('./lifecycle.test.js')

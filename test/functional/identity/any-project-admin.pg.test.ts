// any-project-admin.test.ts on PostgreSQL (the tap run's shared cluster, see test/helpers/postgres-run.ts): role assignments read for who is a cloud admin, with and without bootstrap.anyProjectAdmin.
process.env.STRATO_TEST_DATABASE = 'postgres'
await import('./any-project-admin.test.js')

// stuck.test.ts on PostgreSQL (the tap run's shared cluster, see test/helpers/postgres-run.ts): the volume sweep finding work stuck on a dead host in the store and ending it as a failure, and the casts given up on skipped later.
process.env.STRATO_TEST_DATABASE = 'postgres'
await import('./stuck.test.js')

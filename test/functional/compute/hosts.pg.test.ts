// hosts.test.ts on PostgreSQL (the tap run's shared cluster, see test/helpers/postgres-run.ts): host records (announce, map, disable with a reason), heartbeats written and read back for liveness, casts to mapped hosts.
process.env.STRATO_TEST_DATABASE = 'postgres'
await import('./hosts.test.js')

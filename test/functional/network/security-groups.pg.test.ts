// security-groups.test.ts on PostgreSQL (the tap run's shared cluster, see test/helpers/postgres-run.ts): groups and rules, remote groups, the default group, rule quotas
process.env.STRATO_TEST_DATABASE = 'postgres'
await import('./security-groups.test.js')

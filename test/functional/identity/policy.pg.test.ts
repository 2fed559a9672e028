// policy.test.ts on PostgreSQL (the tap run's shared cluster, see test/helpers/postgres-run.ts): assignments read for cloud, domain and project scopes; nothing crossing domains.
process.env.STRATO_TEST_DATABASE = 'postgres'
await import('./policy.test.js')

// catalog.test.ts on PostgreSQL (the tap run's shared cluster, see test/helpers/postgres-run.ts): domains, projects, users, roles and assignments with Keystone's rules; duplicates (unique violations) and bad input changing nothing.
process.env.STRATO_TEST_DATABASE = 'postgres'
await import('./catalog.test.js')

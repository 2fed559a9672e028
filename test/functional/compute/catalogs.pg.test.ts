// catalogs.test.ts on PostgreSQL (the tap run's shared cluster, see test/helpers/postgres-run.ts): flavors (extra specs, access lists), keypairs, and quotas with exactly the quota admitted under 50 concurrent creates.
process.env.STRATO_TEST_DATABASE = 'postgres'
await import('./catalogs.test.js')

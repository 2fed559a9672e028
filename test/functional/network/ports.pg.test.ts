// ports.test.ts on PostgreSQL (the tap run's shared cluster, see test/helpers/postgres-run.ts): IP allocation under 200 concurrent creates (per-network advisory locks), pool exhaustion, port quotas, floating IPs.
process.env.STRATO_TEST_DATABASE = 'postgres'
await import('./ports.test.js')

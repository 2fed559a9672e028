// ports.test.ts on PostgreSQL (this process's private cluster, started once): IP allocation under 200 concurrent creates (per-network advisory locks), pool exhaustion, port quotas, floating IPs.
process.env.STRATO_TEST_DATABASE = 'postgres'
await import('./ports.test.js')

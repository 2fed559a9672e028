// networks.test.ts on PostgreSQL (the tap run's shared cluster, see test/helpers/postgres-run.ts): networks and subnets, allocation pools, the seed's provider network
process.env.STRATO_TEST_DATABASE = 'postgres'
await import('./networks.test.js')

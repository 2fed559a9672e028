// routers.test.ts on PostgreSQL (the tap run's shared cluster, see test/helpers/postgres-run.ts): router interfaces, gateways, routes, floating IPs through routers, placement on L3 agents
process.env.STRATO_TEST_DATABASE = 'postgres'
await import('./routers.test.js')

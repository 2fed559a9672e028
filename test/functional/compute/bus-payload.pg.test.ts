// bus-payload.test.ts on PostgreSQL (the tap run's shared cluster, see test/helpers/postgres-run.ts): the largest build spec the API admits stored and read back whole (user_data, metadata, key), and a stored spec too large for the bus failing its build with a fault.
process.env.STRATO_TEST_DATABASE = 'postgres'
await import('./bus-payload.test.js')

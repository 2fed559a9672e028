// casts.test.ts on PostgreSQL (the tap run's shared cluster, see test/helpers/postgres-run.ts): request ids stored with a server's pending cast and carried to the agent (again after its restart), and servers caught rebooting found by the status filters (vm_state and task_state queries).
process.env.STRATO_TEST_DATABASE = 'postgres'
await import('./casts.test.js')

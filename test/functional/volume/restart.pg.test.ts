// restart.test.ts on PostgreSQL (the tap run's shared cluster, see test/helpers/postgres-run.ts): volume and attachment casts kept on their rows while the agent is down and done (once) when it is back; start-up sync of attachments.
process.env.STRATO_TEST_DATABASE = 'postgres'
await import('./restart.test.js')

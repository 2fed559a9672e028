// upload-crash.test.ts on PostgreSQL (the tap run's shared cluster, see test/helpers/postgres-run.ts): an upload's image saving and volume uploading rows as a SIGKILLed controller left them, found abandoned by the restarted controller and reset, nothing lost.
process.env.STRATO_TEST_DATABASE = 'postgres'
await import('./upload-crash.test.js')

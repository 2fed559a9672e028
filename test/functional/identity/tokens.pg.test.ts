// tokens.test.ts on PostgreSQL (this process's private cluster, started once): tokens, revocation events and signing-key rotation as stored rows.
process.env.STRATO_TEST_DATABASE = 'postgres'
await import('./tokens.test.js')

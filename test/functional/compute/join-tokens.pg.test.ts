// join-tokens.test.ts on PostgreSQL (the tap run's shared cluster, see test/helpers/postgres-run.ts): join tokens stored hashed, admitted once per token (one conditional update), refused forged, used or expired, nothing changed.
process.env.STRATO_TEST_DATABASE = 'postgres'
await import('./join-tokens.test.js')

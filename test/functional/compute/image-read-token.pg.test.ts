// image-read-token.test.ts on PostgreSQL (the tap run's shared cluster, see test/helpers/postgres-run.ts): the image-read token's image and host checked against stored images and servers.
process.env.STRATO_TEST_DATABASE = 'postgres'
await import('./image-read-token.test.js')

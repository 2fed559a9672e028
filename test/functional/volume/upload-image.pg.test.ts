// upload-image.test.ts on PostgreSQL (the tap run's shared cluster, see test/helpers/postgres-run.ts): a volume's upload to an image: the volume's status through uploading, the image row in its project, refusals changing nothing.
process.env.STRATO_TEST_DATABASE = 'postgres'
await import('./upload-image.test.js')

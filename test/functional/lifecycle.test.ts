// The controller's lifecycle: RUNNING → STOPPING → STOPPED; a stop finishes the calls in flight
// (here an image upload still streaming) and refuses new ones; health reports NOT_SERVING meanwhile.
// A start that fails part-way releases what it opened: an open PostgreSQL pool kept the process alive.
import { randomBytes } from 'node:crypto'
import t from 'tap'
import { Metadata, type ServiceError } from '@grpc/grpc-js'
import { eventually } from '../helpers/agents.js'
import { startController } from '../helpers/controller.js'
import { freePort } from '../helpers/ports.js'
import { sharedPostgres } from '../helpers/postgres.js'
import pg from 'pg'
import { call, client, failure, status } from '../helpers/grpc.js'
import { ImagesClient, type Image } from '../../proto/gen/strato/image/v1/image.js'
import { HealthClient, HealthCheckResponse_ServingStatus as Serving } from '../../proto/gen/grpc/health/v1/health.js'

t.test('stop finishes in-flight calls, then refuses new ones', async (t) => {
  const s = await startController()
  const images = client(ImagesClient, s.address)
  const health = client(HealthClient, s.address)
  t.teardown(() => {
    images.close()
    health.close()
  })
  t.equal(s.controller.state, 'RUNNING')
  t.equal((await call<{ status: number }>(health, 'check', { service: '' })).status, Serving.SERVING)

  const img = await call<Image>(images, 'createImage', { name: 'inflight', diskFormat: 'raw', containerFormat: 'bare' }, s.adminToken)
  const data = randomBytes(8 * 1024 * 1024)
  const md = new Metadata()
  md.set('x-auth-token', s.adminToken)
  let stream!: ReturnType<ImagesClient['uploadImage']>
  const done = new Promise<Image>((resolve, reject) => {
    stream = images.uploadImage(md, (err: ServiceError | null, res: Image) => (err ? reject(err) : resolve(res)))
  })
  stream.write({ imageId: img.id, size: data.length })
  stream.write({ data: data.subarray(0, 4 * 1024 * 1024) })
  // In flight means the controller has taken the call: the image is saving.
  await eventually(async () => (await call<Image>(images, 'getImage', { id: img.id }, s.adminToken)).status === 'saving', 20_000, 'the upload to start')

  const stopping = s.controller.stop()
  t.equal(s.controller.state, 'STOPPING', 'stop() moves to STOPPING at once')
  // The rest of the upload still arrives and the call completes.
  stream.write({ data: data.subarray(4 * 1024 * 1024) })
  stream.end()
  const finished = await done
  t.equal(finished.status, 'active', 'the in-flight upload finished')
  t.equal(finished.size, data.length)
  await stopping
  t.equal(s.controller.state, 'STOPPED')
  const refused = await failure(call(images, 'getImage', { id: img.id }, s.adminToken))
  t.equal(refused.code, status.UNAVAILABLE, 'new calls are refused once stopped')
  await s.close()
})

t.test('a start that fails part-way (NATS refuses) leaves no PostgreSQL connection open', async (t) => {
  const cluster = await sharedPostgres()
  const url = await cluster.createDatabase()
  const database = new URL(url).pathname.slice(1)
  await t.rejects(startController({ databaseUrl: url, natsUrl: `nats://127.0.0.1:${await freePort()}` }), 'nothing listens where NATS should be')
  const admin = new pg.Client({ connectionString: cluster.url('postgres') })
  await admin.connect()
  t.teardown(() => admin.end())
  const open = async () => Number((await admin.query('SELECT count(*) AS n FROM pg_stat_activity WHERE datname = $1', [database])).rows[0].n)
  // A backend goes a moment after its client closes.
  await eventually(async () => (await open()) === 0, 10_000, 'the failed start closed its connections').catch(() => undefined)
  t.equal(await open(), 0, 'no connection to its database is left (the pool was destroyed)')
})

// The agent's image download when the controller is away: grpc-js fails the call at once, often before
// the image cache has opened its file and started to read. That failure must come out of the iteration
// as Unavailable (the cast is postponed and retried), never as an unhandled 'error' that kills the agent
// (seen when the controller was SIGKILLed during a build: the agent died with exit code 1).
import t from 'tap'
import { GrpcImageSource } from '../../../../agent/disk/grpc-image-source.js'
import { freePort } from '../../../helpers/ports.js'

t.test('a download from a controller that is down fails when read, however late, as Unavailable', async (t) => {
  const port = await freePort() // nothing listens there
  const source = new GrpcImageSource(`grpc://127.0.0.1:${port}`, () => '')
  t.teardown(() => source.close())
  const { data } = await source.download('00000000-0000-4000-8000-000000000000', 'token', { checksum: 'x', diskFormat: 'qcow2', status: 'active' })
  // Read only after the call has surely failed (the cache opens its file first).
  await new Promise((r) => setTimeout(r, 1_000))
  await t.rejects(async () => {
    for await (const _ of data) t.fail('no data can come')
  }, { name: 'Unavailable' })
})

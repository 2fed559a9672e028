// The clients that download images advertise a wide HTTP/2 window (proto/grpc-channel.ts). With grpc-js's
// default of 64 KiB the controller sends an image 32-64 KiB per event-loop turn (issue 15: `image save`
// cost its event loop 2.25 CPU-s per GiB against 1.58). What each client puts in its SETTINGS frame is read
// here by a plain HTTP/2 server, as the controller's session sees it.
import http2 from 'node:http2'
import { once } from 'node:events'
import t, { type Test } from 'tap'
import { GrpcImageSource } from '../../../agent/disk/grpc-image-source.js'
import { Transport } from '../../../cli/strato/transport.js'
import { ImagesClient } from '../../../proto/gen/strato/image/v1/image.js'
import { BULK_FLOW_CONTROL_WINDOW } from '../../../proto/grpc-channel.js'

/** An h2c server that answers every call UNIMPLEMENTED and hands out each session's remote settings. */
async function settingsServer(t: Test): Promise<{ url: string; next: () => Promise<http2.Settings> }> {
  const server = http2.createServer()
  const seen: http2.Settings[] = []
  let wake: (() => void) | undefined
  server.on('session', (session) => session.once('remoteSettings', (s) => {
    seen.push(s)
    wake?.()
  }))
  server.on('stream', (stream) => stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '12' }, { endStream: true }))
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())))
  const { port } = server.address() as { port: number }
  return {
    url: `grpc://127.0.0.1:${port}`,
    next: async () => {
      while (!seen.length) await new Promise<void>((resolve) => (wake = resolve))
      return seen.shift()!
    },
  }
}

t.test("the CLI's channels advertise the bulk window (image save), not HTTP/2's 64 KiB", async (t) => {
  const s = await settingsServer(t)
  const transport = new Transport(s.url)
  t.teardown(() => transport.close())
  await t.rejects(transport.unary(transport.client(ImagesClient), 'getImage', { id: 'x' }))
  const got = await s.next()
  t.equal(got.initialWindowSize, BULK_FLOW_CONTROL_WINDOW, "the stream window in the CLI's SETTINGS")
})

t.test("the agent's image source advertises the bulk window", async (t) => {
  const s = await settingsServer(t)
  const source = new GrpcImageSource(s.url, () => 'token')
  t.teardown(() => source.close())
  await t.rejects(source.download('00000000-0000-4000-8000-000000000000'))
  const got = await s.next()
  t.equal(got.initialWindowSize, BULK_FLOW_CONTROL_WINDOW, "the stream window in the agent's SETTINGS")
})

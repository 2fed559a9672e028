import t from 'tap'
import { DEFAULT_MAX_PAYLOAD, encodeBounded } from '../../../proto/bus-payload.js'
import { ResourceExhausted } from '../../../proto/errors.js'

t.test('a message that fits is passed through, the same bytes', async (t) => {
  const bytes = new Uint8Array(1000)
  t.equal(encodeBounded('x', bytes, 1000), bytes, 'exactly at the limit')
  t.equal(encodeBounded('x', bytes, undefined), bytes, 'no limit known: the 1 MB default')
})

t.test('one byte over is ResourceExhausted naming the message, its size and the limit', async (t) => {
  const err = t.throws(() => encodeBounded('the build spec of server abc', new Uint8Array(1001), 1000)) as unknown
  t.type(err, ResourceExhausted)
  t.match((err as Error).message, /^the build spec of server abc is 1001 bytes; the message bus carries at most 1000 bytes in one message \(nats-server max_payload 1000\)$/)
})

t.test('room for headers counts against the limit', async (t) => {
  t.ok(encodeBounded('a cast', new Uint8Array(744), 1000, 256))
  t.throws(() => encodeBounded('a cast', new Uint8Array(745), 1000, 256), { name: 'ResourceExhausted', message: /a cast is 745 bytes; .* at most 744 bytes .*less 256 for headers/ })
})

t.test('with no known limit, the default is nats-server\'s 1 MB', async (t) => {
  t.equal(DEFAULT_MAX_PAYLOAD, 1 << 20)
  t.ok(encodeBounded('m', new Uint8Array(1 << 20), undefined))
  t.throws(() => encodeBounded('m', new Uint8Array((1 << 20) + 1), undefined), { message: /1048577 bytes/ })
  t.throws(() => encodeBounded('m', new Uint8Array((1 << 20) + 1), 0), { message: /1048577 bytes/ }, 'a zero limit (unknown) is the default too')
})

/** The controller's REST listener: beside gRPC, plaintext on loopback in tests, TLS with the gRPC certificate when TLS is on. */
import t from 'tap'
import { readFileSync } from 'node:fs'
import { request } from 'node:https'
import { startController } from '../../helpers/controller.js'

t.test('identity version discovery, and Keystone error bodies for unknown paths', async (t) => {
  const s = await startController()
  t.teardown(() => s.close())
  const origin = s.controller.rest!.origin
  t.match(origin, /^http:\/\/127\.0\.0\.1:\d+$/)
  let r = await fetch(`${origin}/identity/v3`)
  t.equal(r.status, 200)
  t.same(await r.json(), { version: { id: 'v3.14', status: 'stable', updated: '2020-04-07T00:00:00Z', 'media-types': [{ base: 'application/json', type: 'application/vnd.openstack.identity-v3+json' }], links: [{ rel: 'self', href: `${origin}/identity/v3/` }] } })
  r = await fetch(`${origin}/identity`)
  t.equal(r.status, 300)
  t.match(await r.json(), { versions: { values: [{ id: 'v3.14' }] } })
  r = await fetch(`${origin}/identity/v9`)
  t.equal(r.status, 404)
  t.match(await r.json(), { error: { code: 404, title: 'Not Found', message: /\/identity\/v9 could not be found/ } })
})

t.test('with TLS on, REST speaks HTTPS with the certificate clients already trust', async (t) => {
  const s = await startController({ tls: { mode: 'on' } })
  t.teardown(() => s.close())
  const origin = s.controller.rest!.origin
  t.match(origin, /^https:\/\//)
  const ca = readFileSync(s.caFile!)
  const body = await new Promise<string>((resolve, reject) => {
    request(`${origin}/identity/v3`, { ca }, (res) => {
      let b = ''
      res.on('data', (c) => (b += c))
      res.on('end', () => resolve(b))
    }).on('error', reject).end()
  })
  t.match(JSON.parse(body), { version: { id: 'v3.14' } })
  await t.rejects(fetch(`${origin.replace('https', 'http')}/identity/v3`), 'no plaintext on the TLS port')
})

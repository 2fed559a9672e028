/**
 * test/helpers/osc.ts, the shared openstack client the REST suites run most of
 * their commands in: it answers as `/usr/bin/openstack` does (exit code,
 * stdout, stderr, usage errors), and nothing of one command reaches the next —
 * not the credentials, not the endpoints or the API clients made for them, not
 * a failure. Two controllers, each with the openrc it wrote.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import t from 'tap'
import { openstackFiles, readOpenrc } from '../../../controller/identity/bootstrap.js'
import { startController, type TestController } from '../../helpers/controller.js'
import { OPENSTACK, hasOpenstack, openstackClient } from '../../helpers/osc.js'

if (!hasOpenstack()) {
  t.plan(0, `${OPENSTACK} is not installed (Debian python3-openstackclient)`)
} else {
  const home = mkdtempSync(path.join(tmpdir(), 'strato-osc-helper-'))
  const osc = openstackClient()
  let a: TestController
  let b: TestController
  t.before(async () => {
    a = await startController()
    b = await startController()
  })
  t.teardown(async () => {
    await osc.close()
    await a.close()
    await b.close()
    rmSync(home, { recursive: true, force: true })
  })
  const envOf = (s: TestController, extra: Record<string, string> = {}) =>
    ({ PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: home, ...readOpenrc(openstackFiles(path.join(s.dataDir, 'admin-openrc')).openrc), ...extra })

  t.test('each command uses its own environment: credentials, endpoints and the API clients made for them', async (t) => {
    for (const [s, other] of [[a, b], [b, a], [a, b]] as const) {
      const token = await osc.run(['token', 'issue', '-f', 'json'], { env: envOf(s) })
      t.equal(token.code, 0, token.stderr)
      const mine = (await fetch(`${s.controller.rest!.origin}/identity/v3/auth/tokens`, { headers: { 'x-auth-token': s.adminToken, 'x-subject-token': JSON.parse(token.stdout).id } })).status
      t.equal(mine, 200, 'the token is from this controller')
      // The identity client osc-lib caches on its ClientManager class: made again for each command.
      const endpoints = await osc.run(['endpoint', 'list', '--service', 'identity', '-f', 'json'], { env: envOf(s) })
      t.equal(endpoints.code, 0, endpoints.stderr)
      const urls = (JSON.parse(endpoints.stdout || '[]') as Array<{ URL: string }>).map((e) => e.URL)
      t.ok(urls.length > 0 && urls.every((u) => u.startsWith(s.controller.rest!.origin)), `this controller's catalog: ${urls.join(' ')}`)
      t.notOk(urls.some((u) => u.startsWith(other.controller.rest!.origin)), "not the other controller's")
    }
  })

  t.test("commands that change the client's own modules run again as the first time", async (t) => {
    // volume's make_client deletes API_VERSIONS['1'] when cinderclient has no v1: a KeyError the second time.
    for (let i = 0; i < 2; i++) {
      const r = await osc.run(['volume', 'list', '-f', 'json'], { env: envOf(a) })
      t.same({ code: r.code, stderr: r.stderr }, { code: 0, stderr: '' }, `volume list, run ${i + 1}`)
    }
  })

  t.test('a failure answers as the process does, and the next command is not affected by it', async (t) => {
    const bad = envOf(a, { OS_PASSWORD: 'wrong' })
    const [shared, proc] = [await osc.run(['project', 'list'], { env: bad }), await osc.run(['project', 'list'], { env: bad, process: true })]
    t.equal(shared.code, 1)
    t.match(shared.stderr, /401/)
    const requestId = (r: typeof shared) => ({ ...r, stderr: r.stderr.replace(/req-[0-9a-f-]{36}/g, 'req-…') })
    t.same(requestId(shared), requestId(proc), 'exit code, stdout and stderr as /usr/bin/openstack gives them (but the request id)')
    const after = await osc.run(['project', 'show', 'admin', '-c', 'name', '-f', 'value'], { env: envOf(a) })
    t.same(after, { code: 0, stdout: 'admin\n', stderr: '' })

    const usage = await osc.run(['flavor', 'create'], { env: envOf(a) })
    t.equal(usage.code, 2, 'argparse: exit 2')
    t.match(usage.stderr, /^usage: openstack flavor create[\s\S]*openstack flavor create: error: the following arguments are required: <flavor-name>/)
    t.same(usage, await osc.run(['flavor', 'create'], { env: envOf(a), process: true }), 'as the process says it')
    t.equal((await osc.run(['flavor', 'list', '-f', 'json'], { env: envOf(a) })).code, 0)
  })
}

// The real `strato` process (what `npx strato` runs: dist/cli/strato.js) against a real
// controller: output on stdout, exit codes, one-line errors on stderr, the
// token cache shared between processes, and the bash completion script.
import { execFileSync } from 'node:child_process'
import { readdirSync, readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { startController, type TestController } from '../../helpers/controller.js'
import { fields, freshHome, openrcEnv, removeHomes, repoRoot, spawnStrato } from './cli.js'

let s: TestController
let env: Record<string, string>
let home: string
t.before(async () => {
  s = await startController()
  home = freshHome()
  env = openrcEnv(s.openrc, home)
})
t.teardown(async () => {
  await s.close()
  removeHomes()
})

t.test('the entry point is an executable script', async (t) => {
  t.match(readFileSync(path.join(repoRoot, 'cli/strato.ts'), 'utf8'), /^#!\/usr\/bin\/env node\n/)
})

t.test('strato domain create / list as processes, sharing one cached token', async (t) => {
  const created = await spawnStrato('domain create --description from-the-seed testdomain', env)
  t.equal(created.code, 0, created.stderr)
  t.match(fields(created.stdout), { name: 'testdomain', description: 'from-the-seed', enabled: 'True' })

  const list = await spawnStrato('domain list', env)
  t.equal(list.code, 0)
  t.equal(list.stderr, '')
  t.match(list.stdout, /^\+-+\+-+\+-+\+-+\+\n\| ID +\| Name +\| Enabled \| Description +\|\n/)
  t.match(list.stdout, /\| testdomain \| True +\| from-the-seed +\|/)

  const [a, b] = [await spawnStrato('token issue -f value -c id', env), await spawnStrato('token issue -f json', env)]
  t.equal(a.code, 0)
  const issued = JSON.parse(b.stdout) as Record<string, string>
  t.equal(issued.id, a.stdout.trim(), 'a second process reports the same token: it came from the cache')
  t.match(issued, { expires: /\+0000$/, project_id: /^[0-9a-f]{32}$/, user_id: /^[0-9a-f]{32}$/ })
  const dir = path.join(home, '.cache', 'strato')
  const files = readdirSync(dir)
  t.equal(files.length, 1, 'one cache entry for one set of credentials')
  t.match(readFileSync(path.join(dir, files[0]!), 'utf8'), issued.id!)

  const refused = await spawnStrato('domain delete testdomain', env)
  t.equal(refused.code, 1)
  t.match(refused.stderr, /^Failed to delete domain with name or ID 'testdomain': domain 'testdomain' is enabled; disable it first.*\n$/)
})

t.test('errors from a process: exit code and one line', async (t) => {
  const bad = await spawnStrato('domain list', { ...env, OS_PASSWORD: 'not-the-password' })
  t.equal(bad.code, 1)
  t.equal(bad.stdout, '')
  t.match(bad.stderr, /^authentication failed: wrong user, domain or password.*Check OS_USERNAME, OS_PASSWORD and OS_USER_DOMAIN_NAME.*\n$/)

  const typo = await spawnStrato('domian lsit', env)
  t.equal(typo.code, 2)
  t.match(typo.stderr, /^strato: 'domian lsit' is not a strato command\. Did you mean 'strato domain list'\? See 'strato --help'.*\n$/)

  const bare = await spawnStrato('domain list', { PATH: env.PATH!, HOME: home })
  t.equal(bare.code, 1)
  t.match(bare.stderr, /^missing credentials: set OS_AUTH_URL, OS_USERNAME, OS_PASSWORD .*'\. admin-openrc'.*\n$/)
})

t.test('bash completion from strato complete', async (t) => {
  const script = await spawnStrato('complete', {})
  t.equal(script.code, 0, 'complete needs no credentials')
  const file = path.join(freshHome(), 'strato.bash')
  writeFileSync(file, script.stdout)
  const complete = (...words: string[]) =>
    execFileSync('bash', ['-c', `source ${file}; COMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}; _strato; echo "\${COMPREPLY[*]}"`], { encoding: 'utf8' }).trim()
  t.equal(complete('strato', 'dom'), 'domain')
  t.equal(complete('strato', 'domain', ''), 'create delete list set show')
  t.equal(complete('strato', 'role', 'assignment', ''), 'list')
  t.same(complete('strato', 'project', 'create', '--d').split(' ').sort(), ['--debug', '--description', '--disable', '--domain'])
})

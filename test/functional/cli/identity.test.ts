// The `strato` CLI over a real controller, in process through run(): the seed's
// identity walkthrough line by line, output formats, names and ids, role
// assignments, the token cache, and errors that say what to do next.
import { readdirSync, readFileSync, statSync } from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { startController, type TestController } from '../../helpers/controller.js'
import { call } from '../../helpers/grpc.js'
import type { TestContext } from '../../helpers/tap.js'
import { fields, freshHome, openrcEnv, removeHomes, strato, type Result } from './cli.js'

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

const ok = async (t: TestContext, line: string, e: Record<string, string | undefined> = env): Promise<string> => {
  const r = await strato(line, e)
  t.equal(r.code, 0, `strato ${line}: exit 0${r.stderr ? ` (stderr: ${r.stderr.trim()})` : ''}`)
  t.equal(r.stderr, '', `strato ${line}: nothing on stderr`)
  return r.stdout
}
const fails = async (t: TestContext, line: string, e: Record<string, string | undefined> = env): Promise<Result> => {
  const r = await strato(line, e)
  t.not(r.code, 0, `strato ${line}: fails`)
  t.equal(r.stdout, '', `strato ${line}: nothing on stdout`)
  t.equal(r.stderr.trim().split('\n').length, 1, `strato ${line}: one line on stderr`)
  t.notMatch(r.stderr, /\n\s+at /, 'no stack trace')
  return r
}

t.test('the seed: domain create, list, set --disable, delete (disable first)', async (t) => {
  const created = await ok(t, 'domain create testdomain')
  t.match(created, /^\+-+\+-+\+\n\| Field +\| Value +\|\n\+-+\+-+\+\n/, 'a Field/Value table with +---+ borders')
  const d = fields(created)
  t.match(d, { name: 'testdomain', enabled: 'True', description: '' })
  t.match(d.id, /^[0-9a-f]{32}$/)
  t.same(Object.keys(d), ['description', 'enabled', 'id', 'name'], 'fields sorted, as openstackclient prints them')

  const list = await ok(t, 'domain list')
  const lines = list.trimEnd().split('\n')
  t.match(lines[1], /^\| ID +\| Name +\| Enabled \| Description +\|$/, 'openstackclient column names')
  t.match(list, /\| default +\| Default +\| True +\| The default domain \|/)
  t.match(list, new RegExp(`\\| ${d.id} \\| testdomain \\| True +\\| +\\|`))
  t.equal(lines.length, 6, 'two rows between three rules and the header')

  const refused = await fails(t, 'domain delete testdomain')
  t.equal(refused.code, 1)
  t.match(refused.stderr, /^Failed to delete domain with name or ID 'testdomain': domain 'testdomain' is enabled; disable it first/)
  t.match(refused.stderr, /strato domain set testdomain --disable/, 'and says how, in CLI words')
  t.match(await ok(t, 'domain show testdomain'), /\| enabled +\| True/, 'the refused delete changed nothing')

  t.equal(await ok(t, 'domain set testdomain --disable'), '', 'set prints nothing')
  t.match(fields(await ok(t, `domain show ${d.id}`)), { enabled: 'False', name: 'testdomain' }, 'show by id')
  t.equal(await ok(t, 'domain delete testdomain'), '')
  t.notMatch(await ok(t, 'domain list'), /testdomain/)
  const gone = await fails(t, 'domain show testdomain')
  t.equal(gone.stderr, "No domain with a name or ID of 'testdomain' exists.\n")
})

t.test('the seed: project create --domain, list, delete; role create; role add; user create', async (t) => {
  const domainId = (await ok(t, 'domain create testdomain -f value -c id')).trim()
  t.match(domainId, /^[0-9a-f]{32}$/, '-f value -c id prints the bare id')
  const p = JSON.parse(await ok(t, 'project create --domain testdomain --description seed testproject -f json')) as Record<string, unknown>
  t.match(p, { name: 'testproject', domain_id: domainId, description: 'seed', enabled: true, is_domain: false })
  t.match(await ok(t, 'project list'), new RegExp(`\\| ${p.id} \\| testproject \\|`))
  t.same(
    JSON.parse(await ok(t, 'project list --domain testdomain --long -f json')),
    [{ ID: p.id, Name: 'testproject', 'Domain ID': domainId, Description: 'seed', Enabled: true }],
    'list -f json: objects keyed by column name, booleans as booleans',
  )
  t.equal(await ok(t, 'project list --domain testdomain -f csv'), `"ID","Name"\n"${p.id}","testproject"\n`)
  t.match(await ok(t, 'project show testproject --domain testdomain -f yaml'), /^description: seed\ndomain_id: [0-9a-f]{32}\nenabled: true\nid: /)

  const role = fields(await ok(t, 'role create auditor'))
  t.match(role, { name: 'auditor', id: /^[0-9a-f]{32}$/ })
  t.match(await ok(t, 'role list -f value'), /^[0-9a-f]{32} auditor$/m)

  const u = fields(await ok(t, 'user create --domain testdomain --password s3cret --project testproject --email t@example.org tester'))
  t.match(u, { name: 'tester', domain_id: domainId, default_project_id: p.id, email: 't@example.org', enabled: 'True' })
  t.notOk('password' in u, 'the password is never shown')

  t.equal(await ok(t, 'role add --project testproject --project-domain testdomain --user tester --user-domain testdomain auditor'), '')
  t.equal(await ok(t, `role add --project ${p.id} --user ${u.id} member`), '', 'ids work where names do')
  t.match(await ok(t, 'project list --user tester --user-domain testdomain -f value'), new RegExp(`^${p.id} testproject\n$`), 'project list --user')
  t.match(await ok(t, 'user list --project testproject -f value -c Name'), /^tester\n$/, 'user list --project')
  const assigned = await ok(t, 'role assignment list --user tester --user-domain testdomain --names')
  t.match(assigned.split('\n')[1], /^\| Role +\| User +\| Group \| Project +\| Domain \| System \| Inherited \|$/)
  t.match(assigned, /\| auditor +\| tester@testdomain \| +\| testproject@testdomain \|/)
  t.match(assigned, /\| member +\| tester@testdomain \|/)
  t.notMatch(assigned, /reader/, 'without --effective, implied roles are not listed')
  const effective = await ok(t, `role assignment list --project ${p.id} --effective -f value -c Role`)
  const roleIds = effective.trim().split('\n').sort()
  const reader = fields(await ok(t, 'role show reader')).id
  t.ok(roleIds.includes(reader!), '--effective expands member into reader')

  // The new user logs in with the CLI, with credentials from the environment as openstack reads them.
  const tester = { PATH: env.PATH, HOME: home, OS_AUTH_URL: env.OS_AUTH_URL, OS_USERNAME: 'tester', OS_PASSWORD: 's3cret', OS_USER_DOMAIN_NAME: 'testdomain', OS_PROJECT_NAME: 'testproject', OS_PROJECT_DOMAIN_NAME: 'testdomain' }
  const tok = fields(await ok(t, 'token issue', tester))
  t.match(tok, { user_id: u.id, project_id: p.id, expires: /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+0000$/ })

  t.equal(await ok(t, 'role remove --project testproject --project-domain testdomain --user tester --user-domain testdomain auditor'), '')
  t.notMatch(await ok(t, 'role assignment list --user tester --user-domain testdomain --names'), /auditor/)
  t.equal(await ok(t, 'role delete auditor'), '')

  t.equal(await ok(t, 'project delete testproject --domain testdomain'), '')
  t.notMatch(await ok(t, 'project list'), /testproject/)
  t.equal(await ok(t, 'user delete tester --domain testdomain'), '')
  t.equal(await ok(t, 'domain set testdomain --disable'), '')
  t.equal(await ok(t, 'domain delete testdomain'), '')
})

t.test('implied roles, catalog, set and show', async (t) => {
  const implied = await ok(t, 'implied role list')
  t.match(implied.split('\n')[1], /^\| Prior Role ID +\| Prior Role Name \| Implied Role ID +\| Implied Role Name \|$/)
  t.match(implied, /\| admin +\| [0-9a-f]{32} \| member +\|/)
  await ok(t, 'role create operator')
  t.match(fields(await ok(t, 'implied role create operator --implied-role member')), { implies: fields(await ok(t, 'role show member')).id })
  t.match(await ok(t, 'implied role list -f value'), /^[0-9a-f]{32} operator [0-9a-f]{32} member$/m)
  t.equal(await ok(t, 'implied role delete operator --implied-role member'), '')
  await ok(t, 'role delete operator')

  const catalog = await ok(t, 'catalog list')
  t.match(catalog.split('\n')[1], /^\| Name +\| Type +\| Endpoints +\|$/)
  t.match(catalog, /\| keystone +\| identity +\| RegionOne +\|\n\| +\| +\| +public: grpc:\/\//)
  t.match(fields(await ok(t, 'catalog show identity')), { name: 'keystone', type: 'identity' })

  await ok(t, 'project create --description one demo')
  await ok(t, 'project set demo --name demo2 --description two --disable')
  t.match(fields(await ok(t, 'project show demo2')), { description: 'two', enabled: 'False', domain_id: 'default' }, 'default: the caller\'s domain')
  await ok(t, 'user create --password pw --disable alice')
  await ok(t, 'user set alice --enable --email a@example.org --project demo2')
  t.match(fields(await ok(t, 'user show alice')), { enabled: 'True', email: 'a@example.org' })
  t.match(await ok(t, 'user list --long -f csv'), /"alice","[0-9a-f]{32}","default","","a@example.org",True/)
  t.equal(await ok(t, 'user delete alice'), '')
  t.equal(await ok(t, 'project delete demo2'), '')
  const shell = await ok(t, 'domain show default -f shell --prefix os_')
  t.equal(shell, 'os_description="The default domain"\nos_enabled="True"\nos_id="default"\nos_name="Default"\n')
})

t.test('the token is cached per credentials, 0600, without the password, and renewed when refused', async (t) => {
  const h = freshHome()
  const e = { ...env, HOME: h }
  const first = (await ok(t, 'token issue -f value -c id', e)).trim()
  const second = (await ok(t, 'token issue -f value -c id', e)).trim()
  t.equal(second, first, 'the second command reuses the cached token')
  const dir = path.join(h, '.cache', 'strato')
  const files = readdirSync(dir)
  t.equal(files.length, 1)
  t.equal(statSync(dir).mode & 0o777, 0o700)
  t.equal(statSync(path.join(dir, files[0]!)).mode & 0o777, 0o600)
  const cached = readFileSync(path.join(dir, files[0]!), 'utf8')
  t.notMatch(cached, env.OS_PASSWORD!, 'the password is not in the cache')
  t.notMatch(files[0]!, /admin/, 'nor the user name in its file name')
  t.match(cached, first)

  // Another scope is another cache entry.
  const other = await strato('token issue -f value -c id', { ...e, OS_PROJECT_NAME: 'service' })
  // admin has no role on 'service': the server refuses that scope, and nothing is cached for it.
  t.equal(other.code, 1)
  t.match(other.stderr, /no role on project 'service'/)
  t.equal(readdirSync(dir).length, 1)

  // A wrong password never rides on the cached token.
  const bad = await strato('domain list', { ...e, OS_PASSWORD: 'wrong' })
  t.equal(bad.code, 1)
  t.match(bad.stderr, /^authentication failed: .*Check OS_USERNAME, OS_PASSWORD and OS_USER_DOMAIN_NAME/)
  t.equal(bad.stderr.split('\n').length, 2, 'one line')

  // The server revokes the cached token: the CLI drops it and gets a new one, once.
  await call(s.clients.tokens, 'revokeToken', { token: first }, s.adminToken)
  t.match(await ok(t, 'domain list', e), /Default/, 'a refused cached token is replaced transparently')
  const renewed = (await ok(t, 'token issue -f value -c id', e)).trim()
  t.not(renewed, first)
  t.match(readFileSync(path.join(dir, files[0]!), 'utf8'), renewed, 'the cache holds the new token')

  // token issue asks the server about a cached token: a revoked one is replaced, not shown.
  await call(s.clients.tokens, 'revokeToken', { token: renewed }, s.adminToken)
  const again = (await ok(t, 'token issue -f value -c id', e)).trim()
  t.not(again, renewed, 'token issue does not show a revoked cached token')

  // token revoke of our own token empties the cache entry.
  t.equal(await ok(t, ['token', 'revoke', again].join(' '), e), '')
  t.same(readdirSync(dir), [], 'revoking the cached token drops it from the cache')
  t.not((await ok(t, 'token issue -f value -c id', e)).trim(), again)

  // OS_TOKEN: no password needed, nothing cached.
  const h2 = freshHome()
  const byToken = { PATH: env.PATH, HOME: h2, OS_AUTH_URL: env.OS_AUTH_URL, OS_TOKEN: s.adminToken }
  t.match(await ok(t, 'domain list -f value -c Name', byToken), /^Default$/m)
  t.match(fields(await ok(t, 'token issue', byToken)), { id: s.adminToken })
  t.throws(() => readdirSync(path.join(h2, '.cache', 'strato')), 'OS_TOKEN is not cached')
})

t.test('domain scope (OS_DOMAIN_NAME) and --os-* options over the environment', async (t) => {
  await ok(t, 'domain create scoped')
  await ok(t, 'user create --domain scoped --password pw dadmin')
  await ok(t, 'role add --domain scoped --user dadmin --user-domain scoped admin')
  const de = { PATH: env.PATH, HOME: home, OS_AUTH_URL: env.OS_AUTH_URL, OS_USERNAME: 'dadmin', OS_PASSWORD: 'pw', OS_USER_DOMAIN_NAME: 'scoped', OS_DOMAIN_NAME: 'scoped' }
  const tok = fields(await ok(t, 'token issue', de))
  t.equal(tok.domain_id, fields(await ok(t, 'domain show scoped')).id)
  t.notOk('project_id' in tok)
  await ok(t, 'project create inside', de)
  t.match(await ok(t, 'project list -f value -c Name', de), /^inside$/m, 'a domain admin creates projects in its domain')
  const flags = await ok(t, 'token issue -f value -c domain_id --os-username dadmin --os-password pw --os-user-domain-name scoped --os-domain-name scoped', {
    PATH: env.PATH, HOME: home, OS_AUTH_URL: env.OS_AUTH_URL,
  })
  t.equal(flags.trim(), tok.domain_id)
  const wrong = await strato('domain list --os-password nope', env)
  t.equal(wrong.code, 1, '--os-password overrides OS_PASSWORD')
  await ok(t, 'domain set scoped --disable')
  await ok(t, 'domain delete scoped')
})

t.test('errors: one line on stderr, a non-zero exit, and what to do next', async (t) => {
  const typo = await fails(t, 'domian list')
  t.equal(typo.code, 2)
  t.match(typo.stderr, /'domian list' is not a strato command\. Did you mean 'strato domain list'\?.*strato --help/)
  t.match((await fails(t, 'porject lst')).stderr, /Did you mean 'strato project list'/)
  t.match((await fails(t, 'domain')).stderr, /'domain' needs a subcommand: create, delete, list, set, show/)
  t.match((await fails(t, 'domain create x --descripton y')).stderr, /unrecognized option '--descripton'\. Did you mean '--description'\?/)
  t.match((await fails(t, 'domain create')).stderr, /missing <domain-name>\. Usage: strato domain create/)
  t.match((await fails(t, 'domain list -f shell')).stderr, /invalid choice 'shell'/)
  t.match((await fails(t, '-f json domain list')).stderr, /'-f' is not a global option; the command comes first/)
  t.match((await fails(t, 'create domain x')).stderr, /Did you mean 'strato domain create'\?/)
  t.match((await fails(t, 'domain list -c Nope')).stderr, /no column named 'Nope'; the columns are: ID, Name, Enabled, Description/)
  t.equal((await fails(t, 'project create --domain nowhere p')).stderr, "No domain with a name or ID of 'nowhere' exists.\n")
  t.match((await fails(t, 'role add --user admin admin')).stderr, /exactly one of --project <project> or --domain <domain>/)
  t.match((await fails(t, 'project create admin')).stderr, /already exists/)
  t.match((await fails(t, 'domain create x --os-auth-url http://127.0.0.1:5000/v3')).stderr, /HTTP URL; Strato speaks gRPC: use grpcs:\/\/host:port or grpc:\/\/host:port/)

  const missing = await fails(t, 'domain list', { PATH: env.PATH, HOME: home })
  t.equal(missing.code, 1)
  t.match(missing.stderr, /missing credentials: set OS_AUTH_URL, OS_USERNAME, OS_PASSWORD .*\. admin-openrc/)
  const noPassword = await fails(t, 'domain list', { ...env, OS_PASSWORD: undefined })
  t.match(noPassword.stderr, /missing credentials: set OS_PASSWORD /)

  const down = await fails(t, 'domain list', { ...env, HOME: freshHome(), OS_AUTH_URL: 'grpc://127.0.0.1:1' })
  t.match(down.stderr, /cannot reach the Strato API at 127\.0\.0\.1:1 .*npm start.*OS_AUTH_URL/)

  t.match(await ok(t, 'domain list --debug'), /Default/, '--debug is accepted')
})

t.test('help for every command, and bash completion', async (t) => {
  const help = await ok(t, '--help')
  t.match(help, /^usage: strato /)
  t.match(help, /\. admin-openrc/)
  const names = [...help.matchAll(/^ {2}([a-z][a-z ]+?) {2,}/gm)].map((m) => m[1]!)
  for (const n of ['domain create', 'project list', 'user set', 'role assignment list', 'implied role create', 'token issue', 'catalog list']) t.ok(names.includes(n), `--help lists ${n}`)
  for (const n of names) {
    const h = await strato(`help ${n}`, env)
    t.equal(h.code, 0)
    t.match(h.stdout, new RegExp(`^usage: strato ${n}`), `strato help ${n}`)
    t.equal((await strato(`${n} --help`, env)).stdout, h.stdout, `strato ${n} --help`)
  }
  t.match(await ok(t, 'help role create'), /--description <description>/)
  t.match(await ok(t, 'project create --help'), /--domain <domain>/)
  t.match(await ok(t, 'help domain'), /domain create +Create new domain/)
  t.match(await ok(t, 'complete'), /complete -o default -F _strato strato/)
})

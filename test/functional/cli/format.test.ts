// The CLI's pure parts, no server: argument parsing, formatters (as cliff
// prints them), suggestions, and the token request built from OS_* variables.
import t from 'tap'
import { parse } from '../../../cli/strato/args.js'
import { credentialsFrom, issueRequest } from '../../../cli/strato/auth.js'
import { UsageError } from '../../../cli/strato/errors.js'
import { makeRegistry } from '../../../cli/strato/main.js'
import { render, table } from '../../../cli/strato/output.js'
import { Args } from '../../../cli/strato/registry.js'
import { suggestCommands } from '../../../cli/strato/suggest.js'
import { addressOf } from '../../../cli/strato/transport.js'

const reg = makeRegistry()
const fmt = (opts: Record<string, string | string[] | boolean>) => new Args({}, opts)

t.test('parse: the command is the leading words, options anywhere after, globals anywhere', async (t) => {
  const p = parse(['--os-username', 'bob', 'project', 'create', '--domain=dom', 'proj', '--enable', '-f', 'json', '-cid', '-c', 'name'], reg)
  t.equal(p.command?.name, 'project create')
  t.equal(p.global.str('os_username'), 'bob')
  t.equal(p.args.pos('project-name'), 'proj')
  t.equal(p.args.str('domain'), 'dom')
  t.equal(p.args.bool('enabled'), true)
  t.equal(p.args.str('format'), 'json')
  t.same(p.args.list('column'), ['id', 'name'])
  t.equal(parse(['domain', 'set', 'x', '--disable'], reg).args.bool('enabled'), false, '--disable stores enabled=false')
  t.equal(parse(['domain', 'set', 'x'], reg).args.bool('enabled'), undefined, 'neither flag: unchanged')
  t.same(parse(['domain', 'delete', 'a', 'b'], reg).args.posList('domain'), ['a', 'b'])
  t.same(parse(['domain', 'create', '--', '--odd'], reg).args.pos('domain-name'), '--odd', '-- ends options')
  t.equal(parse(['role', 'assignment', 'list', '--names'], reg).command?.name, 'role assignment list')
  t.equal(parse(['implied', 'role', 'create', 'admin', '--implied-role', 'member'], reg).args.pos('role'), 'admin')
  t.equal(parse(['domain', 'list', '--help'], reg).global.flag('help'), true)
  const unknown = parse(['porject', 'list'], reg)
  t.equal(unknown.command, undefined)
  t.same(unknown.words, ['porject', 'list'])
  t.throws(() => parse(['domain', 'show'], reg), UsageError)
  t.throws(() => parse(['domain', 'show', 'a', 'b'], reg), /unexpected argument 'b'/)
  t.throws(() => parse(['domain', 'list', '--enable=x'], reg), /unrecognized option/)
  t.throws(() => parse(['domain', 'create', 'x', '--description'], reg), /option '--description' needs a value/)
})

t.test('table: prettytable borders, left aligned, multi-line cells', async (t) => {
  t.equal(
    table(['ID', 'Name'], [['a', 'Default'], ['bcd', 'x\ny']]),
    ['+-----+---------+', '| ID  | Name    |', '+-----+---------+', '| a   | Default |', '| bcd | x       |', '|     | y       |', '+-----+---------+', ''].join('\n'),
  )
})

t.test('formats: show and list, as cliff prints them', async (t) => {
  const show = { kind: 'show' as const, data: { name: 'd', enabled: true, id: 'x1', description: '' } }
  t.equal(render(show, fmt({ format: 'value' })), '\nTrue\nx1\nd\n', 'value: one value a line, fields sorted')
  t.equal(render(show, fmt({ format: 'value', column: ['id'] })), 'x1\n')
  t.equal(render(show, fmt({ format: 'json' })), '{\n  "description": "",\n  "enabled": true,\n  "id": "x1",\n  "name": "d"\n}\n')
  t.equal(render(show, fmt({ format: 'json', noindent: true })), '{"description":"","enabled":true,"id":"x1","name":"d"}\n')
  t.equal(render(show, fmt({ format: 'yaml' })), "description: ''\nenabled: true\nid: x1\nname: d\n")
  t.equal(render(show, fmt({ format: 'shell' })), 'description=""\nenabled="True"\nid="x1"\nname="d"\n')
  const list = { kind: 'list' as const, columns: ['ID', 'Name', 'Enabled'], rows: [['b', 'two', false], ['a', 'one "1"', true]] }
  t.equal(render(list, fmt({ format: 'csv' })), '"ID","Name","Enabled"\n"b","two",False\n"a","one ""1""",True\n')
  t.equal(render(list, fmt({ format: 'value', column: ['Name', 'ID'] })), 'two b\none "1" a\n', '-c picks and orders columns')
  t.equal(render(list, fmt({ format: 'value', sort_column: ['ID'] })), 'a one "1" True\nb two False\n')
  t.equal(render(list, fmt({ format: 'yaml' })), "- Enabled: false\n  ID: b\n  Name: two\n- Enabled: true\n  ID: a\n  Name: one \"1\"\n")
  t.same(JSON.parse(render(list, fmt({ format: 'json' }))), [{ ID: 'b', Name: 'two', Enabled: false }, { ID: 'a', Name: 'one "1"', Enabled: true }])
  t.equal(render({ kind: 'list', columns: ['ID'], rows: [] }, fmt({})), '', 'an empty list prints nothing, as cliff')
  t.match(render({ kind: 'list', columns: ['ID'], rows: [] }, fmt({ print_empty: true })), /\| ID \|/)
  t.throws(() => render(list, fmt({ column: ['Nope'] })), /no column named 'Nope'; the columns are: ID, Name, Enabled/)
  t.throws(() => render(show, fmt({ format: 'csv' })), /invalid choice 'csv'/)
})

t.test('suggestions', async (t) => {
  const names = reg.all().map((c) => c.name)
  t.same(suggestCommands(['domian', 'list'], names), ['domain list'])
  t.same(suggestCommands(['project', 'lsit'], names)[0], 'project list')
  t.same(suggestCommands(['create', 'domain'], names), ['domain create'])
  t.same(suggestCommands(['usr'], names).slice(0, 1), ['user create'])
  t.same(suggestCommands(['frobnicate'], names), [])
})

t.test('credentials: OS_* as openstack reads them, --os-* over them; the issue request', async (t) => {
  const env = { OS_AUTH_URL: 'grpc://h:1', OS_USERNAME: 'u', OS_PASSWORD: 'p', OS_PROJECT_NAME: 'proj', OS_USER_DOMAIN_NAME: 'Dom', OS_PROJECT_DOMAIN_NAME: 'PDom' }
  t.same(issueRequest(credentialsFrom(env, fmt({}))), {
    identity: { methods: ['password'], password: { user: { name: 'u', domain: { name: 'Dom' }, password: 'p' } } },
    scope: { project: { name: 'proj', domain: { name: 'PDom' } } },
  })
  t.same(issueRequest(credentialsFrom({ ...env, OS_PROJECT_NAME: '', OS_DOMAIN_NAME: 'd' }, fmt({}))).scope, { domain: { name: 'd' } }, 'domain scope')
  t.same(issueRequest(credentialsFrom(env, fmt({ os_project_id: 'abc' }))).scope, { project: { id: 'abc' } }, '--os-project-id wins')
  const bare = issueRequest(credentialsFrom({ OS_USERNAME: 'u', OS_PASSWORD: 'p' }, fmt({})))
  t.same(bare.identity?.password?.user?.domain, { id: 'default' }, 'the default domain when none is given')
  t.equal(bare.scope, undefined, 'no scope asked: unscoped (or the default project)')
  t.equal(addressOf('grpc://127.0.0.1:8770'), '127.0.0.1:8770')
  t.equal(addressOf('127.0.0.1:8770/'), '127.0.0.1:8770')
  t.equal(addressOf('grpcs://ctl.example:8770'), 'ctl.example:8770', 'grpcs:// (TLS) too')
  t.throws(() => addressOf('grpcs://grpc://h:1'), /not grpc:\/\/host:port or grpcs:\/\/host:port/)
  t.equal(credentialsFrom({ OS_CACERT: '/etc/ca.pem' }, fmt({})).cacert, '/etc/ca.pem', 'OS_CACERT as openstackclient reads it')
  t.equal(credentialsFrom({ OS_CACERT: '/etc/ca.pem' }, fmt({ os_cacert: '/x.pem' })).cacert, '/x.pem', '--os-cacert wins')
  t.throws(() => addressOf('http://keystone:5000/v3'), /HTTP URL/)
  t.throws(() => addressOf('grpc://nohost'), /not grpc:\/\/host:port/)
})

/** The OpenStack tools' openrc and clouds.yaml, written beside admin-openrc from its credentials (controller/identity/bootstrap.ts). */
import t from 'tap'
import { existsSync, mkdtempSync, readFileSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { pino } from 'pino'
import { openstackFiles, readOpenrc, writeOpenrc, writeOpenstackFiles } from '../../../../controller/identity/bootstrap.js'

const log = pino({ level: 'silent' })

t.test('from admin-openrc: the same admin, Keystone on REST, 0600; OS_CACERT only with TLS', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'ostack-files-'))
  const admin = path.join(dir, 'admin-openrc')
  // A password with what YAML and shells care about.
  const password = `p'a"s\\s: #{x}`
  writeOpenrc(admin, { OS_AUTH_URL: 'grpcs://127.0.0.1:8770', OS_CACERT: '/ca.pem', OS_USERNAME: 'admin', OS_PASSWORD: password, OS_PROJECT_NAME: 'admin', OS_USER_DOMAIN_NAME: 'Default', OS_PROJECT_DOMAIN_NAME: 'Default' })
  writeOpenstackFiles(admin, { authUrl: 'https://127.0.0.1:8771/identity/v3', caFile: '/ca.pem', region: 'RegionOne' }, log)
  const files = openstackFiles(admin)
  t.same(files, { openrc: path.join(dir, 'openstack-openrc'), cloudsYaml: path.join(dir, 'clouds.yaml') })
  for (const f of Object.values(files)) t.equal(statSync(f).mode & 0o777, 0o600, `${path.basename(f)} is 0600`)
  t.same(readOpenrc(files.openrc), {
    OS_AUTH_URL: 'https://127.0.0.1:8771/identity/v3', OS_IDENTITY_API_VERSION: '3', OS_USERNAME: 'admin', OS_PASSWORD: password, OS_PROJECT_NAME: 'admin',
    OS_USER_DOMAIN_NAME: 'Default', OS_PROJECT_DOMAIN_NAME: 'Default', OS_REGION_NAME: 'RegionOne', OS_INTERFACE: 'public', OS_CACERT: '/ca.pem',
  })
  const yaml = readFileSync(files.cloudsYaml, 'utf8')
  t.match(yaml, /^clouds:\n {2}strato:\n {4}auth:\n/m)
  const value = (key: string) => JSON.parse(new RegExp(`^ +${key}: (.*)$`, 'm').exec(yaml)![1]!)
  t.equal(value('password'), password, 'quoted as a YAML (JSON) string')
  t.equal(value('auth_url'), 'https://127.0.0.1:8771/identity/v3')
  t.equal(value('cacert'), '/ca.pem')
  t.equal(value('region_name'), 'RegionOne')

  // Plaintext: no CA named anywhere; rewritten at each start.
  writeOpenstackFiles(admin, { authUrl: 'http://127.0.0.1:9999/identity/v3', caFile: null, region: 'RegionTwo' }, log)
  t.notOk('OS_CACERT' in readOpenrc(files.openrc))
  t.match(readOpenrc(files.openrc), { OS_AUTH_URL: 'http://127.0.0.1:9999/identity/v3', OS_REGION_NAME: 'RegionTwo' })
  t.notMatch(readFileSync(files.cloudsYaml, 'utf8'), /cacert/)
})

t.test('no admin-openrc here: nothing is written', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'ostack-files-'))
  writeOpenstackFiles(path.join(dir, 'admin-openrc'), { authUrl: 'http://x/identity/v3', caFile: null, region: 'RegionOne' }, log)
  t.notOk(existsSync(path.join(dir, 'openstack-openrc')))
  t.notOk(existsSync(path.join(dir, 'clouds.yaml')))
})

// The metadata service's paths (agent/metadata/paths.ts): Nova's OpenStack
// and EC2 trees for one server, the config drive's content, version gating,
// path normalization, content types, 404 and 405.
import t from 'tap'
import { configDriveFiles } from '../../../../agent/disk/config-drive.js'
import { EC2_VERSIONS, InstanceDocuments, JSON_TYPE, OPENSTACK_VERSIONS, TEXT, ec2Id, methodNotAllowed, normalizePath } from '../../../../agent/metadata/paths.js'
import { instance } from '../../../fixtures/instance-metadata.js'

const docs = new InstanceDocuments(instance(), '10.0.0.5')
const get = (p: string, d = docs) => {
  const r = d.lookup(normalizePath(p)!, new Date('2026-12-04T00:00:00Z'))
  return { ...r, text: r.body.toString() }
}

t.test('paths are normalized as Nova does (query, trailing slash, .., //, percent-encoding)', async (t) => {
  t.equal(normalizePath('/'), '/')
  t.equal(normalizePath(''), '/')
  t.equal(normalizePath('/latest/meta-data/'), '/latest/meta-data')
  t.equal(normalizePath('//openstack//latest/?x=1'), '/openstack/latest')
  t.equal(normalizePath('/openstack/latest/../2012-08-10/meta_data.json'), '/openstack/2012-08-10/meta_data.json')
  t.equal(normalizePath('/../../etc/passwd'), '/etc/passwd')
  t.equal(normalizePath('/openstack/%6Catest'), '/openstack/latest')
  t.equal(normalizePath('/%zz'), undefined, 'bad escapes do not decode')
})

t.test('/ lists the EC2 versions and latest; /openstack the OpenStack versions up to today and latest', async (t) => {
  t.equal(get('/').text, [...EC2_VERSIONS, 'latest'].join('\n'))
  t.equal(get('/').contentType, TEXT)
  t.equal(get('/openstack').text, [...OPENSTACK_VERSIONS, 'latest'].join('\n'))
  t.match(get('/openstack').text, /^2012-08-10\n2013-04-04\n/)
  const past = docs.lookup('/openstack', new Date('2017-01-01T00:00:00Z')).body.toString()
  t.equal(past, '2012-08-10\n2013-04-04\n2013-10-17\n2015-10-15\n2016-06-30\n2016-10-06\nlatest', 'future versions hidden')
})

t.test('/openstack/<version> lists what that version has, user_data only when there is some', async (t) => {
  t.equal(get('/openstack/latest/').text, 'meta_data.json\nuser_data\nvendor_data.json\nnetwork_data.json\nvendor_data2.json')
  t.equal(get('/openstack/2012-08-10').text, 'meta_data.json\nuser_data')
  t.equal(get('/openstack/2013-10-17').text, 'meta_data.json\nuser_data\nvendor_data.json')
  const none = new InstanceDocuments(instance({ userData: '' }), '10.0.0.5')
  t.equal(get('/openstack/latest', none).text, 'meta_data.json\nvendor_data.json\nnetwork_data.json\nvendor_data2.json')
  t.equal(get('/openstack/latest/user_data', none).status, 404, 'no user data: 404')
  t.equal(get('/openstack/2011-01-01').status, 404, 'unknown version')
  t.equal(get('/openstack/latest/password').status, 404, 'no password service')
  t.equal(get('/openstack/latest/meta_data.json/x').status, 404)
})

t.test('the OpenStack files are the config drive files (random_seed apart), with Nova content types', async (t) => {
  const drive = configDriveFiles(instance())
  const md = get('/openstack/latest/meta_data.json')
  t.equal(md.contentType, JSON_TYPE)
  const served = JSON.parse(md.text) as Record<string, unknown>
  const written = JSON.parse(drive.get('openstack/latest/meta_data.json')!.toString()) as Record<string, unknown>
  t.equal(typeof served.random_seed, 'string')
  t.equal(Buffer.from(served.random_seed as string, 'base64').length, 512)
  t.not(served.random_seed, JSON.parse(get('/openstack/latest/meta_data.json').text).random_seed, 'a new seed per request, as Nova')
  delete served.random_seed
  delete written.random_seed
  t.same(served, written)
  t.match(served, { uuid: instance().instanceUuid, name: 'web 1', public_keys: { mykey: instance().publicKey } })
  for (const f of ['network_data.json', 'user_data', 'vendor_data.json', 'vendor_data2.json']) {
    t.same(get(`/openstack/latest/${f}`).body, drive.get(`openstack/latest/${f}`), `${f} as on the drive`)
  }
  t.equal(get('/openstack/latest/user_data').text, '#!/bin/sh\necho hi\n')
  t.equal(get('/openstack/latest/network_data.json').contentType, TEXT, 'network_data.json is text/plain, as Nova serves it')
  t.equal(get('/openstack/latest/vendor_data2.json').contentType, JSON_TYPE)
})

t.test('older OpenStack versions drop the fields they did not have', async (t) => {
  const folsom = JSON.parse(get('/openstack/2012-08-10/meta_data.json').text) as Record<string, unknown>
  t.notOk('random_seed' in folsom)
  t.notOk('project_id' in folsom)
  t.notOk('devices' in folsom)
  const liberty = JSON.parse(get('/openstack/2015-10-15/meta_data.json').text) as Record<string, unknown>
  t.ok('random_seed' in liberty && 'project_id' in liberty)
  t.notOk('devices' in liberty)
  t.equal(get('/openstack/2013-04-04/vendor_data.json').status, 404, 'vendor_data.json since Havana')
  t.equal(get('/openstack/2016-06-30/vendor_data2.json').status, 404, 'vendor_data2.json since Newton (2016-10-06)')
})

t.test('EC2: the meta-data listing and its items', async (t) => {
  t.equal(get('/latest').text, 'meta-data/\nuser-data')
  t.equal(get('/latest/meta-data/').text, [
    'ami-id', 'ami-launch-index', 'ami-manifest-path', 'block-device-mapping/', 'hostname', 'instance-action', 'instance-id', 'instance-type',
    'local-hostname', 'local-ipv4', 'placement/', 'public-hostname', 'public-ipv4', 'public-keys/', 'reservation-id', 'security-groups',
  ].join('\n'))
  t.equal(get('/latest/meta-data/instance-id').text, 'i-6f1c0c2e')
  t.equal(get('/latest/meta-data/ami-id').text, 'ami-a1b2c3d4')
  t.equal(get('/latest/meta-data/hostname').text, 'web-1')
  t.equal(get('/latest/meta-data/local-hostname').text, 'web-1')
  t.equal(get('/latest/meta-data/local-ipv4').text, '10.0.0.5')
  t.equal(get('/latest/meta-data/public-ipv4').text, '')
  t.equal(get('/latest/meta-data/instance-type').text, 'm1.nano')
  t.equal(get('/latest/meta-data/security-groups').text, 'default\nweb')
  t.equal(get('/latest/meta-data/placement/').text, 'availability-zone')
  t.equal(get('/latest/meta-data/placement/availability-zone').text, 'nova')
  t.equal(get('/latest/meta-data/public-keys/').text, '0=mykey')
  t.equal(get('/latest/meta-data/public-keys/0').text, 'openssh-key')
  t.equal(get('/latest/meta-data/public-keys/0/openssh-key').text, instance().publicKey)
  t.equal(get('/latest/meta-data/public-keys/0/_name').status, 404)
  t.equal(get('/latest/user-data').text, '#!/bin/sh\necho hi\n')
  t.equal(get('/latest/meta-data/hostname').contentType, TEXT)
  t.equal(get('/latest/meta-data/nope').status, 404)
  t.equal(get('/latest/meta-data/hostname/x').status, 404, 'nothing below a leaf')
})

t.test('EC2: dated versions are aliases of latest, older ones with fewer items; /ec2 prefix; no key, no user data', async (t) => {
  t.equal(get('/2009-04-04/meta-data/').text, get('/latest/meta-data/').text)
  t.equal(get('/ec2/2009-04-04/meta-data/instance-id').text, 'i-6f1c0c2e')
  t.equal(get('/1.0/meta-data/').text, 'ami-id\nami-launch-index\nami-manifest-path\nhostname\ninstance-id\nlocal-ipv4\npublic-keys/\nreservation-id\nsecurity-groups')
  t.equal(get('/2007-01-19/meta-data/placement/availability-zone').status, 404, 'placement since 2008-02-01')
  t.equal(get('/2010-01-01/meta-data/').status, 404, 'unknown version')
  const bare = new InstanceDocuments(instance({ keyName: '', publicKey: '', userData: '', nics: [], floatingIps: ['203.0.113.7'] }), '10.9.9.9')
  t.equal(get('/latest/user-data', bare).status, 404, 'no user data: 404')
  t.equal(get('/latest', bare).text, 'meta-data/')
  t.equal(get('/latest/meta-data/public-keys/', bare).status, 404)
  t.equal(get('/latest/meta-data/local-ipv4', bare).text, '10.9.9.9', 'no fixed IPv4: the request address, as Nova')
  t.equal(get('/latest/meta-data/public-ipv4', bare).text, '203.0.113.7')
})

t.test('ids and refusals', async (t) => {
  t.equal(ec2Id('i', '0000000a-0000-4000-8000-000000000000'), 'i-0000000a')
  const r = methodNotAllowed()
  t.equal(r.status, 405)
  t.equal(r.headers?.allow, 'GET, HEAD')
})

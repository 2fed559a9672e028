// No volume waits forever: work cast to a backend host whose agent died and stays down ends, after
// volumes.stuckAfterMs, as that work's failure with a reason naming the host (error for a create),
// so an admin never needs reset-state; the volume can then be deleted by its owner (force-deleted
// here, its host being gone). So do attach and detach casts to a server's host that stays down:
// the attach fails (the volume available again, the attachment in error, the server's fault), the
// detach fails (the volume in-use again), each naming the host; and when the agent comes back after
// all, the casts the controller gave up on are skipped, so the guest stays as the API says. An
// attach given up on ends the network export the volume's host made for it at once.
import { rmSync } from 'node:fs'
import t from 'tap'
import { castsDone, quickDown, startCloud, type TestCloud } from '../../helpers/cloud.js'
import { call, client, status } from '../../helpers/grpc.js'
import { eventually, startAgent } from '../../helpers/agents.js'
import { tenant, type Tenant } from '../network/fixtures.js'
import { AttachmentsClient, VolumeTypesClient, VolumesClient, type Attachment, type Volume } from '../../../proto/gen/strato/volume/v1/volume.js'
import type { CreateServerResponse, Server, ServerVolume } from '../../../proto/gen/strato/compute/v1/servers.js'

let cloud: TestCloud
let demo: Tenant
let volumes: VolumesClient
let attachments: AttachmentsClient

t.before(async () => {
  // The cloud's long down window: a host whose agent stopped still looks up while the test casts to it; then quickDown.
  cloud = await startCloud({ hosts: ['node1'], controller: { volumes: { stuckAfterMs: 300 } } })
  demo = await tenant(cloud.s, 'demo')
  volumes = client(VolumesClient, cloud.s.address)
  attachments = client(AttachmentsClient, cloud.s.address)
  await eventually(async () => (await cloud.s.controller.db.selectFrom('volume_backends').selectAll().execute()).length === 1, 5_000, 'a volume backend')
})
t.teardown(async () => {
  volumes.close()
  attachments.close()
  const stateDir = cloud.agents[0]?.agent.config.stateDir
  await cloud.close()
  if (stateDir) rmSync(stateDir, { recursive: true, force: true })
})

t.test('a create on a host whose agent died ends in error naming the host', async (t) => {
  const agent = cloud.agents[0]!
  await agent.agent.stop()
  // The host still looks up (its last heartbeat is recent): the create is admitted and cast; then it is down.
  const v = await call<Volume>(volumes, 'createVolume', { size: 1, name: 'orphan' }, demo.token)
  t.equal(v.status, 'creating')
  quickDown(cloud)
  const err = await eventually(async () => {
    const x = await call<Volume>(volumes, 'getVolume', { id: v.id }, demo.token)
    return x.status === 'error' ? x : undefined
  }, 10_000, 'the volume in error')
  t.match(err.statusReason, /UNAVAILABLE: host 'node1' is down and did not finish create within 0 s/)
  await call(volumes, 'deleteVolume', { id: v.id, force: true }, cloud.s.adminToken)
  const deleting = await call<Volume>(volumes, 'getVolume', { id: v.id }, demo.token)
  t.equal(deleting.status, 'deleting', 'the delete is cast, to a host that is down')
  const stuck = await eventually(async () => {
    const x = await call<Volume>(volumes, 'getVolume', { id: v.id }, demo.token).catch((e: { code: number }) => (e.code === status.NOT_FOUND ? undefined : Promise.reject(e)))
    return x?.status === 'error_deleting' ? x : undefined
  }, 10_000, 'the delete ended as error_deleting')
  t.match(stuck.statusReason, /host 'node1' is down and did not finish delete/)
})

const volumeNamed = async (id: string, want: string) => eventually(async () => {
  const x = await call<Volume>(volumes, 'getVolume', { id }, demo.token)
  return x.status === want ? x : undefined
}, 10_000, `volume ${id} ${want}`)
/** node1's agent again: the same compute node uuid, state dir, hypervisor and volume backend. */
const restart = async () => {
  const prev = cloud.agents[0]!
  cloud.agents[0] = await startAgent(cloud.nats.url, 'node1', { volumeDriver: prev.volumes, virtDriver: prev.driver, uuid: prev.agent.uuid, stateDir: prev.agent.config.stateDir })
  quickDown(cloud, false)
  await eventually(async () => (await cloud.s.controller.db.selectFrom('volume_backends').selectAll().execute()).length === 1, 5_000, 'the volume backend back')
}


t.test('an attach or detach cast to a server\'s host whose agent died ends failed, naming the host', async (t) => {
  await restart()
  const r = await call<CreateServerResponse>(cloud.c.servers, 'createServer', { name: 'stranded', flavorRef: 'm1.nano', imageRef: 'cirros', networks: [{ uuid: cloud.network.id }] }, demo.token)
  const server = await cloud.waitFor(r.servers[0]!.id, (s) => s.status === 'ACTIVE', demo.token)
  const v = await call<Volume>(volumes, 'createVolume', { size: 1, name: 'stranded-vol' }, demo.token)
  await volumeNamed(v.id, 'available')

  await cloud.agents[0]!.agent.stop()
  const sv = await call<ServerVolume>(cloud.c.servers, 'attachVolume', { serverId: server.id, volumeId: v.id }, demo.token)
  t.equal((await call<Volume>(volumes, 'getVolume', { id: v.id }, demo.token)).status, 'attaching')
  quickDown(cloud)
  const back = await volumeNamed(v.id, 'available')
  t.same(back.attachments, [], 'the volume is no server\'s')
  const att = await call<Attachment>(attachments, 'getAttachment', { id: sv.attachmentId }, demo.token)
  t.equal(att.status, 'error')
  t.match(att.statusReason, /UNAVAILABLE: host 'node1' is down and did not finish the attach within 0 s/)
  const s = await call<Server>(cloud.c.servers, 'getServer', { id: server.id }, demo.token)
  t.match(s.fault?.message, /attaching volume .* failed: host 'node1' is down/)
  t.equal(s.status, 'ACTIVE', 'the server keeps its status')

  // Back, the agent gets the attach cast the controller gave up on, and leaves the guest alone.
  await restart()
  await castsDone(cloud, 'node1')
  const hasDisk = async () => (await cloud.agents[0]!.driver.listDisks(server.id)).some((d) => d.device === 'vdb')
  t.notOk(await hasDisk(), 'the late attach did not reach the hypervisor')
  t.equal((await call<Volume>(volumes, 'getVolume', { id: v.id }, demo.token)).status, 'available')
  await call(attachments, 'deleteAttachment', { id: sv.attachmentId }, demo.token)
  await call(cloud.c.servers, 'attachVolume', { serverId: server.id, volumeId: v.id }, demo.token)
  await volumeNamed(v.id, 'in-use')
  await cloud.agents[0]!.agent.stop()
  await call(cloud.c.servers, 'detachVolume', { serverId: server.id, volumeId: v.id }, demo.token)
  t.equal((await call<Volume>(volumes, 'getVolume', { id: v.id }, demo.token)).status, 'detaching')
  quickDown(cloud)
  const kept = await volumeNamed(v.id, 'in-use')
  t.equal(kept.attachments[0]?.serverId, server.id, 'still attached to the server, as the host has not said otherwise')
  const again = await call<Attachment>(attachments, 'getAttachment', { id: kept.attachments[0]!.attachmentId }, demo.token)
  t.equal(again.status, 'attached')
  t.match(again.statusReason, /UNAVAILABLE: host 'node1' is down and did not finish the detach/)
  t.match((await call<Server>(cloud.c.servers, 'getServer', { id: server.id }, demo.token)).fault?.message, /detaching volume .* failed: host 'node1' is down/)

  // Back, the agent gets the detach the controller gave up on, and leaves the disk where the API says it is.
  await restart()
  await castsDone(cloud, 'node1')
  t.ok(await hasDisk(), 'the late detach did not take the disk')
  t.equal((await call<Volume>(volumes, 'getVolume', { id: v.id }, demo.token)).status, 'in-use')
  // Nothing more is stuck: the host detaches it when asked.
  await call(cloud.c.servers, 'detachVolume', { serverId: server.id, volumeId: v.id }, demo.token)
  await volumeNamed(v.id, 'available')
  t.notOk(await hasDisk(), 'the disk left the guest')
  await call(cloud.c.servers, 'deleteServer', { id: server.id }, demo.token)
  await call(volumes, 'deleteVolume', { id: v.id }, demo.token)
})

t.test('an attach given up on ends its network export on the volume\'s host at once, not at that host\'s next start', async (t) => {
  const r = await call<CreateServerResponse>(cloud.c.servers, 'createServer', { name: 'far-attach', flavorRef: 'm1.nano', imageRef: 'cirros', networks: [{ uuid: cloud.network.id }] }, demo.token)
  const server = await cloud.waitFor(r.servers[0]!.id, (s) => s.status === 'ACTIVE', demo.token)
  // The volume on node2 (its own backend), the server on node1: attached over the network.
  const far = await startAgent(cloud.nats.url, 'node2', { fakeVolumes: { backendName: 'far' } })
  t.teardown(() => far.stop())
  await cloud.s.controller.hosts.discover()
  await eventually(async () => (await cloud.s.controller.db.selectFrom('volume_backends').selectAll().execute()).length === 2, 5_000, 'the second backend')
  const types = client(VolumeTypesClient, cloud.s.address)
  t.teardown(() => types.close())
  await call(types, 'createVolumeType', { name: 'far', extraSpecs: { volume_backend_name: 'far' } }, cloud.s.adminToken)
  const v = await call<Volume>(volumes, 'createVolume', { size: 1, name: 'far-vol', volumeType: 'far' }, demo.token)
  await volumeNamed(v.id, 'available')
  t.equal((await call<Volume>(volumes, 'getVolume', { id: v.id }, cloud.s.adminToken)).host, 'node2', 'the volume is on node2')

  // node1 dies after its agent had the export made (as it does before plugging the disk), before it reported.
  await cloud.agents[0]!.agent.stop()
  await call<ServerVolume>(cloud.c.servers, 'attachVolume', { serverId: server.id, volumeId: v.id }, demo.token)
  quickDown(cloud)
  await far.volumes.export(v.id, 'node1', { network: true })
  t.same(await far.volumes.exports(), [{ volumeId: v.id, host: 'node1' }], 'node2 serves the export for node1')
  const back = await volumeNamed(v.id, 'available')
  t.same(back.attachments, [], 'the attach was given up on')
  await eventually(async () => (await far.volumes.exports()).length === 0 || undefined, 10_000, 'the export to end')
  t.pass('and node2 ended the export at once, its agent running all along')
  // node1 stays down: its server is deleted here; the volume on node2 goes.
  await call(cloud.c.servers, 'deleteServer', { id: server.id }, demo.token)
  await call(volumes, 'deleteVolume', { id: v.id }, demo.token)
  await eventually(() => call(volumes, 'getVolume', { id: v.id }, demo.token).then(() => false, (e: { code?: number }) => e.code === status.NOT_FOUND), 10_000, 'the volume deleted')
})

// No volume waits forever: work cast to a backend host whose agent died and stays down ends, after
// volumes.stuckAfterMs, as that work's failure with a reason naming the host (error for a create),
// so an admin never needs reset-state; the volume can then be deleted by its owner (force-deleted
// here, its host being gone).
import t from 'tap'
import { startCloud, type TestCloud } from '../../helpers/cloud.js'
import { call, client, status } from '../../helpers/grpc.js'
import { eventually } from '../../helpers/agents.js'
import { tenant, type Tenant } from '../network/fixtures.js'
import { VolumesClient, type Volume } from '../../../proto/gen/strato/volume/v1/volume.js'

let cloud: TestCloud
let demo: Tenant
let volumes: VolumesClient

t.before(async () => {
  cloud = await startCloud({ hosts: ['node1'], controller: { hosts: { heartbeatIntervalMs: 200, missedHeartbeats: 5 }, volumes: { stuckAfterMs: 300 } } })
  demo = await tenant(cloud.s, 'demo')
  volumes = client(VolumesClient, cloud.s.address)
  await eventually(async () => (await cloud.s.controller.db.selectFrom('volume_backends').selectAll().execute()).length === 1, 5_000, 'a volume backend')
})
t.teardown(async () => {
  volumes.close()
  await cloud.close()
})

t.test('a create on a host whose agent died ends in error naming the host', async (t) => {
  const agent = cloud.agents[0]!
  await agent.agent.stop()
  // The host still looks up for a second (heartbeats): the create is admitted and cast.
  const v = await call<Volume>(volumes, 'createVolume', { size: 1, name: 'orphan' }, demo.token)
  t.equal(v.status, 'creating')
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

/**
 * A small cloud for compute tests: a real nats-server, a real controller,
 * agents (fake driver, in-process, by default), every host mapped, a bootable
 * qcow2 image uploaded through the image service, a flavor, and the seed's
 * shared provider network with a subnet. Clients for the compute services.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { Metadata, type ChannelCredentials, type Client, type ServiceError } from '@grpc/grpc-js'
import { jetstreamManager } from '@nats-io/jetstream'
import type { ConfigOverrides } from '../../controller/config.js'
import { startController, type TestController } from './controller.js'
import { startNats, type NatsServer } from './nats.js'
import { spawnController, type ControllerProcess } from './controller-process.js'
import { startAgent, eventually, type TestAgent } from './agents.js'
import { call, client as plainOrTls, status, type Ctor, type Decoded } from './grpc.js'
import type { AgentConfigOverrides } from '../../agent/config.js'
import type { FakeDriverOptions } from '../../agent/virt/fake.js'
import type { FakeVolumeDriverOptions } from '../../agent/volume/fake.js'
import { bootDiskImage, bootMarker } from '../fixtures/boot-sector.js'
import { CAST_STREAM, castConsumer } from '../../proto/subjects.js'
import { ImagesClient, type Image } from '../../proto/gen/strato/image/v1/image.js'
import { FlavorsClient, KeypairsClient, QuotasClient, AvailabilityZonesClient, type Flavor } from '../../proto/gen/strato/compute/v1/compute.js'
import { ServerGroupsClient, ServersClient, type Server } from '../../proto/gen/strato/compute/v1/servers.js'
import { HostsClient } from '../../proto/gen/strato/compute/v1/hosts.js'
import { PlacementClient } from '../../proto/gen/strato/placement/v1/placement.js'
import { NetworksClient, PortsClient, SecurityGroupsClient, SubnetsClient, type Network, type Subnet } from '../../proto/gen/strato/network/v1/network.js'

export interface CloudClients {
  servers: ServersClient
  serverGroups: ServerGroupsClient
  images: ImagesClient
  flavors: FlavorsClient
  keypairs: KeypairsClient
  quotas: QuotasClient
  zones: AvailabilityZonesClient
  hosts: HostsClient
  placement: PlacementClient
  networks: NetworksClient
  subnets: SubnetsClient
  ports: PortsClient
  securityGroups: SecurityGroupsClient
}

export interface TestCloud {
  nats: NatsServer
  s: TestController
  agents: TestAgent[]
  c: CloudClients
  image: Decoded<Image>
  /** The marker the image's guest prints on its console. */
  marker: string
  flavor: Decoded<Flavor>
  network: Decoded<Network>
  subnet: Decoded<Subnet>
  /** Polls GetServer until `pred` holds. */
  waitFor(id: string, pred: (s: Decoded<Server>) => boolean, token?: string, timeoutMs?: number, what?: string): Promise<Decoded<Server>>
  close(): Promise<void>
}

export interface CloudOptions {
  hosts?: string[]
  controller?: ConfigOverrides
  agent?: AgentConfigOverrides & { fake?: FakeDriverOptions; fakeVolumes?: FakeVolumeDriverOptions }
}

/** Uploads a file (or bytes) to an image that was created queued. */
export function uploadImage(images: ImagesClient, token: string, imageId: string, data: Buffer): Promise<Image> {
  const md = new Metadata()
  md.set('x-auth-token', token)
  return new Promise((resolve, reject) => {
    const st = images.uploadImage(md, (err: ServiceError | null, res: Image) => (err ? reject(err) : resolve(res)))
    st.write({ imageId, size: data.length, data })
    st.end()
  })
}

/** Typed clients for the compute-side services at `address` (plaintext unless `creds` say TLS). */
export function cloudClients(address: string, creds?: ChannelCredentials): CloudClients {
  const client = <C extends Client>(ctor: Ctor<C>, a: string) => plainOrTls(ctor, a, creds)
  return {
    servers: client(ServersClient, address),
    serverGroups: client(ServerGroupsClient, address),
    images: client(ImagesClient, address),
    flavors: client(FlavorsClient, address),
    keypairs: client(KeypairsClient, address),
    quotas: client(QuotasClient, address),
    zones: client(AvailabilityZonesClient, address),
    hosts: client(HostsClient, address),
    placement: client(PlacementClient, address),
    networks: client(NetworksClient, address),
    subnets: client(SubnetsClient, address),
    ports: client(PortsClient, address),
    securityGroups: client(SecurityGroupsClient, address),
  }
}

export type Provisioned = Pick<TestCloud, 'image' | 'marker' | 'flavor' | 'network' | 'subnet'>

/** What every compute test boots with: the boot-sector image "cirros" (public), flavor m1.nano, the shared provider network. */
export async function provision(c: CloudClients, adminToken: string): Promise<Provisioned> {
  const scratch = mkdtempSync(path.join(tmpdir(), 'strato-cloud-'))
  const marker = bootMarker(path.basename(scratch))
  const file = await bootDiskImage({ line: marker, path: path.join(scratch, 'boot.qcow2'), sizeMiB: 16 })
  const created = await call<Image>(c.images, 'createImage', { name: 'cirros', diskFormat: 'qcow2', containerFormat: 'bare', visibility: 'public' }, adminToken)
  await uploadImage(c.images, adminToken, created.id, readFileSync(file))
  const image = await call<Image>(c.images, 'getImage', { id: created.id }, adminToken)
  rmSync(scratch, { recursive: true, force: true })
  const flavor = await call<Flavor>(c.flavors, 'createFlavor', { id: '1', name: 'm1.nano', vcpus: 1, ram: 64, disk: 1 }, adminToken)
  const network = await call<Network>(c.networks, 'createNetwork', { name: 'provider', shared: true, routerExternal: true, providerPhysicalNetwork: 'provider', providerNetworkType: 'flat' }, adminToken)
  const subnet = await call<Subnet>(c.subnets, 'createSubnet', {
    name: 'provider', networkId: network.id, cidr: '192.168.201.0/24', gatewayIp: '192.168.201.1',
    allocationPools: [{ start: '192.168.201.200', end: '192.168.201.210' }], dnsNameservers: ['114.114.114.114'],
  }, adminToken)
  return { image, marker, flavor, network, subnet }
}

/** For `eventually`: true once GetServer says NOT_FOUND (the server is deleted); any other error fails the wait. */
export function serverGone(c: CloudClients, id: string, token: string): Promise<true | undefined> {
  return call<Server>(c.servers, 'getServer', { id }, token).then(
    () => undefined,
    (e: { code?: number }) => (e.code === status.NOT_FOUND ? true : Promise.reject(e)),
  )
}

/** Polls GetServer until `pred` holds; the error says what the server last looked like. */
export function serverWaiter(c: CloudClients, adminToken: string): TestCloud['waitFor'] {
  return (id, pred, token = adminToken, timeoutMs = 10_000, what = 'the server') => {
    let last: Decoded<Server> | undefined
    return eventually(async () => {
      last = await call<Server>(c.servers, 'getServer', { id }, token)
      return pred(last) ? last : undefined
    }, timeoutMs, what).catch((err: Error) => {
      throw new Error(`${err.message}; last seen: ${last ? `${last.status} vm_state=${last.vmState} task=${last.taskState} fault=${last.fault?.message ?? ''}` : 'nothing'}`)
    })
  }
}

/**
 * startCloud's down window: agents beat every 200 ms and a host is down after
 * 50 missed beats (10 s). A shorter one (5 beats, 1 s) was passed by the
 * in-process agents' heartbeats lagging on a loaded machine (load 20,
 * PostgreSQL): live hosts went down mid-suite. Tests that need a host down
 * fast say so (`quickDown`, `stopHostForGood`).
 */
const CLOUD_MISSED_HEARTBEATS = 50
/** The window `quickDown` cuts the controller's to: 5 beats (1 s at 200 ms). */
const QUICK_DOWN_MISSED_HEARTBEATS = 5
/** Each controller's own window, kept while `quickDown` has it cut. */
const ownWindow = new WeakMap<object, number>()

/**
 * Cuts the (in-process) controller's down window to 5 beats, so that a host
 * whose agent the test stopped is down in ~1 s rather than the cloud's long
 * window, as Nova's tests shorten `service_down_time`; `on = false` gives the
 * controller its own window back (once the host's agent runs again). While
 * it is cut, the live hosts' beats must keep up.
 */
export function quickDown(cloud: Pick<TestCloud, 's'>, on = true): void {
  const hosts = cloud.s.controller.config.hosts
  const own = ownWindow.get(hosts) ?? hosts.missedHeartbeats
  ownWindow.set(hosts, own)
  hosts.missedHeartbeats = on ? Math.min(own, QUICK_DOWN_MISSED_HEARTBEATS) : own
}

/** Stops a host's agent for good and waits until the controller counts the host down (`quickDown` from then on). */
export async function stopHostForGood(cloud: Pick<TestCloud, 's'>, agent: TestAgent, timeoutMs = 15_000): Promise<void> {
  quickDown(cloud)
  const host = agent.agent.config.host
  await agent.stop()
  await eventually(() => !cloud.s.controller.hosts.isUp(host), timeoutMs, `host ${host} to be down`)
}

/** Until `host`'s agent has taken and finished every cast queued for it (its durable consumer has none pending or unacked). */
export async function castsDone(cloud: Pick<TestCloud, 's'>, host: string, timeoutMs = 10_000): Promise<void> {
  const jsm = await jetstreamManager(cloud.s.controller.nats!)
  await eventually(async () => {
    const c = await jsm.consumers.info(CAST_STREAM, castConsumer(host))
    return c.num_pending === 0 && c.num_ack_pending === 0
  }, timeoutMs, `${host}'s casts all done`)
}

export async function startCloud(o: CloudOptions = {}): Promise<TestCloud> {
  const nats = await startNats()
  const s = await startController({
    natsUrl: nats.url,
    ...o.controller,
    hosts: { heartbeatIntervalMs: 200, missedHeartbeats: CLOUD_MISSED_HEARTBEATS, castAckWaitMs: 3_000, ...o.controller?.hosts },
    servers: { castRetryMs: 200, agentCallTimeoutMs: 5_000, ...o.controller?.servers },
  })
  const c = cloudClients(s.address, s.credentials)
  const agents: TestAgent[] = []
  for (const host of o.hosts ?? ['node1', 'node2']) {
    // With TLS on, agents trust the controller's CA, as npm start's agent does.
    agents.push(await startAgent(nats.url, host, { powerSyncIntervalMs: 200, shutdownTimeoutMs: 2_000, ...(s.caFile ? { caFile: s.caFile } : {}), ...o.agent }))
  }
  await s.controller.hosts.discover()
  const { image, marker, flavor, network, subnet } = await provision(c, s.adminToken)
  const waitFor = serverWaiter(c, s.adminToken)
  return {
    nats, s, agents, c, image, marker, flavor, network, subnet, waitFor,
    async close() {
      for (const a of agents) await a.stop().catch(() => {})
      for (const x of Object.values(c)) x.close()
      await s.close()
      await nats.stop()
    },
  }
}

/**
 * A nats-server and a controller as processes, with the fault suites' timings (heartbeats and cast
 * retries short enough to see a kill soon, long enough for a loaded TCG host), and clients to it;
 * each one's stop goes onto `cleanups` (and, with STRATO_TEST_LOG, the controller's log into `t`).
 */
export async function spawnFaultController(t: { comment(...m: unknown[]): void }, cleanups: Array<() => Promise<unknown>>): Promise<{ nats: NatsServer; ctl: ControllerProcess; c: CloudClients }> {
  const nats = await startNats()
  cleanups.push(() => nats.stop())
  const ctl = await spawnController(nats.url, {
    hosts: { heartbeatIntervalMs: 500, missedHeartbeats: 10, castAckWaitMs: 3_000 },
    servers: { castRetryMs: 500, agentCallTimeoutMs: 20_000 },
  })
  cleanups.push(() => ctl.close())
  if (process.env.STRATO_TEST_LOG) cleanups.push(async () => t.comment(ctl.log().slice(-8000)))
  const c = cloudClients(ctl.address)
  cleanups.push(async () => Object.values(c).forEach((x) => x.close()))
  return { nats, ctl, c }
}

/**
 * Configuration of the all-in-one stack that `npm start` runs. The only file
 * of the stack runner that reads `process.env`; every field has a default, so
 * two stacks can run side by side by changing the ports and the home dir.
 */
import { hostname } from 'node:os'
import path from 'node:path'
import { InvalidArgument } from '../../proto/errors.js'

export interface StackConfig {
  /** State of the whole stack: nats/, controller/. @default `./.strato` */
  home: string
  /** @default 4222 */
  natsPort: number
  /** @default 8770 */
  grpcPort: number
  /** `npm run start:cluster`: the first controller's REST port (the second's is 2 above, as its gRPC port is); null (`off`) serves no REST. `STRATO_REST_PORT` @default 8771 */
  restPort: number | null
  /** `npm run start:cluster`: the first NATS node's route port (the others follow). `STRATO_NATS_ROUTE_PORT` @default 6222 */
  natsRoutePort: number
  /** `npm run start:cluster`: the PostgreSQL cluster's port (127.0.0.1 only). `STRATO_POSTGRES_PORT` @default 5432 */
  postgresPort: number
  /** @default `127.0.0.1` */
  host: string
  /** Where the first run writes the admin credentials. @default `./admin-openrc` */
  openrc: string
  /** @default `info` */
  logLevel: string
  /** QEMU's group (qemu.conf `group`), let through the home to the guests' disks. `STRATO_AGENT_QEMU_GROUP` @default `libvirt-qemu` */
  qemuGroup: string
  /** `libvirt`: start libvirtd and one agent for this host; `none`: no compute host. @default `libvirt` */
  agent: 'libvirt' | 'none'
  /** The host name this host's agent announces (its NATS credentials are made for it). `STRATO_AGENT_HOST` @default os.hostname() */
  agentHost: string
  /**
   * The single-host demo's way in: `on` makes this host the gateway of the
   * provider network's subnet (its gateway address on a port of the provider
   * bridge, so `ping` and `ssh` from the host reach the guests, through their
   * security groups); `nat` also masquerades the guests' traffic to the
   * host's other networks. `STRATO_HOST_GATEWAY` or `npm start -- --host-gateway[=nat]`. @default off
   */
  hostGateway: 'off' | 'on' | 'nat'
}

function port(name: string, raw: string | undefined, dflt: number): number {
  if (raw === undefined || raw === '') return dflt
  const n = Number(raw)
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw new InvalidArgument(`${name} must be a TCP port (1-65535), got '${raw}'`, { field: name })
  return n
}

export function loadStackConfig(env: NodeJS.ProcessEnv = process.env, argv: string[] = process.argv.slice(2)): StackConfig {
  let gatewayArg: string | undefined
  for (const a of argv) {
    if (a === '--host-gateway') gatewayArg = 'on'
    else if (a.startsWith('--host-gateway=')) gatewayArg = a.slice('--host-gateway='.length)
    else throw new InvalidArgument(`npm start: unknown option '${a}' (known: --host-gateway, --host-gateway=nat)`, { field: 'argv' })
  }
  return {
    home: path.resolve(env.STRATO_HOME || '.strato'),
    natsPort: port('STRATO_NATS_PORT', env.STRATO_NATS_PORT, 4222),
    grpcPort: port('STRATO_GRPC_PORT', env.STRATO_GRPC_PORT, 8770),
    restPort: env.STRATO_REST_PORT === 'off' ? null : port('STRATO_REST_PORT', env.STRATO_REST_PORT, 8771),
    natsRoutePort: port('STRATO_NATS_ROUTE_PORT', env.STRATO_NATS_ROUTE_PORT, 6222),
    postgresPort: port('STRATO_POSTGRES_PORT', env.STRATO_POSTGRES_PORT, 5432),
    host: env.STRATO_HOST || '127.0.0.1',
    openrc: path.resolve(env.STRATO_OPENRC || 'admin-openrc'),
    logLevel: env.STRATO_LOG_LEVEL || 'info',
    qemuGroup: env.STRATO_AGENT_QEMU_GROUP || 'libvirt-qemu',
    agent: agentMode(env.STRATO_AGENT),
    agentHost: env.STRATO_AGENT_HOST || hostname(),
    hostGateway: gatewayMode(gatewayArg ?? env.STRATO_HOST_GATEWAY),
  }
}

function gatewayMode(raw: string | undefined): StackConfig['hostGateway'] {
  if (raw === undefined || raw === '' || raw === 'off' || raw === '0') return 'off'
  if (raw === 'on' || raw === '1') return 'on'
  if (raw === 'nat') return 'nat'
  throw new InvalidArgument(`host gateway (STRATO_HOST_GATEWAY, --host-gateway=) must be off, on or nat, got '${raw}'`, { field: 'STRATO_HOST_GATEWAY' })
}

function agentMode(raw: string | undefined): StackConfig['agent'] {
  if (raw === undefined || raw === '' || raw === 'libvirt') return 'libvirt'
  if (raw === 'none') return 'none'
  throw new InvalidArgument(`STRATO_AGENT must be libvirt or none, got '${raw}'`, { field: 'STRATO_AGENT' })
}

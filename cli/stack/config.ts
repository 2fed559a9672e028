/**
 * Configuration of the all-in-one stack that `npm start` runs. The only file
 * of the stack runner that reads `process.env`; every field has a default, so
 * two stacks can run side by side by changing the ports and the home dir.
 */
import path from 'node:path'
import { InvalidArgument } from '../../proto/errors.js'

export interface StackConfig {
  /** State of the whole stack: nats/, controller/. @default `./.strato` */
  home: string
  /** @default 4222 */
  natsPort: number
  /** @default 8770 */
  grpcPort: number
  /** @default `127.0.0.1` */
  host: string
  /** Where the first run writes the admin credentials. @default `./admin-openrc` */
  openrc: string
  /** @default `info` */
  logLevel: string
  /** `libvirt`: start libvirtd and one agent for this host; `none`: no compute host. @default `libvirt` */
  agent: 'libvirt' | 'none'
}

function port(name: string, raw: string | undefined, dflt: number): number {
  if (raw === undefined || raw === '') return dflt
  const n = Number(raw)
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw new InvalidArgument(`${name} must be a TCP port (1-65535), got '${raw}'`, { field: name })
  return n
}

export function loadStackConfig(env: NodeJS.ProcessEnv = process.env): StackConfig {
  return {
    home: path.resolve(env.STRATO_HOME || '.strato'),
    natsPort: port('STRATO_NATS_PORT', env.STRATO_NATS_PORT, 4222),
    grpcPort: port('STRATO_GRPC_PORT', env.STRATO_GRPC_PORT, 8770),
    host: env.STRATO_HOST || '127.0.0.1',
    openrc: path.resolve(env.STRATO_OPENRC || 'admin-openrc'),
    logLevel: env.STRATO_LOG_LEVEL || 'info',
    agent: agentMode(env.STRATO_AGENT),
  }
}

function agentMode(raw: string | undefined): StackConfig['agent'] {
  if (raw === undefined || raw === '' || raw === 'libvirt') return 'libvirt'
  if (raw === 'none') return 'none'
  throw new InvalidArgument(`STRATO_AGENT must be libvirt or none, got '${raw}'`, { field: 'STRATO_AGENT' })
}

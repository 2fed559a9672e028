/**
 * The stack's NATS identities, made at first start under `<home>/nats/auth/`
 * (directory 0700, every file 0600): the operator and account seeds
 * (`keys/`), the controller's and this host's agent's `.creds`, and the
 * nats-server config that turns auth on (`nats-server.conf`, rewritten at
 * each start from the kept keys). JetStream keeps its store in `<home>/nats/`
 * as before. Later hosts get their credentials from the same operator.
 */
import { existsSync } from 'node:fs'
import path from 'node:path'
import { ensureOperator, mintAgentCreds, mintControllerCreds, writeCreds, writeNatsServerConfig } from '../../controller/bus/credentials.js'

export interface StackNats {
  /** nats-server's config file (`-c`). */
  configFile: string
  controllerCreds: string
  agentCreds: string
}

export function prepareStackNats(o: { natsDir: string; host: string; port: number; agentHost: string }): StackNats {
  const authDir = path.join(o.natsDir, 'auth')
  const op = ensureOperator(path.join(authDir, 'keys'))
  const keep = (file: string, mint: () => string) => (existsSync(file) ? file : writeCreds(file, mint()))
  return {
    configFile: writeNatsServerConfig(op, path.join(authDir, 'nats-server.conf'), { host: o.host, port: o.port, storeDir: o.natsDir }),
    controllerCreds: keep(path.join(authDir, 'controller.creds'), () => mintControllerCreds(op)),
    agentCreds: keep(path.join(authDir, `agent-${o.agentHost}.creds`), () => mintAgentCreds(op, o.agentHost)),
  }
}

/**
 * Reading the `.creds` file (user JWT + nkey seed) a daemon connects to NATS
 * with: shared by the controller and the agent, which both refuse a file
 * others can read (the seed is a password).
 */
import { readFileSync, statSync } from 'node:fs'
import { FailedPrecondition } from './errors.js'

/**
 * The content of the credentials file `file`.
 * @throws FailedPrecondition when it is missing, unreadable, or group/world-accessible.
 */
export function readCredsFile(file: string): Uint8Array {
  let mode: number
  try {
    mode = statSync(file).mode
  } catch (err) {
    throw new FailedPrecondition(`cannot read NATS credentials ${file}: ${(err as Error).message}`, { cause: err })
  }
  if (mode & 0o077) throw new FailedPrecondition(`NATS credentials ${file} are readable by others (mode ${(mode & 0o777).toString(8).padStart(4, '0')}); chmod 600 it`)
  return readFileSync(file)
}

/** A `.creds` file (JWT + seed) as the `nats`/`nsc` tools write it, which `credsAuthenticator` reads. */
export function formatCreds(jwt: string, seed: string): string {
  return `-----BEGIN NATS USER JWT-----
${jwt}
------END NATS USER JWT------

************************* IMPORTANT *************************
NKEY Seed printed below can be used to sign and prove identity.
NKEYs are sensitive and should be treated as secrets.

-----BEGIN USER NKEY SEED-----
${seed}
------END USER NKEY SEED------

*************************************************************
`
}

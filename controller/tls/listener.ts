/**
 * What the controller's gRPC listener serves TLS with: the operator's
 * certificate and key when configured, else a certificate from the
 * controller's own CA (made on first start) for every name a client may use.
 * Transport-free: the server turns the PEMs into credentials.
 */
import { createPrivateKey, X509Certificate } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { FailedPrecondition } from '../../proto/errors.js'
import type { ControllerConfig } from '../config.js'
import type { Logger } from '../log.js'
import { ensureCa, ensureCertificate } from './ca.js'
import { certificateNames } from './names.js'

export interface ListenerTls {
  certPem: Buffer
  keyPem: Buffer
  /** The CA clients should trust (OS_CACERT); null when the operator's certificate comes without one. */
  caFile: string | null
}

/** null when TLS is off. */
export async function listenerTls(cfg: ControllerConfig, log: Logger): Promise<ListenerTls | null> {
  const tls = cfg.tls
  if (tls.mode === 'off') {
    log.warn({ host: cfg.grpc.host }, 'gRPC listener in plaintext (tls.mode=off, loopback only): any local user can read its traffic, tokens and passwords included')
    return null
  }
  if (tls.certFile && tls.keyFile) {
    const certPem = readPem(tls.certFile, 'tls.certFile')
    const keyPem = readPem(tls.keyFile, 'tls.keyFile')
    // Said here, by file name, rather than as an OpenSSL error from deep inside the listener's bind.
    let matches = false
    try {
      matches = new X509Certificate(certPem).checkPrivateKey(createPrivateKey(keyPem))
    } catch (err) {
      throw new FailedPrecondition(`tls.certFile ${tls.certFile} / tls.keyFile ${tls.keyFile}: not a PEM certificate and key: ${(err as Error).message}`, { cause: err })
    }
    if (!matches) throw new FailedPrecondition(`tls.keyFile ${tls.keyFile} is not the key of tls.certFile ${tls.certFile}`)
    return { certPem, keyPem, caFile: tls.caFile }
  }
  const ca = await ensureCa(tls.dir)
  const { dnsNames, ips } = certificateNames({ listen: cfg.grpc.host, publicAddress: cfg.grpc.publicAddress, names: cfg.tls.names })
  const cert = await ensureCertificate(ca, tls.dir, 'controller', { commonName: 'strato-controller', dnsNames, ips, usage: 'server' })
  if (cert.issued) log.info({ cert: cert.certFile, ca: ca.certFile, dnsNames, ips }, 'issued the gRPC listener its certificate from the controller CA')
  // The chain ends with the CA itself: a joining host (strato-agent join) finds it there and pins it by its hash.
  const chain = Buffer.concat([readFileSync(cert.certFile), Buffer.from(ca.certPem.endsWith('\n') ? ca.certPem : `${ca.certPem}\n`)])
  return { certPem: chain, keyPem: readFileSync(cert.keyFile), caFile: tls.caFile ?? ca.certFile }
}

function readPem(file: string, field: string): Buffer {
  try {
    return readFileSync(file)
  } catch (err) {
    throw new FailedPrecondition(`cannot read ${field} ${file}: ${(err as Error).message}`, { cause: err })
  }
}

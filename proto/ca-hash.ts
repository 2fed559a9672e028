/**
 * How a joining host pins the cloud's CA before it trusts anything the
 * controller says (kubeadm's `--discovery-token-ca-cert-hash`): `sha256:` and
 * the hex SHA-256 of the CA certificate's SubjectPublicKeyInfo (DER). The
 * same on both sides: the controller prints it with a join token, the agent
 * checks the certificate chain the controller presents against it.
 */
import { createHash, X509Certificate } from 'node:crypto'

export function caCertHash(pem: string | Buffer): string {
  const spki = new X509Certificate(pem).publicKey.export({ type: 'spki', format: 'der' })
  return `sha256:${createHash('sha256').update(spki).digest('hex')}`
}

/** Whether `hash` is of the form caCertHash makes. */
export function isCaCertHash(hash: string): boolean {
  return /^sha256:[0-9a-f]{64}$/.test(hash)
}

/**
 * Certificates for NBD exports in tests, issued by the project's CA module
 * (`controller/tls/ca.ts`), in QEMU's layout: a server directory
 * (`ca-cert.pem`, `server-cert.pem`, `server-key.pem`) for the volume host's
 * export, and a client directory (`ca-cert.pem`, `client-cert.pem`,
 * `client-key.pem`) for what opens it — `qemu-io` here, or QEMU under libvirt,
 * whose NBD client certificates live in /etc/pki/qemu (qemu.conf's
 * `nbd_tls_x509_cert_dir` default). A host's client certificate names the
 * host (`CN=<host>`: exports accept only the hosts they are for). And
 * `qemu-io` through an export, to read and write a volume as a guest on
 * another host would.
 */
import { execFile } from 'node:child_process'
import { chmodSync, chownSync, copyFileSync, existsSync, mkdirSync, readFileSync, renameSync } from 'node:fs'
import path from 'node:path'
import { promisify } from 'node:util'
import { ensureCa, ensureCertificate } from '../../controller/tls/ca.js'

const run = promisify(execFile)

export interface NbdTls {
  serverDir: string
  /** A client directory whose certificate names no host (CN=nbd-client): of the CA, but no export is for it. */
  clientDir: string
  /** The client directory of host `host` (its certificate's CN is the host's name), made when missing. */
  clientFor(host: string): Promise<string>
}

/** Makes (idempotently) a CA in `<dir>/ca` and server + client directories for exports listening on `ips`. */
export async function nbdTls(dir: string, ips = ['127.0.0.1']): Promise<NbdTls> {
  const ca = await ensureCa(path.join(dir, 'ca'), 'Strato NBD test CA')
  const issued = path.join(dir, 'issued')
  const certDir = (d: string, role: 'server' | 'client', c: { certFile: string; keyFile: string }) => {
    mkdirSync(d, { recursive: true, mode: 0o700 })
    copyFileSync(ca.certFile, path.join(d, 'ca-cert.pem'))
    copyFileSync(c.certFile, path.join(d, `${role}-cert.pem`))
    copyFileSync(c.keyFile, path.join(d, `${role}-key.pem`))
    chmodSync(path.join(d, `${role}-key.pem`), 0o600)
    return d
  }
  const client = (name: string, commonName: string) => ensureCertificate(ca, issued, name, { commonName, dnsNames: [], ips: ['127.0.0.1'], usage: 'client' })
  const serverDir = certDir(path.join(dir, 'server'), 'server', await ensureCertificate(ca, issued, 'server', { commonName: 'nbd-server', dnsNames: [], ips, usage: 'server' }))
  const clientDir = certDir(path.join(dir, 'client'), 'client', await client('client', 'nbd-client'))
  return {
    serverDir, clientDir,
    clientFor: async (host) => certDir(path.join(dir, `client-${host}`), 'client', await client(`client-${host}`, host)),
  }
}

/** libvirt's default NBD client certificate directory (qemu.conf `nbd_tls_x509_cert_dir` unset). */
export const LIBVIRT_NBD_CLIENT_DIR = '/etc/pki/qemu'

/**
 * A CA kept for the machine (in /var/lib/strato-test/nbd-tls) whose client
 * certificate for `host` QEMU under libvirt presents (/etc/pki/qemu, the key
 * readable by root and QEMU's group only): the machine's libvirt is that
 * host's, the one that attaches over the network. And a server directory in
 * `dir` from the same CA: what a volume host's agent serves exports with.
 */
export async function libvirtNbdTls(dir: string, host: string): Promise<NbdTls & { libvirtClientDir: string }> {
  const shared = await nbdTls('/var/lib/strato-test/nbd-tls')
  const mine = await shared.clientFor(host)
  const same = (f: string) => existsSync(path.join(LIBVIRT_NBD_CLIENT_DIR, f)) && readFileSync(path.join(LIBVIRT_NBD_CLIENT_DIR, f), 'utf8') === readFileSync(path.join(mine, f), 'utf8')
  // QEMU runs as libvirt-qemu:kvm; no one else reads the key.
  const kvm = Number(readFileSync('/etc/group', 'utf8').split('\n').find((l) => l.startsWith('kvm:'))?.split(':')[2])
  const keyMode = (file: string) => {
    if (Number.isInteger(kvm)) chownSync(file, 0, kvm)
    chmodSync(file, 0o640)
  }
  if (!same('ca-cert.pem') || !same('client-cert.pem')) {
    mkdirSync(LIBVIRT_NBD_CLIENT_DIR, { recursive: true, mode: 0o755 })
    // Key first, each file renamed into place: a QEMU starting meanwhile reads whole files.
    for (const f of ['client-key.pem', 'ca-cert.pem', 'client-cert.pem']) {
      const next = path.join(LIBVIRT_NBD_CLIENT_DIR, `.${f}.new`)
      copyFileSync(path.join(mine, f), next)
      if (f === 'client-key.pem') keyMode(next)
      renameSync(next, path.join(LIBVIRT_NBD_CLIENT_DIR, f))
    }
  }
  keyMode(path.join(LIBVIRT_NBD_CLIENT_DIR, 'client-key.pem'))
  const serverDir = path.join(dir, 'nbd-server-tls')
  mkdirSync(serverDir, { recursive: true, mode: 0o700 })
  for (const f of ['ca-cert.pem', 'server-cert.pem', 'server-key.pem']) copyFileSync(path.join(shared.serverDir, f), path.join(serverDir, f))
  return { ...shared, serverDir, libvirtClientDir: mine }
}

/** An NBD export as a client dials it. */
export interface NbdTarget {
  address: string
  port: number
  name: string
}

/** Runs qemu-io commands (`-c`) on an export over TLS with the client certificates in `clientDir`; stdout. */
export async function nbdIo(e: NbdTarget, clientDir: string | undefined, ...commands: string[]): Promise<string> {
  const opts = `driver=raw,file.driver=nbd,file.server.type=inet,file.server.host=${e.address},file.server.port=${e.port},file.export=${e.name}`
  const args = clientDir
    ? ['--object', `tls-creds-x509,id=tls0,dir=${clientDir},endpoint=client`, '--image-opts', `${opts},file.tls-creds=tls0`]
    : ['--image-opts', opts]
  const { stdout } = await run('qemu-io', [...args, ...commands.flatMap((c) => ['-c', c])], { timeout: 60_000 })
  return stdout
}

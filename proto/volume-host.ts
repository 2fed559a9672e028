/**
 * Cinder's name of the place a volume lives, `host@backend#pool`
 * (os-vol-host-attr:host), which both the REST API and the CLI show. A
 * Strato backend has one pool, named as the backend; a host that reports no
 * backend name is shown plain, as is no host ('').
 */
export function cinderVolumeHost(host: string, backendName: string): string {
  return host && backendName ? `${host}@${backendName}#${backendName}` : host
}

/**
 * HTTP GETs to the metadata address from inside a network namespace: node
 * run through `ip netns exec`, bound to a source address, timing each
 * request on the client's side. For metadata tests and the bench.
 */
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'

const run = promisify(execFile)

const CLIENT = `
const http = require('node:http')
const [from, headers, keepAlive, ...paths] = process.argv.slice(1)
const agent = keepAlive === '1' ? new http.Agent({ keepAlive: true, maxSockets: 1 }) : false
const get = (path) => new Promise((resolve, reject) => {
  const t0 = process.hrtime.bigint()
  http.get({ host: '169.254.169.254', port: 80, path, localAddress: from, agent, headers: JSON.parse(headers) }, (res) => {
    const chunks = []
    res.on('data', (c) => chunks.push(c))
    res.on('end', () => resolve({ path, status: res.statusCode, type: res.headers['content-type'], body: Buffer.concat(chunks).toString(), ms: Number(process.hrtime.bigint() - t0) / 1e6 }))
  }).on('error', reject)
})
;(async () => {
  const out = []
  for (const p of paths) out.push(await get(p))
  console.log(JSON.stringify(out))
  if (agent) agent.destroy()
})().catch((e) => { console.error(e.message); process.exit(1) })
`

export interface Got {
  path: string
  status: number
  type: string
  body: string
  /** Client-side time of the request, connect included unless keepAlive. */
  ms: number
}

/** GETs each path in turn from inside `netns`, from source address `from`. */
export async function fetchInNamespace(netns: string, from: string, paths: string[], o: { headers?: Record<string, string>; keepAlive?: boolean } = {}): Promise<Got[]> {
  const { stdout } = await run('ip', ['netns', 'exec', netns, process.execPath, '-e', CLIENT, from, JSON.stringify(o.headers ?? {}), o.keepAlive ? '1' : '0', ...paths], { maxBuffer: 64 << 20 })
  return JSON.parse(stdout) as Got[]
}

/** p50/p95/max of a list of milliseconds, as text. */
export function percentiles(ms: number[]): string {
  const s = [...ms].sort((x, y) => x - y)
  const p = (q: number) => s[Math.min(s.length - 1, Math.floor(q * s.length))]!.toFixed(2)
  return `p50 ${p(0.5)} ms, p95 ${p(0.95)} ms, max ${p(1)} ms over ${s.length}`
}

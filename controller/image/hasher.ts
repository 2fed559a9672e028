/**
 * Hashes a stream of chunks with several algorithms at once, each on its own
 * worker thread, so an upload's MD5 and SHA-512 (about half of its CPU time)
 * run beside the event loop instead of on it. Chunks are copied to the
 * workers; at most `maxInFlight` bytes wait per worker (backpressure).
 */
import { Worker } from 'node:worker_threads'

const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads')
const { createHash } = require('node:crypto')
const hash = createHash(workerData.algo)
parentPort.on('message', (m) => {
  if (m === 'digest') { parentPort.postMessage({ digest: hash.digest('hex') }); return }
  hash.update(m)
  parentPort.postMessage({ done: m.byteLength })
})
`

class HashWorker {
  private readonly worker: Worker
  private inFlight = 0
  private waiters: Array<() => void> = []
  private digestResolve: ((hex: string) => void) | undefined
  private failure: Error | undefined

  constructor(algo: string, private readonly maxInFlight: number) {
    this.worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { algo } })
    this.worker.on('message', (m: { done?: number; digest?: string }) => {
      if (m.done !== undefined) {
        this.inFlight -= m.done
        if (this.inFlight <= this.maxInFlight) for (const w of this.waiters.splice(0)) w()
      } else if (m.digest !== undefined) {
        this.digestResolve?.(m.digest)
      }
    })
    this.worker.on('error', (err) => {
      this.failure = err
      for (const w of this.waiters.splice(0)) w()
    })
  }

  async update(chunk: Uint8Array): Promise<void> {
    if (this.failure) throw this.failure
    this.inFlight += chunk.byteLength
    this.worker.postMessage(chunk)
    if (this.inFlight > this.maxInFlight) await new Promise<void>((resolve) => this.waiters.push(resolve))
    if (this.failure) throw this.failure
  }

  digest(): Promise<string> {
    return new Promise((resolve) => {
      this.digestResolve = resolve
      this.worker.postMessage('digest')
    })
  }

  async close(): Promise<void> {
    await this.worker.terminate()
  }
}

export class ParallelHasher {
  private readonly workers: Map<string, HashWorker>

  constructor(algos: string[], maxInFlight = 32 * 1024 * 1024) {
    this.workers = new Map(algos.map((a) => [a, new HashWorker(a, maxInFlight)]))
  }

  async update(chunk: Uint8Array): Promise<void> {
    await Promise.all([...this.workers.values()].map((w) => w.update(chunk)))
  }

  /** The hex digests, by algorithm; the hasher is closed afterwards. */
  async digest(): Promise<Record<string, string>> {
    const out: Record<string, string> = {}
    for (const [algo, w] of this.workers) out[algo] = await w.digest()
    await this.close()
    return out
  }

  async close(): Promise<void> {
    await Promise.all([...this.workers.values()].map((w) => w.close()))
  }
}

/**
 * For the compute REST tests: a small Nova client (token, microversion, JSON
 * body) and a checker that validates answers against Tempest's own response
 * schemas per microversion (tempest-compute-schemas.py, Debian's tempest).
 */
import { spawnSync } from 'node:child_process'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

export interface NovaAnswer {
  status: number
  headers: Record<string, string>
  body: any // eslint-disable-line @typescript-eslint/no-explicit-any -- JSON under test
}

export interface NovaCall {
  token?: string
  /** Sent as OpenStack-API-Version: compute X (and the legacy header), as openstacksdk does. */
  version?: string
  body?: unknown
  headers?: Record<string, string>
}

/** Debian's interpreter, where tempest, novaclient and openstacksdk live (not a pyenv one). */
export const PYTHON = '/usr/bin/python3'

export function novaClient(origin: string, defaultToken: string) {
  return async (method: string, p: string, o: NovaCall = {}): Promise<NovaAnswer> => {
    const headers: Record<string, string> = { 'x-auth-token': o.token ?? defaultToken, accept: 'application/json', ...o.headers }
    if (o.version) {
      headers['openstack-api-version'] = `compute ${o.version}`
      headers['x-openstack-nova-api-version'] = o.version
    }
    let body: string | undefined
    if (o.body !== undefined) {
      body = typeof o.body === 'string' ? o.body : JSON.stringify(o.body)
      headers['content-type'] ??= 'application/json'
    }
    const r = await fetch(`${origin}/compute${p}`, { method, headers, ...(body !== undefined ? { body } : {}) })
    const text = await r.text()
    return { status: r.status, headers: Object.fromEntries(r.headers), body: text ? JSON.parse(text) : undefined }
  }
}

interface Case {
  module: string
  schema: string
  version: string
  answer: NovaAnswer
  what: string
}

/** Collects answers, then validates them all in one Python process. */
export class TempestSchemas {
  private readonly cases: Case[] = []

  add(module: string, schema: string, version: string, answer: NovaAnswer, what = `${module}.${schema}@${version}`): NovaAnswer {
    this.cases.push({ module, schema, version, answer, what })
    return answer
  }

  /** Each case's failure (empty when all conform). */
  check(): { checked: number; failures: string[] } {
    const script = path.join(path.dirname(fileURLToPath(import.meta.url)), 'tempest-compute-schemas.py')
    const input = this.cases.map((c) => JSON.stringify({ module: c.module, schema: c.schema, version: c.version, status: c.answer.status, headers: c.answer.headers, body: c.answer.body ?? '' })).join('\n')
    const r = spawnSync(PYTHON, [script], { input, encoding: 'utf8', maxBuffer: 16 * 1024 * 1024 })
    if (r.status !== 0) throw new Error(`schema checker failed: ${r.stderr}`)
    const results = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { ok: boolean; error?: string })
    const failures = results.flatMap((res, i) => (res.ok ? [] : [`${this.cases[i]!.what}: ${res.error}`]))
    return { checked: results.length, failures }
  }
}

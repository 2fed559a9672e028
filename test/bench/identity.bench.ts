/**
 * npm run bench:identity — token validation throughput in-process, and
 * authenticated unary RPCs per second over loopback gRPC, on this machine.
 * Targets (issue 3): ≥ 100,000 validations/s in-process; ≥ 5,000 RPC/s.
 * The listener speaks TLS (the controller's default, verified against its CA);
 * BENCH_TLS=off measures the plaintext loopback listener instead.
 * Not a test: it prints figures for the README.
 */
import os from 'node:os'
import { execFile } from 'node:child_process'
import path from 'node:path'
import { startController } from '../helpers/controller.js'

const tls = process.env.BENCH_TLS !== 'off'
const s = await startController({ tls: { mode: tls ? 'on' : 'off' } })
const auth = s.controller.auth
const fmt = (n: number) => Math.round(n).toLocaleString('en-US')

// 1. In-process validation of one token, cached after its first signature check (the steady state of a busy API).
{
  const token = s.adminToken
  for (let i = 0; i < 10_000; i++) auth.authenticate(token)
  const n = 1_000_000
  const t0 = process.hrtime.bigint()
  for (let i = 0; i < n; i++) auth.authenticate(token)
  const secs = Number(process.hrtime.bigint() - t0) / 1e9
  console.log(`validate (cached, signature checked once): ${fmt(n / secs)} validations/s  (${(secs * 1e9 / n).toFixed(0)} ns each, expiry + revocation checked every time)`)
}

// 2. In-process validation of distinct tokens, each needing an Ed25519 signature check (cold cache).
{
  const n = 20_000
  const tokens: string[] = []
  const claims = auth.tokens.validate(s.adminToken)
  for (let i = 0; i < n; i++) tokens.push(auth.tokens.issue({ ...claims, auditId: `bench${i}`, issuedAt: Date.now() }))
  const t0 = process.hrtime.bigint()
  for (const tok of tokens) auth.authenticate(tok)
  const secs = Number(process.hrtime.bigint() - t0) / 1e9
  console.log(`validate (cold, Ed25519 verify each):       ${fmt(n / secs)} validations/s`)
}

// 3. With 10,000 revocation events recorded (Keystone's old code took ~2 s per validation at 10k).
{
  for (let i = 0; i < 10_000; i++) auth.revocations.add({ auditId: `revoked-${i}`, issuedBefore: Date.now() })
  const token = s.adminToken
  const n = 1_000_000
  const t0 = process.hrtime.bigint()
  for (let i = 0; i < n; i++) auth.authenticate(token)
  const secs = Number(process.hrtime.bigint() - t0) / 1e9
  console.log(`validate with 10,000 revocation events:     ${fmt(n / secs)} validations/s`)
}

// 4. Authenticated unary RPCs over loopback: GetDomain with x-auth-token (token validated, policy
// enforced with its target read, DB read), driven by a separate client process (C-core grpcio).
{
  const load = (seconds: number, concurrency: number) =>
    new Promise<number>((resolve, reject) => {
      execFile('/usr/bin/python3', [path.join(import.meta.dirname, 'rpc_load.py'), s.address, s.adminToken, String(seconds), String(concurrency), s.caFile ?? ''], (err, stdout) =>
        err ? reject(err) : resolve(Number(stdout.trim())))
    })
  await load(1, 32) // warm up both sides
  const rate = await load(5, 64)
  console.log(`authenticated unary RPCs over loopback gRPC: ${fmt(rate)} RPC/s  (GetDomain, 64 in flight, ${tls ? 'TLS' : 'plaintext'}; load from Debian's grpcio in its own process)`)
}

console.log(`machine: ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, Node ${process.version}`)
await s.close()

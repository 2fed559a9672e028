// proto/private-file.ts: the one way keys, seeds, tokens and dnsmasq's lists are written.
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import t from 'tap'
import { writePrivateFile } from '../../../proto/private-file.js'

const dir = mkdtempSync(path.join(tmpdir(), 'strato-private-file-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))

const modeOf = (f: string) => statSync(f).mode & 0o777

t.test('0600 whatever the umask, replacing what was there, no temporary file left', async (t) => {
  const file = path.join(dir, 'seed')
  writeFileSync(file, 'old', { mode: 0o644 })
  const umask = process.umask(0)
  try {
    writePrivateFile(file, 'new secret')
  } finally {
    process.umask(umask)
  }
  t.equal(readFileSync(file, 'utf8'), 'new secret')
  t.equal(modeOf(file), 0o600, 'a file once world-readable is private now (a new inode, not a chmod after the write)')
  writePrivateFile(file, new TextEncoder().encode('bytes too'))
  t.equal(readFileSync(file, 'utf8'), 'bytes too')
  t.same(readdirSync(dir), ['seed'])
})

t.test('a mode wider than the umask allows is set as asked', async (t) => {
  const file = path.join(dir, 'ca.pem')
  const umask = process.umask(0o077)
  try {
    writePrivateFile(file, 'cert', { mode: 0o644 })
  } finally {
    process.umask(umask)
  }
  t.equal(modeOf(file), 0o644)
})

t.test('dirMode makes missing parents with that mode and leaves an existing one alone', async (t) => {
  const file = path.join(dir, 'a', 'b', 'nats.creds')
  writePrivateFile(file, 'creds', { dirMode: 0o700 })
  t.equal(readFileSync(file, 'utf8'), 'creds')
  t.equal(modeOf(path.join(dir, 'a', 'b')), 0o700)
  const shared = path.join(dir, 'etc')
  mkdirSync(shared, { mode: 0o755 })
  writePrivateFile(path.join(shared, 'agent.creds'), 'creds', { dirMode: 0o700 })
  t.equal(modeOf(shared), 0o755, "the operator's directory keeps its mode")
  t.throws(() => writePrivateFile(path.join(dir, 'missing', 'x'), 'x'), { code: 'ENOENT' }, 'without dirMode, no directory is made')
})

t.test('a failed write leaves the old file and no temporary file', async (t) => {
  const target = path.join(dir, 'busy')
  mkdirSync(path.join(target, 'inside'), { recursive: true })
  t.throws(() => writePrivateFile(target, 'x'), /EISDIR|ENOTEMPTY|EEXIST/, 'rename over a non-empty directory fails')
  t.same(readdirSync(dir).filter((f) => f.endsWith('.tmp')), [])
  t.ok(statSync(target).isDirectory())
})

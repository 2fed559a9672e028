// The commands on PATH: after `npm run setup` (which ends with
// cli/stack/link-bins.sh), `strato` and `strato-img` resolve through PATH to
// this checkout's package.json "bin" targets (dist/cli/strato.js and the
// native front native/build/strato-img), as an installed package's bins do.
import { spawnSync } from 'node:child_process'
import { lstatSync, mkdtempSync, readFileSync, readlinkSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import t from 'tap'
import { repoRoot } from './cli.js'

const linkBins = path.join(repoRoot, 'cli/stack/link-bins.sh')
const version = (JSON.parse(readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as { version: string }).version

function sh(script: string, env: Record<string, string | undefined> = {}): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync('bash', ['-c', script], { encoding: 'utf8', env: { ...process.env, ...env } })
  return { code: r.status, stdout: r.stdout, stderr: r.stderr }
}

t.test('after setup, strato-img and strato on PATH are this checkout\'s bins', async (t) => {
  const linked = sh(`bash ${linkBins}`)
  t.equal(linked.code, 0, linked.stderr)
  for (const [name, rel] of [['strato-img', 'native/build/strato-img'], ['strato', 'dist/cli/strato.js']] as const) {
    const found = sh(`command -v ${name}`)
    t.equal(found.code, 0, `${name} is on PATH`)
    t.equal(realpathSync(found.stdout.trim()), realpathSync(path.join(repoRoot, rel)), `${name} resolves to this checkout`)
  }
  // Started by name from another directory, as a user would.
  const r = spawnSync('strato-img', ['--version'], { encoding: 'utf8', cwd: tmpdir() })
  t.equal(r.status, 0, r.stderr)
  t.equal(r.stdout, `strato-img version ${version}\n`)
  const help = spawnSync('strato', ['--help'], { encoding: 'utf8', cwd: tmpdir() })
  t.equal(help.status, 0, help.stderr)
  t.match(help.stdout, /^usage: strato /)
})

t.test('link-bins: idempotent, replaces a stale link, leaves foreign files, survives a missing directory', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'strato-bins-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  symlinkSync('/nonexistent/other-checkout/dist/cli/strato-img.js', path.join(dir, 'strato-img'))
  writeFileSync(path.join(dir, 'strato'), '#!/bin/sh\necho not ours\n', { mode: 0o755 })
  let r = sh(`bash ${linkBins}`, { STRATO_BIN_DIR: dir })
  t.equal(r.code, 0, r.stderr)
  t.equal(readlinkSync(path.join(dir, 'strato-img')), path.join(realpathSync(repoRoot), 'native/build/strato-img'), 'stale link replaced')
  t.ok(lstatSync(path.join(dir, 'strato')).isFile(), 'a regular file is left alone')
  t.match(r.stderr, /strato exists and is not a link; left alone/)
  t.match(r.stderr, /is not on PATH/)

  r = sh(`bash ${linkBins}`, { STRATO_BIN_DIR: dir })
  t.equal(r.code, 0)
  t.notMatch(r.stderr, /linked/, 'a second run changes nothing')

  r = sh(`bash ${linkBins}`, { STRATO_BIN_DIR: path.join(dir, 'missing') })
  t.equal(r.code, 0, 'setup goes on')
  t.match(r.stderr, /cannot link strato and strato-img into .*missing/)
})

/**
 * The checkout's build in dist/, what the bin entries and npm start run: tests that start
 * Strato's processes (daemons, `strato`, `strato-img`) run it, not the sources through tsx
 * (a daemon loads in ~0.9 CPU-s from dist/, ~2.6 through tsx; the CLI in ~0.45, ~1.4).
 */
import { spawnSync } from 'node:child_process'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')

let fresh = false

/**
 * The absolute path of `rel` (a source such as `agent/main.ts`, or a path under dist/) in the
 * build. The first call in a process brings dist/ up to date with cli/stack/build.sh (a find
 * when nothing changed since the last build; tsc, under a lock, when a source did), so a
 * targeted run after an edit never runs an old build.
 */
export function built(rel: string): string {
  if (!fresh) {
    const r = spawnSync('bash', [path.join(ROOT, 'cli/stack/build.sh')], { cwd: ROOT, encoding: 'utf8' })
    if (r.status !== 0) throw new Error(`cli/stack/build.sh failed (${r.status ?? r.signal}):\n${r.stdout}${r.stderr}`)
    fresh = true
  }
  return path.join(ROOT, 'dist', rel.replace(/^dist\//, '').replace(/\.ts$/, '.js'))
}

/**
 * A private PostgreSQL cluster (Debian's postgresql-15, `initdb` + `pg_ctl`,
 * never its service) in a directory of ours: what `npm run start:cluster`
 * keeps its database in (`<home>/postgres`), and what the tests start on a
 * free port (test/helpers/postgres.ts). Loopback TCP with password (SCRAM)
 * auth, its socket inside the directory. PostgreSQL refuses to run as root,
 * so under root the cluster runs as the `postgres` system user, which owns
 * the directory.
 */
import { spawnSync } from 'node:child_process'
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { FailedPrecondition } from '../../proto/errors.js'

/** Where Debian's postgresql-15 puts the server binaries (not on PATH). */
export const POSTGRES_BIN = '/usr/lib/postgresql/15/bin'

/** The user the server runs as: `postgres` when we are root, else ourselves (null). */
export function postgresServerUser(): { name: string; uid: number; gid: number } | null {
  if (process.getuid?.() !== 0) return null
  const line = readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.startsWith('postgres:'))
  if (!line) throw new FailedPrecondition('running as root, and PostgreSQL refuses root: there is no `postgres` system user (npm run setup installs postgresql, which creates it)')
  const f = line.split(':')
  return { name: 'postgres', uid: Number(f[2]), gid: Number(f[3]) }
}

/** The files of one cluster under `dir`. */
export function clusterPaths(dir: string) {
  return { dir, data: path.join(dir, 'data'), sockets: path.join(dir, 'sock'), logFile: path.join(dir, 'server.log') }
}

function run(dir: string, cmd: string, args: string[]): void {
  const runAs = postgresServerUser()
  const argv = runAs ? ['runuser', ['-u', runAs.name, '--', cmd, ...args]] as const : [cmd, args] as const
  const r = spawnSync(argv[0], argv[1], { encoding: 'utf8', cwd: dir, timeout: 120_000 })
  const logFile = clusterPaths(dir).logFile
  if (r.status !== 0) throw new FailedPrecondition(`${path.basename(cmd)} failed (${r.error?.message ?? `exit ${r.status}`}): ${r.stderr}${existsSync(logFile) ? readFileSync(logFile, 'utf8') : ''}`)
}

/**
 * Makes `dir` (0700, the server user's) and a new cluster in `dir/data` with
 * superuser `user` and `password`, C collation (text compares byte by byte,
 * as SQLite's BINARY does). Does nothing when `dir/data` already holds one.
 */
export function initCluster(dir: string, user: string, password: string, o: { noSync?: boolean } = {}): void {
  const initdb = path.join(POSTGRES_BIN, 'initdb')
  if (!existsSync(initdb) || !existsSync(path.join(POSTGRES_BIN, 'pg_ctl'))) throw new FailedPrecondition(`PostgreSQL 15 is not installed (no ${initdb}): run npm run setup, which installs Debian's postgresql`)
  const p = clusterPaths(dir)
  if (existsSync(path.join(p.data, 'PG_VERSION'))) return
  const runAs = postgresServerUser()
  mkdirSync(p.sockets, { recursive: true })
  const pwFile = path.join(dir, 'pwfile')
  writeFileSync(pwFile, password, { mode: 0o600 })
  if (runAs) for (const f of [dir, p.sockets, pwFile]) chownSync(f, runAs.uid, runAs.gid)
  chmodSync(dir, 0o700)
  try {
    run(dir, initdb, ['-D', p.data, ...(o.noSync ? ['--no-sync'] : []), '--encoding=UTF8', '--locale=C', `--username=${user}`, `--pwfile=${pwFile}`, '--auth-host=scram-sha-256', '--auth-local=peer'])
  } finally {
    rmSync(pwFile, { force: true })
  }
}

/** Starts the cluster in `dir` on 127.0.0.1:`port` with extra `-c` settings, and waits until it accepts connections. */
export function startCluster(dir: string, port: number, settings: string[] = []): void {
  const p = clusterPaths(dir)
  const opts = [`-p ${port}`, `-k ${p.sockets}`, '-c listen_addresses=127.0.0.1', ...settings.map((s) => `-c ${s}`)].join(' ')
  run(dir, path.join(POSTGRES_BIN, 'pg_ctl'), ['-D', p.data, '-l', p.logFile, '-o', opts, '-w', '-t', '60', 'start'])
}

/** Stops the cluster in `dir`: `fast` (the default) ends sessions and checkpoints; `immediate` does not (tests). */
export function stopCluster(dir: string, mode: 'fast' | 'immediate' = 'fast'): void {
  const pgCtl = path.join(POSTGRES_BIN, 'pg_ctl')
  const runAs = postgresServerUser()
  const args = ['-D', clusterPaths(dir).data, '-m', mode, '-w', 'stop']
  spawnSync(runAs ? 'runuser' : pgCtl, runAs ? ['-u', runAs.name, '--', pgCtl, ...args] : args, { stdio: 'ignore', timeout: 60_000 })
}

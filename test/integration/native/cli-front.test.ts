/**
 * The strato-img command's native front (native/build/strato-img): convert
 * runs on the linked engine without Node; every other command, every
 * convert whose arguments are not plainly valid, and `-c` with zlib (faster
 * on Node's own zlib) reach the Node CLI with their arguments unchanged. Both paths give the same output, files and exit
 * codes.
 */
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { chmodSync, existsSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { makeRawImage, qemuImg, qemuImgOk, tempDir } from '../../fixtures/images.js'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..')
const front = path.join(root, 'native', 'build', 'strato-img')
const nodeCli = path.join(root, 'dist', 'cli', 'strato-img.js')
const tmp = tempDir('strato-front-')
t.teardown(tmp.cleanup)

interface Run { code: number; stdout: string; stderr: string }
function exec(cmd: string, args: string[], env: Record<string, string> = {}): Run {
  const r = spawnSync(cmd, args, { encoding: 'utf8', cwd: tmp.dir, env: { ...process.env, ...env }, maxBuffer: 16 << 20 })
  if (r.error) throw r.error
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr }
}

// A stand-in for the Node CLI that says it was reached, and with what.
const marker = tmp.path('node-cli.js')
writeFileSync(marker, 'process.stdout.write("NODE-CLI " + JSON.stringify(process.argv.slice(2)) + "\\n")\n')
chmodSync(marker, 0o644)
/** The front with the Node CLI replaced by the marker: shows which path ran. */
const viaFront = (...args: string[]) => exec(front, args, { STRATO_IMG_JS: marker })
const viaNode = (...args: string[]) => exec('node', [nodeCli, ...args])
const viaFrontReal = (...args: string[]) => exec(front, args)

const MiB = 1024 * 1024
const src = tmp.path('src.raw')
makeRawImage(src, 8 * MiB, { seed: 5, count: 11 })
const base = tmp.path('base.qcow2')
qemuImgOk('convert', '-O', 'qcow2', src, base)

t.before(() => {
  if (!existsSync(front)) throw new Error(`${front} is not built: run npm run setup`)
})

t.test('plainly valid converts run natively and give what the Node CLI gives', async (t) => {
  const cases: Array<{ name: string; args: (out: string) => string[]; fmt: 'raw' | 'qcow2'; from?: string }> = [
    { name: 'raw -> qcow2', args: (o) => ['-O', 'qcow2', src, o], fmt: 'qcow2' },
    { name: 'explicit formats, -o cluster and compat', args: (o) => ['-f', 'raw', '-O', 'qcow2', '-o', 'cluster_size=4096,compat=0.10', src, o], fmt: 'qcow2' },
    { name: '-c zstd, joined flags', args: (o) => ['-cO', 'qcow2', '-o', 'compression_type=zstd', src, o], fmt: 'qcow2' },
    { name: '-c zstd, -m 1 -W -U', args: (o) => ['-c', '-m', '1', '-W', '-U', '-O', 'qcow2', '-o', 'compression_type=zstd', src, o], fmt: 'qcow2' },
    { name: 'qcow2 -> raw, -S 0', args: (o) => ['-S', '0', '-O', 'raw', base, o], fmt: 'raw' },
    { name: 'default target format is raw, --output ignored', args: (o) => ['--output=json', base, o], fmt: 'raw' },
    { name: 'with a backing file (-B -F)', args: (o) => ['-O', 'qcow2', '-B', base, '-F', 'qcow2', src, o], fmt: 'qcow2' },
    { name: 'backing format from -o', args: (o) => ['-O', 'qcow2', '-o', 'backing_fmt=qcow2', '-B', base, src, o], fmt: 'qcow2' },
    { name: '-q and -- before the names', args: (o) => ['-q', '-O', 'qcow2', '--', src, o], fmt: 'qcow2' },
  ]
  for (const [i, c] of cases.entries()) {
    const mine = tmp.path(`front-${i}.${c.fmt}`)
    const theirs = tmp.path(`node-${i}.${c.fmt}`)
    const r = viaFront('convert', ...c.args(mine))
    t.equal(r.code, 0, `${c.name}: exit 0 (${r.stderr})`)
    t.notMatch(r.stdout, /NODE-CLI/, `${c.name}: ran without Node`)
    t.equal(r.stdout + r.stderr, '', `${c.name}: silent`)
    const n = viaNode('convert', ...c.args(theirs))
    t.equal(n.code, 0, n.stderr)
    t.equal(qemuImg('compare', mine, theirs).code, 0, `${c.name}: same content as the Node CLI's`)
    t.equal(qemuImg('compare', src, mine).code, 0, `${c.name}: same content as the source`)
    const [a, b] = [mine, theirs].map((f) => JSON.parse(qemuImgOk('info', '--output=json', f)) as Record<string, unknown>)
    for (const k of ['format', 'virtual-size', 'cluster-size', 'backing-filename', 'backing-filename-format', 'format-specific']) {
      t.same(a![k], b![k], `${c.name}: ${k}`)
    }
    if (c.fmt === 'qcow2') t.equal(qemuImg('check', mine).code, 0, `${c.name}: qemu-img check`)
  }
})

t.test('progress (-p) as the Node CLI prints it', async (t) => {
  const r = viaFront('convert', '-p', '-O', 'qcow2', src, tmp.path('p.qcow2'))
  t.equal(r.code, 0, r.stderr)
  t.notMatch(r.stdout, /NODE-CLI/)
  t.match(r.stdout, /^ {4}\(\d+\.\d\d\/100%\)\r/)
  t.ok(r.stdout.endsWith('    (100.00/100%)\n'), 'ends as the Node CLI does')
  const q = viaFront('convert', '-p', '-q', '-O', 'qcow2', src, tmp.path('pq.qcow2'))
  t.equal(q.stdout, '', '-q silences -p')
})

t.test('engine errors: the Node CLI\'s message and exit code, from the front', async (t) => {
  const cases = [
    ['convert', tmp.path('missing.raw'), tmp.path('x.raw')],
    ['convert', '-f', 'qcow2', src, tmp.path('x.raw')],
    ['convert', '-O', 'qcow2', src, tmp.path('no-such-dir/x.qcow2')],
  ]
  for (const args of cases) {
    const r = viaFrontReal(...args)
    const n = viaNode(...args)
    t.equal(r.code, 1, args.join(' '))
    t.same({ code: r.code, stdout: r.stdout, stderr: r.stderr }, n, `${args.join(' ')}: same as the Node CLI`)
    t.match(r.stderr, /^strato-img: \S.*\n$/, 'one line')
  }
  t.notOk(existsSync(tmp.path('x.raw')), 'nothing left by a failed convert')
})

t.test('anything not plainly valid reaches the Node CLI unchanged', async (t) => {
  const vmdk = tmp.path('looks.vmdk')
  const hdr = Buffer.alloc(4096)
  hdr.write('KDMV', 0, 'latin1')
  writeFileSync(vmdk, hdr)
  const cases: string[][] = [
    [], ['--version'], ['info', '--output=json', base], ['check', base], ['map', base], ['create', '-f', 'qcow2', 'x', '1M'],
    ['convert'], ['convert', src], ['convert', src, 'a', 'b'], ['convert', '-n', src, 'x'], ['convert', '--bogus', src, 'x'],
    ['convert', '-f', 'vmdk', src, 'x'], ['convert', '-O', 'vdi', src, 'x'], ['convert', '-o', 'foo=bar', src, 'x'],
    ['convert', '-o', 'compression_type=lz4', src, 'x'], ['convert', '-o', 'refcount_bits=3', src, 'x'],
    ['convert', '-o', 'preallocation=full', src, 'x'], ['convert', '-B', base, src, 'x'], ['convert', '-S', '4x', src, 'x'],
    ['convert', '-m', 'two', src, 'x'], ['convert', '-c', '-O', 'qcow2', src, 'x'], ['convert', '-c', '-o', 'compression_type=zlib', src, 'x'], ['convert', '-O'], ['convert', '-o', 'backing_file=b', src, 'x'], ['convert', vmdk, 'x'],
  ]
  for (const args of cases) {
    const r = viaFront(...args)
    t.equal(r.stdout, `NODE-CLI ${JSON.stringify(args)}\n`, `${JSON.stringify(args)}: handed on as given`)
    t.equal(r.code, 0)
  }
  t.notOk(existsSync(tmp.path('x')), 'the front wrote nothing for them')

  // And with the real Node CLI behind it, the user sees the Node CLI's answer.
  for (const args of [['convert', '-n', src, 'x'], ['convert', vmdk, 'x'], ['convert', '-o', 'foo=bar', src, 'x'], ['--version']]) {
    t.same(viaFrontReal(...args), viaNode(...args), `${JSON.stringify(args)}: as the Node CLI`)
  }
  const forced = exec(front, ['convert', '-O', 'qcow2', src, tmp.path('forced.qcow2')], { STRATO_IMG_JS: marker, STRATO_IMG_FRONT: 'node' })
  t.match(forced.stdout, /^NODE-CLI /, 'STRATO_IMG_FRONT=node sends convert to Node too')
})

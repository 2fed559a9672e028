/**
 * A malicious-image set, built here, is rejected by inspect (OSSA-2023-002,
 * OSSA-2024-001, OSSA-2024-002); benign images of every format are detected
 * with qemu-img's virtual size. Inspecting never opens another file: the
 * files the images point at are FIFOs (opening one for reading would block)
 * and strace shows a single open.
 */
import t from 'tap'
import { execFileSync, spawnSync } from 'node:child_process'
import { writeFileSync, readFileSync } from 'node:fs'
import { convertImage, imageInfo, inspectImage, readImage } from '../../../native/index.js'
import { peek, poke, qemuImgOk, tempDir, u32, u64 } from '../../fixtures/images.js'

const tmp = tempDir()
t.teardown(tmp.cleanup)
const secret = tmp.path('secret.fifo')
execFileSync('mkfifo', [secret])
const secretFile = tmp.path('secret.txt')
writeFileSync(secretFile, 'TOP-SECRET-HOST-DATA\n'.repeat(100))

function qcow2WithBacking(): string {
  const p = tmp.path('backing.qcow2')
  qemuImgOk('create', '-q', '-f', 'qcow2', '-u', '-b', secret, '-F', 'raw', p, '1M')
  return p
}
function qcow2WithDataFile(): string {
  const p = tmp.path('datafile.qcow2')
  const df = tmp.path('datafile.bin')
  qemuImgOk('create', '-q', '-f', 'qcow2', '-o', `data_file=${df},data_file_raw=on`, p, '1M')
  // point the data-file extension at the FIFO (same length name trick not needed: rewrite via qemu-img amend is refused, so poke)
  const buf = readFileSync(p)
  const at = buf.indexOf(Buffer.from(df))
  if (at < 0) throw new Error('data file name not found')
  const name = Buffer.alloc(df.length, 0)
  Buffer.from(secret).copy(name)
  poke(p, at, name.subarray(0, Math.min(df.length, secret.length)))
  return p
}
function qcow2UnknownFeature(): string {
  const p = tmp.path('unknown-feature.qcow2')
  qemuImgOk('create', '-q', '-f', 'qcow2', p, '1M')
  poke(p, 72, u64(1n << 20n))
  return p
}
function qcow2ExtendedL2(): string {
  const p = tmp.path('extl2.qcow2')
  qemuImgOk('create', '-q', '-f', 'qcow2', '-o', 'extended_l2=on', p, '1M')
  return p
}
function vmdkFlatDescriptor(): string {
  const p = tmp.path('flat.vmdk')
  writeFileSync(p, ['# Disk DescriptorFile', 'version=1', 'CID=fffffffe', 'parentCID=ffffffff',
    'createType="monolithicFlat"', '', `RW 2048 FLAT "${secret}" 0`, '', 'ddb.adapterType = "ide"', ''].join('\n'))
  return p
}
function vmdkSparseWithExternalExtent(): string {
  const p = tmp.path('sparse-evil.vmdk')
  qemuImgOk('create', '-q', '-f', 'vmdk', p, '1M')
  const buf = readFileSync(p)
  const at = buf.indexOf(Buffer.from('RW 2048 SPARSE "'))
  if (at < 0) throw new Error('extent line not found')
  const line = Buffer.from(`RW 2048 FLAT "${secret}" 0\n`)
  poke(p, at, line)
  return p
}
function isoWithQcow2(): string {
  const q = tmp.path('inner.qcow2')
  qemuImgOk('create', '-q', '-f', 'qcow2', q, '1M')
  const p = tmp.path('polyglot.iso')
  const img = Buffer.alloc(64 * 1024)
  peek(q, 0, 512).copy(img, 0)
  img[0x8000] = 1
  img.write('CD001', 0x8001, 'latin1')
  img.writeUInt32LE(32, 0x8000 + 80)
  img.writeUInt16LE(2048, 0x8000 + 128)
  writeFileSync(p, img)
  return p
}
function qcowV1(): string {
  const p = tmp.path('v1.qcow')
  const b = Buffer.alloc(4096)
  u32(0x514649fb).copy(b, 0)
  u32(1).copy(b, 4)
  u64(1n << 20n).copy(b, 24)
  writeFileSync(p, b)
  return p
}
function qed(): string {
  const p = tmp.path('img.qed')
  qemuImgOk('create', '-q', '-f', 'qed', p, '1M')
  return p
}
function vhdDifferencing(): string {
  const base = tmp.path('base.vhd')
  qemuImgOk('create', '-q', '-f', 'vpc', base, '1M')
  const p = tmp.path('diff.vhd')
  const b = readFileSync(base)
  // flip the disk type in the header copy and the footer to 4 (differencing)
  b.writeUInt32BE(4, 60)
  b.writeUInt32BE(4, b.length - 512 + 60)
  writeFileSync(p, b)
  return p
}

const malicious: Array<[string, () => string, RegExp]> = [
  ['qcow2 backing file (OSSA-2024-002)', qcow2WithBacking, /backing file/],
  ['qcow2 external data file (OSSA-2024-001)', qcow2WithDataFile, /external data file/],
  ['qcow2 unknown incompatible feature', qcow2UnknownFeature, /unknown incompatible/],
  ['qcow2 extended L2', qcow2ExtendedL2, /unknown incompatible/],
  ['VMDK flat descriptor naming a host file (OSSA-2023-002)', vmdkFlatDescriptor, /VMDK/],
  ['monolithicSparse VMDK with a FLAT extent naming a host file', vmdkSparseWithExternalExtent, /extent/],
  ['ISO with a qcow2 header in its system area', isoWithQcow2, /Multiple formats detected: qcow2, iso/],
  ['qcow v1', qcowV1, /qcow version 1/],
  ['QED', qed, /QED/],
  ['VHD differencing disk', vhdDifferencing, /differencing/],
]

function straceOpens(path: string): string[] {
  // Run inspect in a child under strace and list the files it opened after start-up.
  const script = `import { inspectImage } from '${process.cwd()}/native/index.ts'; process.stdout.write('BEGIN\\n'); await inspectImage(process.argv[2]); process.stdout.write('END\\n')`
  const js = tmp.path('probe.mts')
  writeFileSync(js, script)
  const out = tmp.path('strace.log')
  const r = spawnSync('strace', ['-f', '-qq', '-e', 'trace=open,openat,openat2', '-o', out, 'node', '--import', 'tsx', js, path], { encoding: 'utf8', timeout: 30000 })
  if (r.status !== 0) throw new Error(`strace run failed: ${r.stderr}`)
  return readFileSync(out, 'utf8').split('\n').filter((l) => l.includes(tmp.dir) && !l.includes('probe.mts') && !l.includes('ENOENT'))
}

for (const [name, build, why] of malicious) {
  t.test(name, async (t) => {
    const p = build()
    const r = await inspectImage(p)
    t.equal(r.safe, false, `unsafe: ${r.reasons}`)
    t.match(r.reasons, why)
  })
}

t.test('inspect never opens the files an image points at', async (t) => {
  const cases = [qcow2WithBacking(), qcow2WithDataFile(), vmdkFlatDescriptor(), vmdkSparseWithExternalExtent()]
  for (const p of cases) {
    const opened = straceOpens(p)
    t.same(opened.map((l) => /"([^"]+)"/.exec(l)?.[1]), [p], `only ${p} was opened`)
  }
})

t.test('reading malicious images does not reach the host file', async (t) => {
  // data file: refused unless explicitly allowed (the FIFO would block if opened)
  await t.rejects(imageInfo(qcow2WithDataFile()), { name: 'FailedPrecondition', message: /external data file/ })
  await t.rejects(convertImage(qcow2WithDataFile(), tmp.path('x.raw'), {}), { message: /external data file/ })
  // backing file: info does not open it; reading it as raw (as Nova does after inspection) copies the image bytes only
  const b = qcow2WithBacking()
  const info = (await imageInfo(b))[0]!
  t.equal(info.backingFile, secret)
  const out = tmp.path('as-raw.raw')
  await convertImage(b, out, { srcFormat: 'raw' })
  t.ok(readFileSync(out).equals(readFileSync(b)), 'raw read returns the file itself')
  // a backing file without a format is never probed
  const nofmt = tmp.path('nofmt.qcow2')
  qemuImgOk('create', '-q', '-f', 'qcow2', '-u', '-b', secretFile, '-F', 'raw', nofmt, '1M')
  const buf = readFileSync(nofmt)
  const at = buf.indexOf(Buffer.from([0xe2, 0x79, 0x2a, 0xca]))
  poke(nofmt, at, u32(0x12345678)) // turn the backing-format extension into an unknown one
  await t.rejects(readImage(nofmt, 0, 16), { message: /no backing format/ })
})

const benign: Array<[string, string, string[]]> = [
  ['raw', 'raw', []],
  ['qcow2', 'qcow2', []],
  ['vmdk', 'vmdk', []],
  ['vmdk-stream', 'vmdk', ['-o', 'subformat=streamOptimized']],
  ['vhd', 'vpc', []],
  ['vhd-fixed', 'vpc', ['-o', 'subformat=fixed']],
  ['vhdx', 'vhdx', []],
  ['vdi', 'vdi', []],
]
for (const [name, fmt, opts] of benign) {
  t.test(`benign ${name}`, async (t) => {
    const p = tmp.path(`benign-${name}`)
    qemuImgOk('create', '-q', '-f', fmt, ...opts, p, '3M')
    const r = await inspectImage(p)
    t.equal(r.safe, true, `safe (${r.reasons})`)
    const expected = name.startsWith('vhd') && !name.startsWith('vhdx') ? 'vhd' : name.split('-')[0]
    t.equal(r.format, expected)
    const q = JSON.parse(qemuImgOk('info', '-f', fmt, '--output=json', p)) as { 'virtual-size': number }
    t.equal(r.virtualSize, q['virtual-size'], 'virtual size agrees with qemu-img')
  })
}

t.test('benign iso', async (t) => {
  const p = tmp.path('plain.iso')
  const img = Buffer.alloc(64 * 1024)
  img[0x8000] = 1
  img.write('CD001', 0x8001, 'latin1')
  img.writeUInt32LE(32, 0x8000 + 80)
  img.writeUInt16LE(2048, 0x8000 + 128)
  writeFileSync(p, img)
  const r = await inspectImage(p)
  t.equal(r.format, 'iso')
  t.equal(r.safe, true)
  t.equal(r.virtualSize, 64 * 1024)
})

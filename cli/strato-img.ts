#!/usr/bin/env -S -u NODE_EXTRA_CA_CERTS node
/**
 * strato-img — disk image tool shaped like qemu-img, over Strato's native engine.
 *
 *   strato-img info [-f fmt] [--output=json] [--backing-chain] FILE
 *   strato-img check [-f fmt] [--output=json] [-r leaks|all] FILE
 *   strato-img create [-f fmt] [-b backing -F backing_fmt] [-o opts] FILE [SIZE]
 *   strato-img convert [-c] [-p] [-f fmt] [-O fmt] [-o opts] [-B backing] [-F backing_fmt] [-S size] [-m n] SRC DST
 *   strato-img compare [-f fmt] [-F fmt] [-s] [-p] FILE1 FILE2
 *   strato-img resize [-f fmt] [--shrink] FILE [+|-]SIZE
 *   strato-img map [-f fmt] [--output=json|human] FILE
 *   strato-img rebase -u [-f fmt] -b backing [-F backing_fmt] FILE
 *   strato-img commit [-f fmt] [-d] [-p] FILE
 *   strato-img inspect [--output=json] FILE     (safety verdict for untrusted images)
 *
 * Exit codes follow qemu-img: 0 ok, 1 error; check 2 corruptions, 3 leaks,
 * 63 no check for the format; compare 1 different, 2 error.
 *
 * The command on PATH is native/build/strato-img (native/cli/strato-img.c):
 * it runs plainly valid converts itself, on the engine, and execs this file
 * for everything else — so the messages for bad arguments are written here.
 *
 * Start-up is most of a short command's time, so this file imports only what
 * every command needs (the native wrapper; the addon loads on the first call).
 * The #! line drops NODE_EXTRA_CA_CERTS: Node 20 parses that bundle before
 * running any script (~50 ms measured here for 144 certificates), and
 * strato-img never opens a TLS connection.
 */
import { existsSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import {
  checkImage, commitImage, compareImages, convertImage, createImage, imageInfo, inspectImage, mapImage,
  rebaseUnsafe, resizeImage, type CheckResult, type ConvertOptions, type CreateOptions, type ImageFormat,
  type ImageInfo, nativeKind,
} from '../native/index.js'
import { InvalidArgument } from '../proto/errors.js'

class Exit extends Error {
  constructor(readonly code: number, message = '') {
    super(message)
  }
}

interface Parsed {
  flags: Map<string, string | true>
  args: string[]
  opts: string[]
}

/**
 * getopt-ish: short flags with values, long flags (--x or --x=v). `known`
 * lists the boolean flags the command accepts; anything else is refused
 * rather than silently ignored (e.g. `-n` would otherwise recreate a target).
 */
function parse(argv: string[], withValue: string[], known: string[] = [], longWithValue: string[] = ['output']): Parsed {
  const p = parseRaw(argv, withValue, longWithValue)
  for (const k of p.flags.keys()) {
    if (!withValue.includes(k) && !longWithValue.includes(k) && !known.includes(k) && k !== 'q') {
      throw new InvalidArgument(`unrecognized option '${k.length > 1 ? '--' : '-'}${k}'`)
    }
  }
  return p
}

function parseRaw(argv: string[], withValue: string[], longWithValue: string[]): Parsed {
  const flags = new Map<string, string | true>()
  const opts: string[] = []
  const args: string[] = []
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string
    if (a === '--') { args.push(...argv.slice(i + 1)); break }
    if (a.startsWith('--')) {
      const eq = a.indexOf('=')
      const name = eq >= 0 ? a.slice(2, eq) : a.slice(2)
      if (eq >= 0) flags.set(name, a.slice(eq + 1))
      else if (longWithValue.includes(name)) {
        const v = argv[++i]
        if (v === undefined) throw new InvalidArgument(`option --${name} requires an argument`)
        flags.set(name, v)
      } else flags.set(name, true)
      continue
    }
    if (a.startsWith('-') && a.length > 1) {
      for (let j = 1; j < a.length; j++) {
        const ch = a[j] as string
        if (withValue.includes(ch)) {
          const v = j + 1 < a.length ? a.slice(j + 1) : argv[++i]
          if (v === undefined) throw new InvalidArgument(`option -${ch} requires an argument`)
          if (ch === 'o') opts.push(v)
          else flags.set(ch, v)
          break
        }
        flags.set(ch, true)
      }
      continue
    }
    args.push(a)
  }
  return { flags, args, opts }
}

function str(p: Parsed, k: string): string | undefined {
  const v = p.flags.get(k)
  return typeof v === 'string' ? v : undefined
}

function fmtArg(v: string | undefined, what: string): ImageFormat | undefined {
  if (v === undefined) return undefined
  if (v === 'raw' || v === 'qcow2') return v
  throw new InvalidArgument(`Unknown ${what} format '${v}' (supported: raw, qcow2)`)
}

/** qemu size syntax: plain bytes or a k/M/G/T/P/E suffix (powers of 1024). */
export function parseSize(s: string): number {
  const m = /^(\d+(?:\.\d+)?)([bkKMGTPE]?)$/.exec(s.trim())
  if (!m) throw new InvalidArgument(`Invalid size '${s}'`)
  const mult: Record<string, number> = { '': 1, b: 1, k: 1024, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4, P: 1024 ** 5, E: 1024 ** 6 }
  const n = Number(m[1]) * (mult[m[2] ?? ''] ?? 1)
  if (!Number.isSafeInteger(Math.round(n))) throw new InvalidArgument(`Invalid size '${s}'`)
  return Math.round(n)
}

/** qemu's size_to_str: three significant digits with binary units. */
export function humanSize(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB']
  let i = 0
  let v = n
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++ }
  return `${Number(v.toPrecision(3))} ${units[i]}`
}

function createOpts(opts: string[], into: CreateOptions): void {
  for (const group of opts) {
    for (const kv of group.split(',')) {
      if (!kv) continue
      const eq = kv.indexOf('=')
      const k = eq >= 0 ? kv.slice(0, eq) : kv
      const v = eq >= 0 ? kv.slice(eq + 1) : ''
      switch (k) {
        case 'cluster_size': into.clusterSize = parseSize(v); break
        case 'compression_type':
          if (v !== 'zlib' && v !== 'zstd') throw new InvalidArgument(`Invalid compression_type '${v}'`)
          into.compressionType = v
          break
        case 'compat':
          if (v === '0.10' || v === 'v2') into.version = 2
          else if (v === '1.1' || v === 'v3') into.version = 3
          else throw new InvalidArgument(`Invalid compat '${v}'`)
          break
        case 'refcount_bits': into.refcountBits = Number(v); break
        case 'backing_file': into.backingFile = v; break
        case 'backing_fmt': into.backingFormat = fmtArg(v, 'backing')!; break
        case 'size': into.size = parseSize(v); break
        case 'preallocation': if (v !== 'off') throw new InvalidArgument(`preallocation=${v} is not supported`); break
        case 'lazy_refcounts': if (v === 'on') throw new InvalidArgument('lazy_refcounts=on is not supported'); break
        default: throw new InvalidArgument(`Invalid option '${k}'`)
      }
    }
  }
}

function progressPrinter(enabled: boolean): ((done: number, total: number) => void) | undefined {
  if (!enabled) return undefined
  return (done, total) => {
    const pct = total > 0 ? (100 * done) / total : 100
    process.stdout.write(`    (${pct.toFixed(2)}/100%)\r`)
  }
}

function infoJson(path: string, i: ImageInfo): Record<string, unknown> {
  const o: Record<string, unknown> = {}
  if (i.backingFormat) o['backing-filename-format'] = i.backingFormat
  o['virtual-size'] = i.virtualSize
  o['filename'] = path
  if (i.clusterSize) o['cluster-size'] = i.clusterSize
  o['format'] = i.format
  o['actual-size'] = i.actualSize
  if (i.format === 'qcow2') {
    const data: Record<string, unknown> = {
      compat: i.version === 2 ? '0.10' : '1.1',
      'compression-type': i.compressionType,
      'lazy-refcounts': i.lazyRefcounts,
      'refcount-bits': i.refcountBits,
      corrupt: i.corrupt,
      'extended-l2': i.extendedL2,
    }
    if (i.version === 2) {
      delete data['lazy-refcounts']; delete data['corrupt']; delete data['extended-l2']
    }
    if (i.dataFile) data['data-file'] = i.dataFile
    o['format-specific'] = { type: 'qcow2', data }
  }
  if (i.backingFile) {
    o['full-backing-filename'] = i.backingFile
    o['backing-filename'] = i.backingFile
  }
  o['dirty-flag'] = i.dirty ?? false
  return o
}

function infoText(path: string, i: ImageInfo): string {
  const l = [`image: ${path}`, `file format: ${i.format}`,
    `virtual size: ${humanSize(i.virtualSize)} (${i.virtualSize} bytes)`, `disk size: ${humanSize(i.actualSize)}`]
  if (i.clusterSize) l.push(`cluster_size: ${i.clusterSize}`)
  if (i.backingFile) l.push(`backing file: ${i.backingFile}`)
  if (i.backingFormat) l.push(`backing file format: ${i.backingFormat}`)
  if (i.format === 'qcow2') {
    l.push('Format specific information:', `    compat: ${i.version === 2 ? '0.10' : '1.1'}`,
      `    compression type: ${i.compressionType}`)
    if (i.version !== 2) l.push(`    lazy refcounts: ${i.lazyRefcounts}`)
    l.push(`    refcount bits: ${i.refcountBits}`)
    if (i.version !== 2) l.push(`    corrupt: ${i.corrupt}`, `    extended l2: ${i.extendedL2}`)
    if (i.dataFile) l.push(`    data file: ${i.dataFile}`)
  }
  return l.join('\n')
}

function need(args: string[], n: number, usage: string): void {
  if (args.length < n) throw new InvalidArgument(`Expecting ${usage}`)
}

/**
 * Without -f, qemu-img probes; Strato probes qcow2 vs raw only, so a file whose
 * content says it is another format (vmdk, vhd, ...) is refused rather than
 * silently treated as raw.
 */
async function probeSupported(file: string, fmt: ImageFormat | undefined): Promise<void> {
  if (fmt) return
  const r = await inspectImage(file)
  if (r.format !== 'raw' && r.format !== 'qcow2') {
    throw new InvalidArgument(`'${file}' looks like a ${r.format} image, which strato-img does not read (use -f raw to treat it as raw)`)
  }
}

async function cmdInfo(argv: string[]): Promise<number> {
  const p = parse(argv, ['f'], ['backing-chain', 'U'])
  need(p.args, 1, 'one image file name')
  const file = p.args[0] as string
  await probeSupported(file, fmtArg(str(p, 'f'), 'image'))
  const chain = await imageInfo(file, fmtArg(str(p, 'f'), 'image'), { backingChain: p.flags.has('backing-chain') })
  const json = str(p, 'output') === 'json'
  const shown = p.flags.has('backing-chain') ? chain : chain.slice(0, 1)
  const names = [file]
  for (const i of shown) if (i.backingFile) names.push(i.backingFile)
  if (json) {
    const objs = shown.map((i, k) => infoJson(names[k] ?? file, i))
    console.log(JSON.stringify(p.flags.has('backing-chain') ? objs : objs[0], null, 4))
  } else {
    console.log(shown.map((i, k) => infoText(names[k] ?? file, i)).join('\n\n'))
  }
  return 0
}

function checkText(r: CheckResult): string {
  const out: string[] = []
  if (r.repaired) {
    out.push('The following inconsistencies were found and repaired:\n',
      `    ${r.leaksFixed} leaked clusters`, `    ${r.corruptionsFixed} corruptions\n`, 'Double checking the fixed image now...')
  }
  if (r.corruptions === 0 && r.leaks === 0 && r.checkErrors === 0) out.push('No errors were found on the image.')
  else {
    if (r.corruptions) out.push(`\n${r.corruptions} errors were found on the image.\nData may be corrupted, or further writes to the image may corrupt it.`)
    if (r.leaks) out.push(`\n${r.leaks} leaked clusters were found on the image.\nThis means waste of disk space, but no harm to data.`)
    if (r.checkErrors) out.push(`\n${r.checkErrors} internal errors have occurred during the check.`)
  }
  if (r.totalClusters) {
    // qemu-img: fragmented and compressed are percentages of the allocated clusters
    const pct = (n: number, of: number) => (of ? (100 * n) / of : NaN).toFixed(2).replace('NaN', '-nan')
    out.push(`${r.allocatedClusters}/${r.totalClusters} = ${pct(r.allocatedClusters, r.totalClusters)}% allocated, ` +
      `${pct(r.fragmentedClusters, r.allocatedClusters)}% fragmented, ${pct(r.compressedClusters, r.allocatedClusters)}% compressed clusters`)
  }
  if (r.imageEndOffset) out.push(`Image end offset: ${r.imageEndOffset}`)
  return out.join('\n')
}

async function cmdCheck(argv: string[]): Promise<number> {
  const p = parse(argv, ['f', 'r'], ['U'])
  need(p.args, 1, 'one image file name')
  const file = p.args[0] as string
  const fmt = fmtArg(str(p, 'f'), 'image')
  const rep = str(p, 'r') ?? ''
  if (rep !== '' && rep !== 'leaks' && rep !== 'all') throw new InvalidArgument(`Unknown option for -r: '${rep}' (leaks or all)`)
  if (fmt === 'raw') { process.stderr.write(`strato-img: This image format does not support checks\n`); return 63 }
  let r: CheckResult
  try {
    r = await checkImage(file, rep as '' | 'leaks' | 'all')
  } catch (err) {
    if (nativeKind(err) === 'unsupported' && /does not support checks/.test((err as Error).message)) {
      process.stderr.write(`strato-img: This image format does not support checks\n`)
      return 63
    }
    throw err
  }
  if (r.log) process.stderr.write(r.log)
  if (str(p, 'output') === 'json') {
    const o: Record<string, unknown> = {}
    if (r.imageEndOffset) o['image-end-offset'] = r.imageEndOffset
    o['total-clusters'] = r.totalClusters
    o['check-errors'] = r.checkErrors
    if (r.corruptions) o['corruptions'] = r.corruptions
    if (r.leaks) o['leaks'] = r.leaks
    if (r.corruptionsFixed) o['corruptions-fixed'] = r.corruptionsFixed
    if (r.leaksFixed) o['leaks-fixed'] = r.leaksFixed
    o['allocated-clusters'] = r.allocatedClusters
    o['filename'] = file
    o['format'] = 'qcow2'
    if (r.fragmentedClusters) o['fragmented-clusters'] = r.fragmentedClusters
    if (r.compressedClusters) o['compressed-clusters'] = r.compressedClusters
    console.log(JSON.stringify(o, null, 4))
  } else {
    console.log(checkText(r))
  }
  if (r.checkErrors) return 1
  if (r.corruptions) return 2
  if (r.leaks) return 3
  return 0
}

async function cmdCreate(argv: string[]): Promise<number> {
  const p = parse(argv, ['f', 'b', 'F', 'o'], ['u'])
  need(p.args, 1, 'image file name')
  const fmt = fmtArg(str(p, 'f'), 'image') ?? 'raw'
  const o: CreateOptions = {}
  createOpts(p.opts, o)
  if (str(p, 'b') !== undefined) o.backingFile = str(p, 'b')
  if (str(p, 'F') !== undefined) o.backingFormat = fmtArg(str(p, 'F'), 'backing')
  if (p.args[1] !== undefined) o.size = parseSize(p.args[1])
  if (o.size === undefined && !o.backingFile) throw new InvalidArgument('Image creation needs a size parameter')
  if (o.backingFile && !o.backingFormat) {
    throw new InvalidArgument('Backing file specified without backing format (use -F)')
  }
  await createImage(p.args[0] as string, fmt, o)
  return 0
}

async function cmdConvert(argv: string[]): Promise<number> {
  const p = parse(argv, ['f', 'O', 'o', 'B', 'F', 'S', 'm'], ['c', 'p', 'W', 'U'])
  need(p.args, 2, 'source and target file names')
  const o: ConvertOptions = {}
  createOpts(p.opts, o)
  o.srcFormat = fmtArg(str(p, 'f'), 'source')
  o.dstFormat = fmtArg(str(p, 'O'), 'output') ?? 'raw'
  o.compress = p.flags.has('c')
  const B = str(p, 'B')
  if (B !== undefined) {
    o.backingFile = B
    o.backingFormat = fmtArg(str(p, 'F'), 'backing') ?? o.backingFormat
    if (!o.backingFormat) throw new InvalidArgument('Backing file specified without backing format (use -F)')
  }
  const S = str(p, 'S')
  if (S !== undefined) o.minSparse = parseSize(S)
  const m = str(p, 'm')
  if (m !== undefined) o.threads = Number(m)
  const dst = p.args[p.args.length - 1] as string
  if (p.args.length > 2) throw new InvalidArgument('Only one source image is supported')
  await probeSupported(p.args[0] as string, o.srcFormat)
  const progress = p.flags.has('p') && !p.flags.has('q')
  await convertImage(p.args[0] as string, dst, o, progressPrinter(progress))
  if (progress) process.stdout.write('    (100.00/100%)\n')
  return 0
}

async function cmdCompare(argv: string[]): Promise<number> {
  const p = parse(argv, ['f', 'F'], ['s', 'p', 'U'])
  need(p.args, 2, 'two image file names')
  const fa = fmtArg(str(p, 'f'), 'image')
  const fb = fmtArg(str(p, 'F'), 'image') ?? fa
  const [a, b] = p.args as [string, string]
  if (!p.flags.has('s')) {
    const [ia, ib] = await Promise.all([imageInfo(a, fa), imageInfo(b, fb)])
    if (ia[0]?.virtualSize !== ib[0]?.virtualSize) console.log('Warning: Image size mismatch!')
  }
  const r = await compareImages(a, b, { formatA: fa, formatB: fb, strict: p.flags.has('s') }, progressPrinter(p.flags.has('p')))
  if (r.identical) { console.log('Images are identical.'); return 0 }
  if (p.flags.has('s')) {
    const [ia, ib] = await Promise.all([imageInfo(a, fa), imageInfo(b, fb)])
    if (ia[0]?.virtualSize !== ib[0]?.virtualSize) { console.log('Strict mode: Image size mismatch!'); return 1 }
  }
  console.log(`Content mismatch at offset ${r.offset}!`)
  return 1
}

async function cmdResize(argv: string[]): Promise<number> {
  // A leading '-' in the size would look like a flag: take the last argument as the size.
  const sizeArg = argv[argv.length - 1]
  if (sizeArg === undefined) throw new InvalidArgument('Expecting image file name and size')
  const p = parse(argv.slice(0, -1), ['f'], ['shrink'])
  need(p.args, 1, 'image file name and size')
  const file = p.args[0] as string
  const fmt = fmtArg(str(p, 'f'), 'image')
  let size: number
  if (sizeArg.startsWith('+') || sizeArg.startsWith('-')) {
    const cur = (await imageInfo(file, fmt))[0]!.virtualSize
    const d = parseSize(sizeArg.slice(1))
    size = sizeArg.startsWith('+') ? cur + d : cur - d
    if (size < 0) throw new InvalidArgument('New image size must be positive')
  } else size = parseSize(sizeArg)
  await resizeImage(file, size, { format: fmt, shrink: p.flags.has('shrink') })
  if (!p.flags.has('q')) console.log('Image resized.')
  return 0
}

async function cmdMap(argv: string[]): Promise<number> {
  const p = parse(argv, ['f'], ['U'])
  need(p.args, 1, 'one image file name')
  const file = p.args[0] as string
  const entries = await mapImage(file, fmtArg(str(p, 'f'), 'image'))
  if (str(p, 'output') === 'json') {
    const lines = entries.map((m) => `{ "start": ${m.start}, "length": ${m.length}, "depth": ${m.depth}, "present": ${m.present}, "zero": ${m.zero}, "data": ${m.data}` +
      (m.offset !== undefined ? `, "offset": ${m.offset}}` : '}'))
    console.log('[' + lines.join(',\n') + ']')
  } else {
    console.log('Offset          Length          Mapped to       File')
    for (const m of entries) {
      if (!m.data || m.offset === undefined) continue
      const hex = (n: number) => '0x' + n.toString(16)
      console.log(`${hex(m.start).padEnd(16)}${hex(m.length).padEnd(16)}${hex(m.offset).padEnd(16)}${file}`)
    }
  }
  return 0
}

async function cmdRebase(argv: string[]): Promise<number> {
  const p = parse(argv, ['f', 'b', 'F'], ['u', 'p'])
  need(p.args, 1, 'image file name')
  if (!p.flags.has('u')) throw new InvalidArgument('Only unsafe rebase (-u) is supported')
  const b = str(p, 'b') ?? ''
  const F = fmtArg(str(p, 'F'), 'backing')
  if (b && !F) throw new InvalidArgument('Backing file specified without backing format (use -F)')
  await rebaseUnsafe(p.args[0] as string, b, F)
  return 0
}

async function cmdCommit(argv: string[]): Promise<number> {
  const p = parse(argv, ['f'], ['d', 'p'])
  need(p.args, 1, 'image file name')
  await commitImage(p.args[0] as string, { format: fmtArg(str(p, 'f'), 'image'), keep: p.flags.has('d') },
    progressPrinter(p.flags.has('p')))
  if (p.flags.has('p')) process.stdout.write('    (100.00/100%)\n')
  if (!p.flags.has('q')) console.log('Image committed.')
  return 0
}

async function cmdInspect(argv: string[]): Promise<number> {
  const p = parse(argv, [], [])
  need(p.args, 1, 'one file name')
  const r = await inspectImage(p.args[0] as string)
  if (str(p, 'output') === 'json') {
    console.log(JSON.stringify({ filename: p.args[0], format: r.format, 'virtual-size': r.virtualSize, safe: r.safe,
      reasons: r.reasons ? r.reasons.split('; ') : [] }, null, 4))
  } else {
    console.log(`file: ${p.args[0]}\nformat: ${r.format}\nvirtual size: ${r.virtualSize}\nsafe: ${r.safe ? 'yes' : 'no'}` +
      (r.reasons ? `\nreasons: ${r.reasons}` : ''))
  }
  return r.safe ? 0 : 1
}

/** The package's version (package.json above this file, in the source tree or dist/). */
function version(): string {
  let dir = dirname(fileURLToPath(import.meta.url))
  for (;;) {
    const p = join(dir, 'package.json')
    if (existsSync(p)) return (JSON.parse(readFileSync(p, 'utf8')) as { version?: string }).version ?? 'unknown'
    const up = dirname(dir)
    if (up === dir) return 'unknown'
    dir = up
  }
}

const commands: Record<string, (argv: string[]) => Promise<number>> = {
  info: cmdInfo, check: cmdCheck, create: cmdCreate, convert: cmdConvert, compare: cmdCompare,
  resize: cmdResize, map: cmdMap, rebase: cmdRebase, commit: cmdCommit, inspect: cmdInspect,
}

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv
  if (cmd === '-V' || cmd === '--version') {
    console.log(`strato-img version ${version()}`)
    return 0
  }
  if (!cmd || cmd === '-h' || cmd === '--help' || cmd === 'help') {
    console.log(`usage: strato-img command [command options]\ncommands: ${Object.keys(commands).join(', ')}`)
    return cmd ? 0 : 1
  }
  const fn = commands[cmd]
  if (!fn) throw new InvalidArgument(`Command not found: ${cmd}`)
  return fn(rest)
}

const errorExit: Record<string, number> = { check: 1, compare: 2 }

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code },
  (err: unknown) => {
    const msg = err instanceof Error ? err.message : String(err)
    process.stderr.write(`strato-img: ${msg}\n`)
    process.exitCode = err instanceof Exit ? err.code : (errorExit[process.argv[2] ?? ''] ?? 1)
  },
)

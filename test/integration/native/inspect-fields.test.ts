/**
 * The inspector says "safe" only for what both the engine and qemu open.
 * Every header field of qemu-made qcow2 (v2, v3, with data, a snapshot, a
 * bitmaps extension), vmdk, vhd, vhdx and vdi images is set to 0, to its
 * maximum and past the end of the file; each case is either refused by the
 * inspector with a reason, or opened by the engine and by qemu-img.
 */
import t from 'tap'
import { writeFileSync } from 'node:fs'
import { checkImage, imageInfo, inspectImage } from '../../../native/index.js'
import { issue13Cases, otherFormatCases, qcow2Bases, qcow2Cases, type HeaderCase } from '../../fixtures/header-cases.js'
import { qemuImg, tempDir } from '../../fixtures/images.js'
import type { TestContext } from '../../helpers/tap.js'

const tmp = tempDir()
t.teardown(tmp.cleanup)

const QEMU_FMT: Record<string, string> = { qcow2: 'qcow2', raw: 'raw', vmdk: 'vmdk', vhd: 'vpc', vhdx: 'vhdx', vdi: 'vdi' }

/** Why a case the inspector called safe is not really openable, or '' when it is. */
async function notOpenable(p: string, format: string): Promise<string> {
  const fmt = QEMU_FMT[format]
  if (!fmt) return `inspector called an unexpected format safe: ${format}`
  if (format === 'qcow2') {
    // check exit 1: qemu could not open the image (or finish checking); 2 (corruptions) and 3 (leaks) mean it opened it.
    const q = qemuImg('check', '-f', 'qcow2', p)
    if (q.code !== 0 && q.code !== 2 && q.code !== 3) return `qemu-img check exit ${q.code}: ${q.stderr.trim().split('\n')[0]}`
    const qi = qemuImg('info', '-f', 'qcow2', p)
    if (qi.code !== 0) return `qemu-img info exit ${qi.code}: ${qi.stderr.trim().split('\n')[0]}`
    const r = await checkImage(p).catch((e: Error) => e)
    if (r instanceof Error) return `strato-img check: ${r.message}`
    if (r.checkErrors) return `strato-img check could not finish (${r.checkErrors} errors)`
    if ((q.code === 2) !== (r.corruptions > 0)) return `qemu-img check (exit ${q.code}) and strato-img check (${r.corruptions} corruptions) disagree`
    if (q.code === 2) corruptSafe++
    const i = await imageInfo(p, 'qcow2').catch((e: Error) => e)
    if (i instanceof Error) return `strato-img info: ${i.message}`
    return ''
  }
  const q = qemuImg('info', '-f', fmt, p)
  if (q.code !== 0) return `qemu-img info exit ${q.code}: ${q.stderr.trim().split('\n')[0]}`
  if (format === 'raw') {
    const i = await imageInfo(p, 'raw').catch((e: Error) => e)
    if (i instanceof Error) return `strato-img info: ${i.message}`
  }
  return ''
}

let n = 0
let refused = 0
let corruptSafe = 0 // opened by both, both find the same damage (e.g. refcount_order changed under the refcounts)
async function verdict(t: TestContext, c: HeaderCase): Promise<void> {
  const p = tmp.path(`case-${n++}`)
  writeFileSync(p, c.bytes)
  const r = await inspectImage(p)
  if (!r.safe) {
    refused++
    if (r.reasons.length === 0) t.fail(`${c.name}: refused without a reason`)
    return
  }
  const why = await notOpenable(p, r.format)
  if (why) t.fail(`${c.name}: inspector says safe (${r.format}) but ${why}`)
}

t.test('the two cases of issue 13 are refused with the reason', async (t) => {
  const [short, l1] = issue13Cases(tmp.path)
  for (const [c, why] of [[short!, /qcow2 header too short: 100 bytes, need 104/], [l1!, /L1 table too large: 2147483647 entries/]] as const) {
    const p = tmp.path(c.base + c.bytes.length)
    writeFileSync(p, c.bytes)
    const r = await inspectImage(p)
    t.equal(r.safe, false, c.name)
    t.match(r.reasons, why, r.reasons)
    await t.rejects(checkImage(p), { message: why }, 'the engine refuses it with the same reason')
    t.not(qemuImg('check', p).code, 0, 'qemu-img refuses it')
  }
})

t.test('every qcow2 header field: refused, or opened by the engine and qemu', async (t) => {
  let cases = 0
  for (const [name, b] of qcow2Bases(tmp.path)) {
    const p = tmp.path(`${name}.base`)
    writeFileSync(p, b)
    const r = await inspectImage(p)
    t.equal(await notOpenable(p, 'qcow2'), '', `base ${name} opens`)
    // Persistent bitmaps are refused as a policy: their directory is not validated (qemu refuses a bad one).
    if (name === 'v3-bitmap') t.match(r, { safe: false, reasons: /persistent dirty bitmaps/ }, `base ${name} is refused`)
    else t.equal(r.safe, true, `base ${name} is safe (${r.reasons})`)
    for (const c of qcow2Cases(name, b)) {
      await verdict(t, c)
      cases++
    }
  }
  t.comment(`${cases} qcow2 cases: ${refused} refused by the inspector, ${cases - refused} opened by the engine and qemu (${corruptSafe} with damage both checks report)`)
  t.ok(cases > 500, `${cases} qcow2 cases`)
})

t.test('vmdk, vhd, vhdx, vdi header fields: refused, or opened by qemu', async (t) => {
  const before = refused
  const cases = otherFormatCases(tmp.path)
  for (const c of cases) await verdict(t, c)
  t.comment(`${cases.length} vmdk/vhd/vhdx/vdi cases, ${refused - before} refused by the inspector`)
  t.ok(cases.length > 40, `${cases.length} cases`)
})

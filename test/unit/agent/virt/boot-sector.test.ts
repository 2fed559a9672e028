import t from 'tap'
import { execFile } from 'node:child_process'
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { bootDiskImage, bootMarker, bootSector } from '../../../fixtures/boot-sector.js'

const run = promisify(execFile)

t.test('a 512-byte sector with the boot signature and the line', async (t) => {
  const sector = bootSector(bootMarker('abc'))
  t.equal(sector.length, 512)
  t.equal(sector[510], 0x55)
  t.equal(sector[511], 0xaa)
  t.ok(sector.includes(Buffer.from('STRATO-BOOT-OK abc\r\n\0')), 'line, CRLF, NUL terminator')
  t.equal(sector[0], 0xfa, 'starts with cli')
  // mov si, <message>: the operand is the load address of the message.
  const movSi = sector.indexOf(0xbe)
  const target = sector.readUInt16LE(movSi + 1) - 0x7c00
  t.equal(sector.subarray(target, target + 14).toString(), 'STRATO-BOOT-OK', 'mov si points at the message')
})

t.test('the ACPI power-off code is there only when asked for', async (t) => {
  const readPmBase = Buffer.from([0x66, 0xb8, 0x40, 0x0b, 0x00, 0x80]) // mov eax, 0x80000b40
  t.ok(bootSector('x').includes(readPmBase), 'default: reads the PIIX4 PM base')
  t.notOk(bootSector('x', { acpiPowerOff: false }).includes(readPmBase), 'acpiPowerOff false: does not')
})

t.test('refuses lines it cannot print', async (t) => {
  t.throws(() => bootSector('tab\there'), /printable ASCII/)
  t.throws(() => bootSector('x'.repeat(351)), /longer than/)
  t.doesNotThrow(() => bootSector('x'.repeat(350)))
  t.doesNotThrow(() => bootSector('x'.repeat(350), { acpiPowerOff: false }))
})

t.test('wraps into raw and qcow2 images', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'strato-bs-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const raw = await bootDiskImage({ line: 'raw', path: join(dir, 'a.raw'), format: 'raw', sizeMiB: 2 })
  t.equal((await stat(raw)).size, 2 * 1024 * 1024, 'raw image has the virtual size')
  t.same((await readFile(raw)).subarray(0, 512), bootSector('raw'), 'first sector is the boot sector')
  const qcow2 = await bootDiskImage({ line: 'qcow', path: join(dir, 'a.qcow2') })
  const info = JSON.parse((await run('qemu-img', ['info', '--output=json', qcow2])).stdout) as { format: string; 'virtual-size': number }
  t.equal(info.format, 'qcow2')
  t.equal(info['virtual-size'], 1024 * 1024)
  await run('qemu-img', ['convert', '-O', 'raw', qcow2, join(dir, 'back.raw')])
  t.same((await readFile(join(dir, 'back.raw'))).subarray(0, 512), bootSector('qcow'), 'qcow2 holds the same sector')
})

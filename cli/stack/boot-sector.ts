/**
 * Guests built here rather than downloaded: the demo image `npm start`
 * registers, and the test guests of the end-to-end tests.
 *
 * `bootSector(line)` hand-assembles a 512-byte x86 real-mode boot sector that
 * programs COM1 (0x3F8, 115200 8N1), writes `line` plus CRLF to it, then
 * waits for the ACPI power button and powers off (or, optionally, halts
 * forever, ignoring the button). BIOS (SeaBIOS under QEMU) loads it at
 * 0000:7C00. Booted under KVM or TCG, the line appears on the guest's serial
 * console, which proves the guest really ran.
 *
 * `bootDiskImage()` wraps the sector in a raw disk of N MiB and converts it to
 * qcow2 with the native engine — the image the end-to-end tests upload.
 */
import { mkdtemp, rm, writeFile, open } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { convertImage } from '../../native/index.js'

const LOAD_ADDRESS = 0x7c00
const SECTOR_SIZE = 512
const SIGNATURE_OFFSET = 510
const COM1 = 0x3f8

/** Room for code before the message; the message must end before the 0x55AA signature. */
const MAX_LINE_BYTES = 350

/** A minimal 16-bit assembler: raw bytes, labels and short (rel8) jumps. */
class Assembler {
  private readonly bytes: number[] = []
  private readonly labels = new Map<string, number>()
  private readonly fixups: { at: number; label: string }[] = []

  get offset(): number {
    return this.bytes.length
  }
  emit(...bytes: number[]): this {
    this.bytes.push(...bytes)
    return this
  }
  label(name: string): this {
    this.labels.set(name, this.bytes.length)
    return this
  }
  /** `mov dx, imm16` */
  movDx(value: number): this {
    return this.emit(0xba, value & 0xff, value >> 8)
  }
  /** `mov al, imm8` */
  movAl(value: number): this {
    return this.emit(0xb0, value & 0xff)
  }
  /** `out dx, al` */
  outDxAl(): this {
    return this.emit(0xee)
  }
  /** Writes `value` to I/O port `port` (clobbers dx, al). */
  outPort(port: number, value: number): this {
    return this.movDx(port).movAl(value).outDxAl()
  }
  /** Short jump with an 8-bit displacement: `opcode rel8`, resolved in `link()`. */
  jumpShort(opcode: number, label: string): this {
    this.emit(opcode, 0)
    this.fixups.push({ at: this.bytes.length - 1, label })
    return this
  }
  /** `mov si, imm16` whose value is the load address of `label`. */
  movSiLabel(label: string): this {
    this.emit(0xbe, 0, 0)
    this.fixups.push({ at: this.bytes.length - 2, label: `abs16:${label}` })
    return this
  }
  link(): number[] {
    for (const { at, label } of this.fixups) {
      if (label.startsWith('abs16:')) {
        const target = this.labels.get(label.slice('abs16:'.length))
        if (target === undefined) throw new Error(`undefined label ${label}`)
        const address = LOAD_ADDRESS + target
        this.bytes[at] = address & 0xff
        this.bytes[at + 1] = address >> 8
        continue
      }
      const target = this.labels.get(label)
      if (target === undefined) throw new Error(`undefined label ${label}`)
      const displacement = target - (at + 1)
      if (displacement < -128 || displacement > 127) throw new Error(`jump to ${label} out of rel8 range`)
      this.bytes[at] = displacement & 0xff
    }
    return this.bytes
  }
}

export interface BootSectorOptions {
  /**
   * Power off on the ACPI power button (like a real OS would), so graceful
   * shutdowns and soft reboots complete, and eject PCI devices the host
   * hot-unplugs (a detached volume); false makes a guest that ignores
   * both, to exercise the hard fall-back. @default true
   */
  acpiPowerOff?: boolean
}

/** PIIX4 power-management function (00:01.3) PMBASE register, as a PCI config address (i440fx `pc` machine). */
const PIIX4_PMBASE_CONFIG_ADDRESS = 0x80000b40
const PM1_STS_PWRBTN = 0x0100
const PM1_CNT_SLP_EN = 0x2000
/** QEMU's PIIX4 ACPI PCI hotplug registers (acpi-pcihp, root bus): slots asked to go, and their eject. */
const PIIX4_PCI_DOWN = 0xae04
const PIIX4_PCI_EJECT = 0xae08

/**
 * Builds the 512-byte boot sector that prints `line` (ASCII, no control
 * characters, at most 350 bytes) followed by CRLF on COM1. Then, by default,
 * it enables the ACPI power-button event, sleeps (`sti; hlt`, woken by the
 * BIOS timer) until the button is pressed, and enters S5 (soft off); without
 * `acpiPowerOff` it halts for good.
 */
export function bootSector(line: string, options: BootSectorOptions = {}): Buffer {
  if (!/^[\x20-\x7e]*$/.test(line)) throw new Error('boot sector line must be printable ASCII')
  if (line.length > MAX_LINE_BYTES) throw new Error(`boot sector line longer than ${MAX_LINE_BYTES} bytes`)

  const asm = new Assembler()
  asm
    .emit(0xfa) // cli
    .emit(0xfc) // cld: lodsb walks forward
    .emit(0x31, 0xc0) // xor ax, ax
    .emit(0x8e, 0xd8) // mov ds, ax
    .emit(0x8e, 0xd0) // mov ss, ax
    .emit(0xbc, LOAD_ADDRESS & 0xff, LOAD_ADDRESS >> 8) // mov sp, 0x7c00
    // 16550 UART: no interrupts, DLAB on, divisor 1 (115200 baud), 8N1, FIFOs on, DTR/RTS/OUT2.
    .outPort(COM1 + 1, 0x00)
    .outPort(COM1 + 3, 0x80)
    .outPort(COM1 + 0, 0x01)
    .outPort(COM1 + 1, 0x00)
    .outPort(COM1 + 3, 0x03)
    .outPort(COM1 + 2, 0xc7)
    .outPort(COM1 + 4, 0x0b)
    .movSiLabel('message')
    .label('next')
    .emit(0xac) // lodsb
    .emit(0x84, 0xc0) // test al, al
    .jumpShort(0x74, 'printed') // jz printed
    .emit(0x88, 0xc3) // mov bl, al
    .movDx(COM1 + 5) // line status register
    .label('wait')
    .emit(0xec) // in al, dx
    .emit(0xa8, 0x20) // test al, 0x20 (transmit holding register empty)
    .jumpShort(0x74, 'wait') // jz wait
    .movDx(COM1)
    .emit(0x88, 0xd8) // mov al, bl
    .outDxAl()
    .jumpShort(0xeb, 'next') // jmp next
    .label('printed')
  if (options.acpiPowerOff ?? true) {
    const a = PIIX4_PMBASE_CONFIG_ADDRESS
    asm
      .movDx(0xcf8)
      .emit(0x66, 0xb8, a & 0xff, (a >> 8) & 0xff, (a >> 16) & 0xff, a >>> 24) // mov eax, config address
      .emit(0x66, 0xef) // out dx, eax
      .movDx(0xcfc)
      .emit(0x66, 0xed) // in eax, dx
      .emit(0x25, 0xc0, 0xff) // and ax, 0xffc0: the PM1 I/O base
      .emit(0x89, 0xc5) // mov bp, ax
      .emit(0x85, 0xed) // test bp, bp
      .jumpShort(0x74, 'halt') // no PM base: just halt
      .emit(0x89, 0xea) // mov dx, bp
      .emit(0x83, 0xc2, 0x02) // add dx, 2: PM1_EN
      .emit(0xb8, PM1_STS_PWRBTN & 0xff, PM1_STS_PWRBTN >> 8) // mov ax, PWRBTN_EN
      .emit(0xef) // out dx, ax
      .emit(0xfb) // sti: the BIOS timer wakes hlt ~18 times a second
      .label('sleep')
      .emit(0xf4) // hlt
      // ACPI PCI hot-unplug (PIIX4, as an OS's _EJ0 does): eject the slots the host asks to remove,
      // so a detached volume's disk leaves the guest.
      // Ejecting no slot (0) does nothing: no test needed.
      .movDx(PIIX4_PCI_DOWN)
      .emit(0x66, 0xed) // in eax, dx: slots to remove
      .emit(0xb2, PIIX4_PCI_EJECT & 0xff) // mov dl, low byte of the eject register
      .emit(0x66, 0xef) // out dx, eax: eject them
      .emit(0x89, 0xea) // mov dx, bp: PM1_STS
      .emit(0xed) // in ax, dx
      .emit(0xa9, PM1_STS_PWRBTN & 0xff, PM1_STS_PWRBTN >> 8) // test ax, PWRBTN_STS
      .jumpShort(0x74, 'sleep') // jz sleep
      .emit(0x83, 0xc2, 0x04) // add dx, 4: PM1_CNT
      .emit(0xb8, PM1_CNT_SLP_EN & 0xff, PM1_CNT_SLP_EN >> 8) // mov ax, SLP_EN | SLP_TYP 0 (S5)
      .emit(0xef) // out dx, ax
  }
  asm
    .label('halt')
    .emit(0xfa) // cli
    .emit(0xf4) // hlt
    .jumpShort(0xeb, 'halt') // jmp halt
    .label('message')
    .emit(...Buffer.from(`${line}\r\n`, 'ascii'), 0)

  const code = asm.link()
  if (code.length > SIGNATURE_OFFSET) throw new Error('boot sector code does not fit in 510 bytes')
  const sector = Buffer.alloc(SECTOR_SIZE)
  Buffer.from(code).copy(sector)
  sector[SIGNATURE_OFFSET] = 0x55
  sector[SIGNATURE_OFFSET + 1] = 0xaa
  return sector
}

/** A marker line that is unique enough to tell one test's guest from another's. */
export function bootMarker(token: string): string {
  return `STRATO-BOOT-OK ${token}`
}

export interface BootDiskOptions {
  /** The line the guest prints on its serial console. */
  line: string
  /** Where to write the image. */
  path: string
  /** Virtual size of the disk. @default 1 */
  sizeMiB?: number
  /** @default 'qcow2' */
  format?: 'qcow2' | 'raw'
  /** See {@link BootSectorOptions.acpiPowerOff}. @default true */
  acpiPowerOff?: boolean
}

/**
 * Writes a bootable disk image whose first sector is `bootSector(line)`:
 * a sparse raw image of `sizeMiB`, converted to qcow2 (native engine) unless
 * `format` is 'raw'. Returns the path written.
 */
export async function bootDiskImage(options: BootDiskOptions): Promise<string> {
  const sizeMiB = options.sizeMiB ?? 1
  const format = options.format ?? 'qcow2'
  if (!Number.isInteger(sizeMiB) || sizeMiB < 1) throw new Error('sizeMiB must be a positive integer')
  const sector = bootSector(options.line, { acpiPowerOff: options.acpiPowerOff ?? true })
  const writeRaw = async (path: string): Promise<void> => {
    await writeFile(path, sector)
    const handle = await open(path, 'r+')
    try {
      await handle.truncate(sizeMiB * 1024 * 1024)
    } finally {
      await handle.close()
    }
  }
  if (format === 'raw') {
    await writeRaw(options.path)
    return options.path
  }
  const scratch = await mkdtemp(join(tmpdir(), 'strato-boot-'))
  try {
    const raw = join(scratch, 'disk.raw')
    await writeRaw(raw)
    await convertImage(raw, options.path, { srcFormat: 'raw', dstFormat: 'qcow2' })
  } finally {
    await rm(scratch, { recursive: true, force: true })
  }
  return options.path
}

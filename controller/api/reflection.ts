/**
 * gRPC server reflection, v1 and v1alpha, served from the descriptor set that
 * `npm run gen` builds (proto/gen/descriptors.binpb). Each file is sent with
 * its transitive dependencies, so strict clients (grpcurl, grpcio) resolve
 * imported types such as google.protobuf.Timestamp.
 */
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import path from 'node:path'
import { fromBinary, toBinary } from '@bufbuild/protobuf'
import { FileDescriptorProtoSchema, FileDescriptorSetSchema, type DescriptorProto, type FileDescriptorProto } from '@bufbuild/protobuf/wkt'
import type { ServerDuplexStream, UntypedServiceImplementation } from '@grpc/grpc-js'
import { status } from '@grpc/grpc-js'

function descriptorSetPath(): string {
  // Works from the sources (controller/api) and from dist/controller/api alike.
  let dir = path.dirname(fileURLToPath(import.meta.url))
  for (let i = 0; i < 6; i++) {
    const candidate = path.join(dir, 'proto', 'gen', 'descriptors.binpb')
    try {
      readFileSync(path.join(dir, 'package.json'))
      return candidate
    } catch {
      dir = path.dirname(dir)
    }
  }
  throw new Error('cannot find proto/gen/descriptors.binpb above ' + fileURLToPath(import.meta.url))
}

export class ReflectionIndex {
  private readonly files = new Map<string, FileDescriptorProto>()
  private readonly encoded = new Map<string, Uint8Array>()
  private readonly symbols = new Map<string, string>()
  readonly services: string[] = []

  constructor(servedServices: ReadonlySet<string>, file = descriptorSetPath()) {
    const set = fromBinary(FileDescriptorSetSchema, readFileSync(file))
    for (const f of set.file) {
      this.files.set(f.name, f)
      this.encoded.set(f.name, toBinary(FileDescriptorProtoSchema, f))
      const pkg = f.package ? `${f.package}.` : ''
      const addMessage = (m: DescriptorProto, prefix: string) => {
        const full = `${prefix}${m.name}`
        this.symbols.set(full, f.name)
        for (const field of m.field) this.symbols.set(`${full}.${field.name}`, f.name)
        for (const n of m.nestedType) addMessage(n, `${full}.`)
        for (const e of m.enumType) this.symbols.set(`${full}.${e.name}`, f.name)
      }
      for (const m of f.messageType) addMessage(m, pkg)
      for (const e of f.enumType) this.symbols.set(`${pkg}${e.name}`, f.name)
      for (const s of f.service) {
        const full = `${pkg}${s.name}`
        this.symbols.set(full, f.name)
        for (const m of s.method) this.symbols.set(`${full}.${m.name}`, f.name)
        if (servedServices.has(full)) this.services.push(full)
      }
    }
    this.services.sort()
  }

  /** The file and every file it depends on, transitively; each once. */
  fileWithDeps(name: string): Uint8Array[] | undefined {
    if (!this.files.has(name)) return undefined
    const out: string[] = []
    const visit = (n: string) => {
      if (out.includes(n)) return
      out.push(n)
      for (const dep of this.files.get(n)?.dependency ?? []) visit(dep)
    }
    visit(name)
    return out.map((n) => this.encoded.get(n)!)
  }

  fileOfSymbol(symbol: string): string | undefined {
    return this.symbols.get(symbol.replace(/^\./, ''))
  }
}

interface ReflectionRequest {
  host: string
  fileByFilename?: string | undefined
  fileContainingSymbol?: string | undefined
  fileContainingExtension?: { containingType: string; extensionNumber: number } | undefined
  allExtensionNumbersOfType?: string | undefined
  listServices?: string | undefined
}

/** One implementation for both protocol versions: their messages have the same shape. */
export function reflectionImplementation(index: ReflectionIndex): UntypedServiceImplementation {
  return {
    serverReflectionInfo: (call: ServerDuplexStream<ReflectionRequest, unknown>) => {
      call.on('data', (req: ReflectionRequest) => {
        const base = { validHost: req.host, originalRequest: req }
        const notFound = (what: string) => call.write({ ...base, errorResponse: { errorCode: status.NOT_FOUND, errorMessage: `${what} not found` } })
        if (req.listServices !== undefined) {
          call.write({ ...base, listServicesResponse: { service: index.services.map((name) => ({ name })) } })
        } else if (req.fileByFilename !== undefined) {
          const files = index.fileWithDeps(req.fileByFilename)
          if (files) call.write({ ...base, fileDescriptorResponse: { fileDescriptorProto: files } })
          else notFound(`file ${req.fileByFilename}`)
        } else if (req.fileContainingSymbol !== undefined) {
          const file = index.fileOfSymbol(req.fileContainingSymbol)
          const files = file ? index.fileWithDeps(file) : undefined
          if (files) call.write({ ...base, fileDescriptorResponse: { fileDescriptorProto: files } })
          else notFound(`symbol ${req.fileContainingSymbol}`)
        } else if (req.allExtensionNumbersOfType !== undefined) {
          if (index.fileOfSymbol(req.allExtensionNumbersOfType)) call.write({ ...base, allExtensionNumbersResponse: { baseTypeName: req.allExtensionNumbersOfType, extensionNumber: [] } })
          else notFound(`type ${req.allExtensionNumbersOfType}`)
        } else if (req.fileContainingExtension !== undefined) {
          notFound(`extension ${req.fileContainingExtension.extensionNumber} of ${req.fileContainingExtension.containingType}`)
        } else {
          call.write({ ...base, errorResponse: { errorCode: status.INVALID_ARGUMENT, errorMessage: 'empty reflection request' } })
        }
      })
      call.on('end', () => call.end())
      call.on('error', () => call.end())
    },
  }
}

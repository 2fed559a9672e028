// The house rules on imports (DESIGN.md "Rules of the house"), checked on every .ts file:
// - the agent and the CLIs never import the controller: what both sides need is wire
//   vocabulary, and it lives in proto/;
// - domain code (controller/identity, image, compute, network, scheduler) knows no
//   transport: no @grpc/grpc-js, no NATS, no generated proto/gen types.
// Imports are read from the syntax tree (static imports, type-only ones too, re-exports,
// import(), require(), import types) and followed through relative imports, so a rule
// cannot be dodged through a module in between (e.g. a domain file importing a proto/
// helper that imports grpc-js). The first tests check the checker on synthetic sources.
import { readdirSync, readFileSync } from 'node:fs'
import path from 'node:path'
import t from 'tap'
import ts from 'typescript'

const root = path.resolve(import.meta.dirname, '../..')

/** A module specifier a file imports, or NON_LITERAL for an import() of a computed name. */
const NON_LITERAL = '<import() of a computed name>'

/** Every module a source imports, in source order. */
export function importsOf(fileName: string, source: string): string[] {
  const sf = ts.createSourceFile(fileName, source, ts.ScriptTarget.Latest, false, ts.ScriptKind.TS)
  const out: string[] = []
  const literal = (node: ts.Node | undefined) => {
    if (node && ts.isStringLiteralLike(node)) out.push(node.text)
    else out.push(NON_LITERAL)
  }
  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node) || (ts.isExportDeclaration(node) && node.moduleSpecifier)) {
      literal(node.moduleSpecifier)
    } else if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference)) {
      literal(node.moduleReference.expression)
    } else if (ts.isCallExpression(node) && (node.expression.kind === ts.SyntaxKind.ImportKeyword || (ts.isIdentifier(node.expression) && node.expression.text === 'require'))) {
      literal(node.arguments[0])
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument)) {
      literal(node.argument.literal)
    }
    ts.forEachChild(node, visit)
  }
  visit(sf)
  return out
}

/** What an import names: a repo path (`controller/log.ts`) for relative imports, else the specifier itself (a package). */
export function resolveImport(from: string, specifier: string): string {
  if (!specifier.startsWith('.')) return specifier
  const target = path.posix.normalize(path.posix.join(path.posix.dirname(from), specifier))
  return target.replace(/\.js$/, '.ts')
}

interface Rule {
  name: string
  /** Files the rule holds for (repo paths). */
  covers(file: string): boolean
  /** Whether importing `target` (a repo path or a package) breaks it. */
  forbids(target: string): boolean
}

const DOMAIN = ['identity', 'image', 'compute', 'network', 'scheduler']

export const RULES: Rule[] = [
  {
    name: 'the agent and the CLIs never import the controller',
    covers: (f) => f.startsWith('agent/') || f.startsWith('cli/strato/') || f === 'cli/strato.ts' || f === 'cli/strato-img.ts',
    forbids: (target) => target.startsWith('controller/') || target === NON_LITERAL,
  },
  {
    name: 'domain code imports no transport (grpc-js, NATS, proto/gen)',
    covers: (f) => DOMAIN.some((d) => f.startsWith(`controller/${d}/`)),
    forbids: (target) =>
      target === '@grpc/grpc-js' || target.startsWith('@grpc/grpc-js/') || target.startsWith('@nats-io/') || target === 'nats' ||
      target.startsWith('proto/gen/') || target === NON_LITERAL,
  },
]

/**
 * Every way a file breaks a rule: the chain of imports from the file to the
 * forbidden module (`a.ts → b.ts → @grpc/grpc-js`). `read` gives a repo file's
 * source (undefined: not a file of ours, not followed).
 */
export function violations(files: string[], read: (file: string) => string | undefined, rules: Rule[] = RULES): string[] {
  const importsCache = new Map<string, string[]>()
  const targetsOf = (file: string): string[] => {
    let targets = importsCache.get(file)
    if (!targets) {
      const source = read(file)
      targets = source === undefined ? [] : importsOf(file, source).map((s) => (s === NON_LITERAL ? s : resolveImport(file, s)))
      importsCache.set(file, targets)
    }
    return targets
  }
  const found: string[] = []
  for (const file of files) {
    for (const rule of rules) {
      if (!rule.covers(file)) continue
      // Breadth first: the shortest chain to each forbidden module. Files the rule covers
      // are checked on their own, so a chain goes on only through the others (proto/, store/, …).
      const seen = new Set([file])
      const queue: string[][] = [[file]]
      while (queue.length) {
        const chain = queue.shift()!
        for (const target of targetsOf(chain[chain.length - 1]!)) {
          if (rule.forbids(target)) found.push(`${rule.name}: ${[...chain, target].join(' → ')}`)
          else if (target.endsWith('.ts') && !rule.covers(target) && !seen.has(target)) {
            seen.add(target)
            queue.push([...chain, target])
          }
        }
      }
    }
  }
  return [...new Set(found)]
}

/** Every .ts file of ours (not node_modules, dist or generated output's neighbours outside the tree). */
function sourceFiles(dir = root): string[] {
  const out: string[] = []
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    if (e.name === 'node_modules' || e.name === 'dist' || e.name.startsWith('.')) continue
    const full = path.join(dir, e.name)
    if (e.isDirectory()) out.push(...sourceFiles(full))
    else if (e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')) out.push(path.relative(root, full).split(path.sep).join('/'))
  }
  return out
}

const readRepo = (file: string): string | undefined => {
  try {
    return readFileSync(path.join(root, file), 'utf8')
  } catch {
    return undefined
  }
}

t.test('the checker reads every kind of import, and nothing else', async (t) => {
  const src = `
    // import { a } from '../controller/in-a-comment.js'
    /* export * from '../controller/in-a-block-comment.js' */
    import type {
      X,
    } from '../controller/type-only.js'
    import '../controller/side-effect.js'
    import def, * as ns from '../controller/default.js'
    export { y } from '../controller/re-export.js'
    export * as z from "../controller/star-re-export.js"
    export type { W } from '../controller/type-re-export.js'
    import fs = require('../controller/import-equals.js')
    const s = "import { q } from '../controller/in-a-string.js'"
    const tpl = \`import('../controller/in-a-template.js')\`
    const m = await import('../controller/dynamic.js')
    const n = await import(name)
    const r = require('../controller/require.js')
    type T = typeof import('../controller/import-type.js')
  `
  t.same(importsOf('agent/x.ts', src), [
    '../controller/type-only.js', '../controller/side-effect.js', '../controller/default.js', '../controller/re-export.js',
    '../controller/star-re-export.js', '../controller/type-re-export.js', '../controller/import-equals.js',
    '../controller/dynamic.js', NON_LITERAL, '../controller/require.js', '../controller/import-type.js',
  ])
  t.equal(resolveImport('agent/disk/a.ts', '../../controller/api/x.js'), 'controller/api/x.ts')
  t.equal(resolveImport('cli/strato/a.ts', './b.js'), 'cli/strato/b.ts')
  t.equal(resolveImport('agent/a.ts', '@nats-io/jetstream'), '@nats-io/jetstream')
})

t.test('the checker catches violations, direct and through other modules, and passes what is allowed', async (t) => {
  const tree: Record<string, string> = {
    'agent/ok.ts': "import { NotFound } from '../proto/errors.js'\nimport { connect } from '@nats-io/transport-node'",
    'agent/bad.ts': "import { x } from '../controller/compute/servers.js'",
    'agent/disk/lazy.ts': "export async function f() { return import('../../controller/log.js') }",
    'agent/through.ts': "import { y } from '../proto/helper.js'",
    'proto/helper.ts': "export { z } from '../controller/api/rpc.js'",
    'cli/strato/cmd.ts': "export * from '../../controller/api/grpc-errors.js'",
    'cli/strato/computed.ts': 'const m = await import(`../../${dir}/x.js`)',
    'cli/stack/run.ts': "import { Controller } from '../../controller/server.js'",
    'controller/api/images.ts': "import { status } from '@grpc/grpc-js'",
    'controller/compute/ok.ts': "import { NotFound } from '../../proto/errors.js'\nimport { isUuid } from '../../proto/ids.js'\nimport type { Db } from '../store/db.js'",
    'controller/compute/grpc.ts': "import type { ServiceError } from '@grpc/grpc-js'",
    'controller/network/nats.ts': "import { headers } from '@nats-io/transport-node'",
    'controller/identity/gen.ts': "import type { Token } from '../../proto/gen/strato/identity/v1/identity.js'",
    'controller/image/hidden.ts': "import { toGrpcError } from '../../proto/grpc-errors.js'",
    'proto/grpc-errors.ts': "import { Metadata } from '@grpc/grpc-js'",
    'controller/scheduler/cycle.ts': "import './cycle.js'\nimport '../compute/ok.js'",
  }
  const found = violations(Object.keys(tree), (f) => tree[f])
  const hits = (file: string) => found.filter((v) => v.split(': ')[1]!.startsWith(`${file} `))
  for (const bad of ['agent/bad.ts', 'agent/disk/lazy.ts', 'agent/through.ts', 'cli/strato/cmd.ts', 'cli/strato/computed.ts', 'controller/compute/grpc.ts', 'controller/network/nats.ts', 'controller/identity/gen.ts', 'controller/image/hidden.ts']) {
    t.equal(hits(bad).length, 1, `${bad} is caught`)
  }
  t.match(hits('agent/through.ts')[0], 'agent/through.ts → proto/helper.ts → controller/api/rpc.ts', 'the chain is shown')
  t.match(hits('controller/image/hidden.ts')[0], 'controller/image/hidden.ts → proto/grpc-errors.ts → @grpc/grpc-js', 'a transport reached through proto/ is caught')
  for (const ok of ['agent/ok.ts', 'cli/stack/run.ts', 'controller/api/images.ts', 'controller/compute/ok.ts', 'controller/scheduler/cycle.ts']) {
    t.same(hits(ok), [], `${ok} is allowed`)
  }
  t.equal(found.length, 9, found.join('\n'))
})

t.test('the tree keeps the house rules', async (t) => {
  const files = sourceFiles()
  t.ok(files.includes('agent/service.ts') && files.includes('controller/compute/servers.ts') && files.includes('cli/strato/transport.ts'), 'the walk finds the sources')
  t.ok(files.filter((f) => RULES[0]!.covers(f)).length > 20, 'the agent and CLI files are covered')
  t.ok(files.filter((f) => RULES[1]!.covers(f)).length > 20, 'the domain files are covered')
  t.ok(importsOf('agent/disk/grpc-image-source.ts', readRepo('agent/disk/grpc-image-source.ts')!).includes('../../proto/grpc-errors.js'), 'imports of real files are read')
  const found = violations(files, readRepo)
  t.same(found, [], `imports that break the house rules:\n${found.join('\n')}`)
})

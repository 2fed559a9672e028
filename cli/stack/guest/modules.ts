/**
 * Kernel modules for the guest's initramfs: which files to take and in which
 * order to load them, from the `modules.dep` that `depmod -b` writes for the
 * extracted kernel package. Pure: the file's text in, a load order out (each
 * module after its dependencies, each once), as `modprobe --show-depends`
 * would give, so the guest's init can load them with plain `insmod`.
 */

/** A module's name as the kernel spells it: `virtio-rng` and `virtio_rng` are one module. */
export const moduleName = (pathOrName: string) => (pathOrName.split('/').pop() ?? '').replace(/\.ko(\.(xz|gz|zst))?$/, '').replaceAll('-', '_')

/** `modules.dep` as a map: module name → { path, dependency paths }. */
export function parseModulesDep(text: string): Map<string, { path: string; deps: string[] }> {
  const map = new Map<string, { path: string; deps: string[] }>()
  for (const line of text.split('\n')) {
    const colon = line.indexOf(':')
    if (colon < 0) continue
    const path = line.slice(0, colon).trim()
    const deps = line.slice(colon + 1).trim().split(/\s+/).filter(Boolean)
    map.set(moduleName(path), { path, deps })
  }
  return map
}

/**
 * The module files to load, in order, for `wanted` (names). Dependencies come
 * first; a module wanted twice or shared is listed once. Throws on a module
 * modules.dep does not know (a typo, or one built into this kernel: pass
 * `builtin` — names from modules.builtin — to skip those instead).
 */
export function loadOrder(modulesDep: string, wanted: readonly string[], builtin: ReadonlySet<string> = new Set()): string[] {
  const dep = parseModulesDep(modulesDep)
  const byPath = new Map([...dep.values()].map((m) => [m.path, m]))
  const order: string[] = []
  const seen = new Set<string>()
  const visit = (path: string, trail: string[]) => {
    if (seen.has(path)) return
    if (trail.includes(path)) throw new Error(`modules.dep: a dependency cycle: ${[...trail, path].join(' -> ')}`)
    const m = byPath.get(path)
    if (m === undefined) throw new Error(`modules.dep: '${path}' is a dependency but has no line of its own`)
    // modules.dep lists the closest dependency first: load from the far end.
    for (const d of [...m.deps].reverse()) visit(d, [...trail, path])
    seen.add(path)
    order.push(path)
  }
  for (const name of wanted) {
    const m = dep.get(moduleName(name))
    if (m === undefined) {
      if (builtin.has(moduleName(name))) continue
      throw new Error(`kernel module '${name}' is not in modules.dep (not built for this kernel?)`)
    }
    visit(m.path, [])
  }
  return order
}

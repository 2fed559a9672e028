/**
 * Just enough XML for libvirt documents (domain XML, capabilities): a
 * serializer with escaping and a small non-validating parser (elements,
 * attributes, text, comments, the XML declaration; no DTDs, no CDATA).
 */

export interface XmlElement {
  name: string
  attrs: Record<string, string>
  children: XmlElement[]
  /** Concatenated text directly inside this element, entity-decoded and trimmed. */
  text: string
}

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' }

export function escapeXml(value: string): string {
  return value.replace(/[&<>"']/g, (ch) => ESCAPES[ch] ?? ch)
}

function decodeEntities(value: string): string {
  return value.replace(/&(#x[0-9a-fA-F]+|#[0-9]+|amp|lt|gt|quot|apos);/g, (_, entity: string) => {
    if (entity.startsWith('#x')) return String.fromCodePoint(parseInt(entity.slice(2), 16))
    if (entity.startsWith('#')) return String.fromCodePoint(parseInt(entity.slice(1), 10))
    return { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" }[entity] ?? ''
  })
}

/** Builds an element; `children` may be elements or text. */
export function el(name: string, attrs: Record<string, string | number | undefined> = {}, ...children: (XmlElement | string)[]): XmlElement {
  const cleanAttrs: Record<string, string> = {}
  for (const [key, value] of Object.entries(attrs)) if (value !== undefined) cleanAttrs[key] = String(value)
  return {
    name,
    attrs: cleanAttrs,
    children: children.filter((c): c is XmlElement => typeof c !== 'string'),
    text: children.filter((c): c is string => typeof c === 'string').join(''),
  }
}

/** Serialises with two-space indentation, attributes in single quotes (as virsh shows them). */
export function serializeXml(node: XmlElement, indent = ''): string {
  const attrs = Object.entries(node.attrs)
    .map(([key, value]) => ` ${key}='${escapeXml(value)}'`)
    .join('')
  if (node.children.length === 0 && node.text === '') return `${indent}<${node.name}${attrs}/>`
  if (node.children.length === 0) return `${indent}<${node.name}${attrs}>${escapeXml(node.text)}</${node.name}>`
  const inner = node.children.map((child) => serializeXml(child, `${indent}  `)).join('\n')
  return `${indent}<${node.name}${attrs}>\n${inner}\n${indent}</${node.name}>`
}

const NAME = /[A-Za-z_][\w.:-]*/y
const ATTR = /\s*([A-Za-z_][\w.:-]*)\s*=\s*("([^"]*)"|'([^']*)')/y

/** Parses one XML document and returns its root element. */
export function parseXml(source: string): XmlElement {
  let pos = 0
  const fail = (why: string): never => {
    throw new Error(`malformed XML at offset ${pos}: ${why}`)
  }
  const skipMisc = (): void => {
    for (;;) {
      while (pos < source.length && /\s/.test(source[pos] ?? '')) pos++
      if (source.startsWith('<?', pos)) {
        const end = source.indexOf('?>', pos)
        if (end < 0) fail('unterminated processing instruction')
        pos = end + 2
      } else if (source.startsWith('<!--', pos)) {
        const end = source.indexOf('-->', pos)
        if (end < 0) fail('unterminated comment')
        pos = end + 3
      } else if (source.startsWith('<!DOCTYPE', pos)) {
        fail('DOCTYPE is not supported')
      } else return
    }
  }

  const parseElement = (): XmlElement => {
    if (source[pos] !== '<') fail('expected <')
    pos++
    NAME.lastIndex = pos
    const nameMatch = NAME.exec(source)
    if (nameMatch === null) return fail('expected an element name')
    const name = nameMatch[0]
    pos = NAME.lastIndex
    const attrs: Record<string, string> = {}
    for (;;) {
      ATTR.lastIndex = pos
      const attr = ATTR.exec(source)
      if (attr === null) break
      attrs[attr[1] ?? ''] = decodeEntities(attr[3] ?? attr[4] ?? '')
      pos = ATTR.lastIndex
    }
    while (/\s/.test(source[pos] ?? '')) pos++
    if (source.startsWith('/>', pos)) {
      pos += 2
      return { name, attrs, children: [], text: '' }
    }
    if (source[pos] !== '>') fail(`expected > in <${name}>`)
    pos++
    const children: XmlElement[] = []
    let text = ''
    for (;;) {
      const next = source.indexOf('<', pos)
      if (next < 0) fail(`unterminated <${name}>`)
      text += source.slice(pos, next)
      pos = next
      if (source.startsWith('<!--', pos)) {
        const end = source.indexOf('-->', pos)
        if (end < 0) fail('unterminated comment')
        pos = end + 3
      } else if (source.startsWith('</', pos)) {
        const close = `</${name}`
        if (!source.startsWith(close, pos)) fail(`expected ${close}>`)
        pos += close.length
        while (/\s/.test(source[pos] ?? '')) pos++
        if (source[pos] !== '>') fail(`expected > after ${close}`)
        pos++
        return { name, attrs, children, text: decodeEntities(text).trim() }
      } else if (source.startsWith('<![CDATA[', pos)) {
        fail('CDATA is not supported')
      } else {
        children.push(parseElement())
      }
    }
  }

  skipMisc()
  const root = parseElement()
  skipMisc()
  if (pos !== source.length) fail('content after the root element')
  return root
}

/** First child element named `name`. */
export function child(node: XmlElement | undefined, name: string): XmlElement | undefined {
  return node?.children.find((c) => c.name === name)
}

/** Every child element named `name`. */
export function childrenNamed(node: XmlElement | undefined, name: string): XmlElement[] {
  return node?.children.filter((c) => c.name === name) ?? []
}

/** Follows a path of child names: `path(root, 'os', 'type')`. */
export function path(node: XmlElement | undefined, ...names: string[]): XmlElement | undefined {
  let current = node
  for (const name of names) current = child(current, name)
  return current
}

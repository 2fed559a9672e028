import t from 'tap'
import { el, parseXml, serializeXml, escapeXml } from '../../../../../agent/virt/libvirt/xml.js'

t.test('parses declarations, comments, attributes in both quotes, entities', async (t) => {
  const root = parseXml(`<?xml version="1.0"?>
<!-- a comment -->
<a x="1" y='two &amp; three'>
  <b>text &lt;here&gt; &#65;&#x42;</b>
  <!-- inside -->
  <c/>
</a>
`)
  t.equal(root.name, 'a')
  t.same(root.attrs, { x: '1', y: 'two & three' })
  t.same(root.children.map((c) => c.name), ['b', 'c'])
  t.equal(root.children[0]?.text, 'text <here> AB')
})

t.test('serialize then parse is identity', async (t) => {
  const doc = el('root', { a: "q'uote", b: undefined }, el('leaf', {}, 'x < y'), el('empty', { n: 3 }))
  const text = serializeXml(doc)
  t.equal(text, `<root a='q&apos;uote'>\n  <leaf>x &lt; y</leaf>\n  <empty n='3'/>\n</root>`)
  t.same(parseXml(text), doc)
  t.equal(escapeXml(`<&>"'`), '&lt;&amp;&gt;&quot;&apos;')
})

t.test('rejects what it does not handle', async (t) => {
  t.throws(() => parseXml('<a><![CDATA[x]]></a>'), /CDATA/)
  t.throws(() => parseXml('<!DOCTYPE a><a/>'), /DOCTYPE/)
  t.throws(() => parseXml('<a/><b/>'), /after the root/)
  t.throws(() => parseXml('<a'), /expected >/)
})

/* Format inspector for untrusted images, after OpenStack's format_inspector
 * (OSSA-2023-002, OSSA-2024-001, OSSA-2024-002): detect the real format by
 * content, report the virtual size, and refuse anything that can make a
 * reader open another file (backing files, external data files, VMDK extents,
 * differencing disks), unknown qcow2 features, and files that match more
 * than one format. Only the inspected file is ever read. */
#include "qcow2_int.h"
#include <unistd.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <ctype.h>
#include <stdarg.h>

typedef int (*read_fn)(void *ctx, uint64_t off, size_t len, uint8_t *out);

typedef struct insp {
  read_fn rd;
  void *ctx;
  uint64_t size;
  si_inspect_result *r;
  int nfmt;
  char fmts[128];
} insp;

static void reason(insp *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void reason(insp *c, const char *fmt, ...) {
  char line[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  c->r->safe = 0;
  size_t n = strlen(c->r->reasons);
  snprintf(c->r->reasons + n, sizeof c->r->reasons - n, "%s%s", n ? "; " : "", line);
}

static void matched(insp *c, const char *fmt, uint64_t vsize) {
  if (c->nfmt == 0) {
    snprintf(c->r->format, sizeof c->r->format, "%s", fmt);
    c->r->virtual_size = vsize;
  }
  size_t n = strlen(c->fmts);
  snprintf(c->fmts + n, sizeof c->fmts - n, "%s%s", n ? ", " : "", fmt);
  c->nfmt++;
}

static int rd(insp *c, uint64_t off, size_t len, uint8_t *out) {
  if (off > c->size || len > c->size - off) return -1;
  return c->rd(c->ctx, off, len, out);
}

static int rd_ctx(void *ctx, uint64_t off, size_t len, uint8_t *out) { return rd(ctx, off, len, out); }

static void check_qcow(insp *c, const uint8_t *h) {
  if (be32(h) != 0x514649fbu) return;
  uint32_t version = be32(h + 4);
  if (version == 1) {
    matched(c, "qcow", be64(h + 24));
    reason(c, "qcow version 1 images are not allowed");
    return;
  }
  matched(c, "qcow2", be64(h + 24));
  if (version != 2 && version != 3) {
    reason(c, "qcow2 has unknown version %u", version);
    return;
  }
  if (be64(h + 8) != 0) reason(c, "qcow2 has a backing file");
  if (version == 3) {
    uint64_t inc = be64(h + 72);
    if (inc & 4) reason(c, "qcow2 has an external data file");
    if (inc & ~0xfULL) reason(c, "qcow2 has unknown incompatible features 0x%llx", (unsigned long long)(inc & ~0xfULL));
  }
  /* Whatever the engine (and so qemu) would refuse to open is unsafe: the same rules, from one place. */
  qcow2_state *q = calloc(1, sizeof *q);
  if (!q) { reason(c, "out of memory"); return; }
  q->file_size = c->size;
  uint64_t vsize = 0;
  si_err e = {0, ""};
  if (qcow2_parse_header(q, &vsize, rd_ctx, c, 0, &e) < 0) reason(c, "%s", e.msg);
  else if (q->autoclear & 1)
    for (int i = 0; i < q->n_exts; i++)
      if (q->exts[i].type == EXT_BITMAPS) reason(c, "qcow2 has persistent dirty bitmaps (their directory is not validated)");
  qcow2_header_free(q);
  free(q);
}

static void check_qed(insp *c, const uint8_t *h) {
  if (memcmp(h, "QED\0", 4)) return;
  matched(c, "qed", le64(h + 40));
  reason(c, "QED images are not allowed");
}

static int vmdk_descriptor(insp *c, const char *d, size_t len, int embedded) {
  /* Line-by-line allowlist. */
  const char *p = d, *end = d + len;
  int create_ok = 0, extents = 0;
  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
    char line[512];
    if (n >= sizeof line) n = sizeof line - 1;
    memcpy(line, p, n);
    line[n] = 0;
    while (n && (line[n - 1] == '\r' || line[n - 1] == ' ' || line[n - 1] == '\t')) line[--n] = 0;
    char *s = line;
    while (*s == ' ' || *s == '\t') s++;
    p = nl ? nl + 1 : end;
    if (!*s || *s == '#') continue;
    if (!strncmp(s, "createType", 10)) {
      if (strstr(s, "\"monolithicSparse\"") || strstr(s, "\"streamOptimized\"")) create_ok = 1;
      else reason(c, "VMDK createType is not allowed: %.60s", s);
      continue;
    }
    if (!strncmp(s, "RW ", 3) || !strncmp(s, "RDONLY ", 7) || !strncmp(s, "NOACCESS ", 9)) {
      extents++;
      const char *q1 = strchr(s, '"');
      const char *q2 = q1 ? strchr(q1 + 1, '"') : NULL;
      if (!strstr(s, " SPARSE ") || !embedded) reason(c, "VMDK extent is not an embedded sparse extent: %.60s", s);
      if (!q1 || !q2) { reason(c, "malformed VMDK extent line"); continue; }
      if (memchr(q1 + 1, '/', (size_t)(q2 - q1 - 1)) || memchr(q1 + 1, '\\', (size_t)(q2 - q1 - 1)))
        reason(c, "VMDK extent names another file: %.*s", (int)(q2 - q1 - 1 > 80 ? 80 : q2 - q1 - 1), q1 + 1);
      continue;
    }
    if (!strncmp(s, "version=", 8) || !strncmp(s, "CID=", 4) || !strncmp(s, "parentCID=", 10) ||
        !strncmp(s, "ddb.", 4) || !strncmp(s, "encoding=", 9))
      continue;
    if (!strncmp(s, "parentFileNameHint", 18)) { reason(c, "VMDK has a parent (backing) file"); continue; }
    reason(c, "VMDK descriptor line not allowed: %.60s", s);
  }
  if (!create_ok) reason(c, "VMDK createType missing or not allowed");
  if (extents > 1) reason(c, "VMDK has more than one extent");
  return 0;
}

static void check_vmdk(insp *c, const uint8_t *h, size_t hlen) {
  if (!memcmp(h, "KDMV", 4)) {
    uint64_t capacity = le64(h + 12), doff = le64(h + 28), dsz = le64(h + 36);
    matched(c, "vmdk", capacity > (UINT64_MAX >> 9) ? UINT64_MAX : capacity * 512);
    /* qemu: a zero-sized extent is refused, and the size in bytes must fit in an int64 */
    if (capacity == 0 || capacity > ((uint64_t)INT64_MAX >> 9) / 2)
      reason(c, "VMDK capacity %llu sectors is out of range", (unsigned long long)capacity);
    if (!doff || !dsz) { reason(c, "VMDK has no embedded descriptor"); return; }
    if (dsz > 128 || doff > (c->size >> 9)) { reason(c, "VMDK descriptor out of bounds"); return; }
    size_t len = (size_t)dsz * 512;
    uint8_t *d = malloc(len);
    if (!d) { reason(c, "out of memory"); return; }
    if (rd(c, doff * 512, len, d) < 0) { free(d); reason(c, "VMDK descriptor lies beyond the end of the file"); return; }
    size_t n = strnlen((char *)d, len);
    vmdk_descriptor(c, (char *)d, n, 1);
    free(d);
    return;
  }
  /* A text descriptor: it can only name other files. */
  if (hlen >= 21 && !memcmp(h, "# Disk DescriptorFile", 21)) {
    matched(c, "vmdk", 0);
    reason(c, "VMDK text descriptor references external extent files");
    size_t n = strnlen((const char *)h, hlen > 65536 ? 65536 : hlen);
    vmdk_descriptor(c, (const char *)h, n, 0);
  }
}

static void check_vhd(insp *c, const uint8_t *h, const uint8_t *tail, size_t tlen) {
  const uint8_t *f = NULL;
  if (!memcmp(h, "conectix", 8)) f = h;
  else if (tlen >= 512 && !memcmp(tail + tlen - 512, "conectix", 8)) f = tail + tlen - 512;
  else if (tlen >= 511 && !memcmp(tail + tlen - 511, "conectix", 8)) f = tail + tlen - 511;
  if (!f) return;
  matched(c, "vhd", be64(f + 48));
  uint32_t sum = 0;
  int flen = tlen >= 511 && f == tail + tlen - 511 ? 511 : 512; /* old 511-byte footers */
  for (int i = 0; i < flen; i++)
    if (i < 64 || i >= 68) sum += f[i];
  if (~sum != be32(f + 64)) reason(c, "VHD footer checksum is wrong (0x%08x, computed 0x%08x)", be32(f + 64), ~sum);
  uint32_t type = be32(f + 60);
  if (type == 3 && f != h) reason(c, "VHD dynamic disk without the footer copy at the start of the file");
  if (type == 2 && f == h) reason(c, "VHD fixed disk with a footer copy at the start of the file");
  if (type == 4) reason(c, "VHD differencing disk (has a parent)");
  else if (type != 2 && type != 3) reason(c, "VHD disk type %u is not allowed", type);
}

static void check_vdi(insp *c, const uint8_t *h, size_t hlen) {
  if (hlen < 0x180 || le32(h + 0x40) != 0xbeda107fu) return;
  matched(c, "vdi", le64(h + 0x170));
  /* qemu: VDI_DISK_SIZE_MAX, 0x3fffffff blocks of 1 MiB rounded as in block/vdi.c */
  if (le64(h + 0x170) > 0x1fffff8000000ULL)
    reason(c, "VDI disk size %llu exceeds qemu's maximum (0x1fffff8000000)", (unsigned long long)le64(h + 0x170));
  uint32_t type = le32(h + 0x4c);
  if (type != 1 && type != 2) reason(c, "VDI image type %u is not allowed (differencing/undo)", type);
}

static int guid_eq(const uint8_t *a, const char *hex) {
  /* hex: 32 hex chars in on-disk byte order */
  for (int i = 0; i < 16; i++) {
    unsigned v;
    if (sscanf(hex + 2 * i, "%2x", &v) != 1 || a[i] != v) return 0;
  }
  return 1;
}

static uint32_t crc32c(const uint8_t *p, size_t n) {
  uint32_t crc = 0xffffffffu;
  for (size_t i = 0; i < n; i++) {
    crc ^= p[i];
    for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (0x82f63b78u & (0u - (crc & 1)));
  }
  return ~crc;
}

static void check_vhdx(insp *c, const uint8_t *h, size_t hlen) {
  if (hlen < 8 || memcmp(h, "vhdxfile", 8)) return;
  uint64_t vsize = 0;
  int parent = 0, ok = 0;
  uint8_t rt[4096];
  /* Region table at 192 KiB: metadata region GUID 8B7CA206-4790-4B9A-B8FE-575F050F886E. */
  /* qemu checks the region table's CRC-32C (over 64 KiB, checksum field as zero). */
  uint8_t *rtab = malloc(65536);
  if (rtab && rd(c, 192 * 1024, 65536, rtab) == 0 && !memcmp(rtab, "regi", 4)) {
    uint32_t want = le32(rtab + 4);
    memset(rtab + 4, 0, 4);
    if (crc32c(rtab, 65536) != want) reason(c, "VHDX region table checksum is wrong");
  }
  free(rtab);
  if (rd(c, 192 * 1024, sizeof rt, rt) == 0 && !memcmp(rt, "regi", 4)) {
    uint32_t n = le32(rt + 8);
    if (n > 2047 / 2) n = 0;
    for (uint32_t i = 0; i < n && 16 + (i + 1) * 32 <= sizeof rt; i++) {
      const uint8_t *e = rt + 16 + i * 32;
      if (!guid_eq(e, "06a27c8b90479a4bb8fe575f050f886e")) continue;
      uint64_t moff = le64(e + 16);
      uint32_t mlen = le32(e + 24);
      if (mlen < 65536 || mlen > (64u << 20)) break;
      uint8_t mt[65536];
      if (rd(c, moff, sizeof mt, mt) < 0 || memcmp(mt, "metadata", 8)) break;
      uint16_t cnt = (uint16_t)(mt[10] | (mt[11] << 8));
      for (uint32_t k = 0; k < cnt && 32 + (k + 1) * 32 <= 65536; k++) {
        const uint8_t *m = mt + 32 + k * 32;
        uint32_t ioff = le32(m + 16), ilen = le32(m + 20);
        /* Virtual disk size 2FA54224-CD1B-4876-B211-5DBED83BF4B8 */
        uint8_t v[8];
        if (guid_eq(m, "2442a52f1bcd7648b2115dbed83bf4b8") && ilen == 8 && ioff <= mlen - 8 &&
            rd(c, moff + ioff, 8, v) == 0) {
          vsize = le64(v);
          ok = 1;
        }
        /* Parent locator A8D35F2D-B30B-454D-ABF7-D3D84834AB0C */
        if (guid_eq(m, "2d5fd3a80bb34d45abf7d3d84834ab0c")) parent = 1;
      }
      break;
    }
  }
  matched(c, "vhdx", vsize);
  if (!ok) reason(c, "VHDX metadata could not be parsed");
  if (parent) reason(c, "VHDX differencing disk (has a parent locator)");
}

static void check_iso(insp *c) {
  /* ISO 9660 primary volume descriptor at 32 KiB: type 1, "CD001". */
  static const uint64_t at[] = {0x8000, 0x8800, 0x9000};
  for (int i = 0; i < 3; i++) {
    uint8_t d[2048];
    if (rd(c, at[i], sizeof d, d) < 0) return;
    if (memcmp(d + 1, "CD001", 5)) continue;
    uint32_t blocks = le32(d + 80);
    uint16_t bs = (uint16_t)(d[128] | (d[129] << 8));
    matched(c, "iso", (uint64_t)blocks * (bs ? bs : 2048));
    return;
  }
}

static int inspect_core(insp *c, const uint8_t *head, size_t hlen, const uint8_t *tail, size_t tlen) {
  si_inspect_result *r = c->r;
  memset(r, 0, sizeof *r);
  r->safe = 1;
  uint8_t h[512];
  memset(h, 0, sizeof h);
  memcpy(h, head, hlen < sizeof h ? hlen : sizeof h);
  /* Parsers read fixed header fields: give them a zero-padded copy. */
  uint8_t *hp = calloc(1, hlen < 4096 ? 4096 : hlen);
  if (!hp) { reason(c, "out of memory"); return 0; }
  memcpy(hp, head, hlen);
  check_qcow(c, h);
  check_qed(c, h);
  check_vmdk(c, hp, hlen);
  check_vhd(c, h, tail, tlen);
  check_vdi(c, hp, hlen);
  check_vhdx(c, hp, hlen);
  check_iso(c);
  free(hp);
  if (c->nfmt == 0) {
    snprintf(r->format, sizeof r->format, "raw");
    r->virtual_size = c->size;
  } else if (c->nfmt > 1) {
    reason(c, "Multiple formats detected: %s", c->fmts);
  }
  return 0;
}

struct memctx { const uint8_t *buf; size_t len; };
static int mem_read(void *ctx, uint64_t off, size_t len, uint8_t *out) {
  struct memctx *m = ctx;
  if (off > m->len || len > m->len - off) return -1;
  memcpy(out, m->buf + off, len);
  return 0;
}

int si_inspect_buf(const uint8_t *buf, size_t len, uint64_t file_size, si_inspect_result *r) {
  struct memctx m = {buf, len};
  insp c;
  memset(&c, 0, sizeof c);
  c.rd = mem_read;
  c.ctx = &m;
  c.size = file_size < len ? file_size : len;
  c.r = r;
  size_t tl = len < 1024 ? len : 1024;
  return inspect_core(&c, buf, len, buf + len - tl, tl);
}

static int fd_read(void *ctx, uint64_t off, size_t len, uint8_t *out) {
  int fd = *(int *)ctx;
  si_err e = {0, ""};
  return si_pread_exact(fd, out, len, off, &e, "image");
}

int si_inspect(const char *path, si_inspect_result *r, si_err *e) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return si_errno_err(e, errno, "could not open '%s'", path);
  struct stat st;
  if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return si_set_err(e, SI_E_INVALID, "%s is not a regular file", path);
  }
  size_t hlen = st.st_size < 65536 ? (size_t)st.st_size : 65536;
  uint8_t *head = calloc(1, 65536);
  uint8_t tail[1024];
  size_t tlen = st.st_size < 1024 ? (size_t)st.st_size : 1024;
  if (!head) { close(fd); return si_set_err(e, SI_E_NOMEM, "out of memory"); }
  if (si_pread_full(fd, head, hlen, 0, e, "image") < 0 ||
      si_pread_full(fd, tail, tlen, (uint64_t)st.st_size - tlen, e, "image") < 0) {
    free(head); close(fd); return -1;
  }
  insp c;
  memset(&c, 0, sizeof c);
  c.rd = fd_read;
  c.ctx = &fd;
  c.size = (uint64_t)st.st_size;
  c.r = r;
  int ret = inspect_core(&c, head, hlen, tail, tlen);
  free(head);
  close(fd);
  return ret;
}

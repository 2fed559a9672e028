/* qemu-img check for qcow2: rebuild the refcounts in memory from every
 * metadata structure, compare with the on-disk refcounts, check COPIED
 * flags; optionally repair leaks or everything. Messages follow qemu-img. */
#include "qcow2_int.h"
#include <stdarg.h>
#include <unistd.h>

#define MAX_EXTRA_CLUSTERS (1u << 20)

typedef struct ck {
  si_image *img;
  qcow2_state *q;
  si_check_result *r;
  uint64_t *imrt;
  uint64_t imrt_len;    /* clusters tracked */
  uint64_t file_clusters;
  int fix;              /* SI_REPAIR_* */
  int beyond;           /* a reference past the end of the file */
  uint64_t budget;      /* L2 entries we may still visit: bounds hostile snapshot tables */
  uint8_t *l2buf;
} ck;

static void logf_(si_check_result *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void logf_(si_check_result *r, const char *fmt, ...) {
  char line[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if ((size_t)n >= sizeof line) n = sizeof line - 1;
  if (r->log_len > (4u << 20)) return; /* bounded diagnostics */
  if (r->log_len + (size_t)n + 1 > r->log_cap) {
    size_t cap = r->log_cap ? r->log_cap * 2 : 4096;
    while (cap < r->log_len + (size_t)n + 1) cap *= 2;
    char *nl = realloc(r->log, cap);
    if (!nl) return;
    r->log = nl;
    r->log_cap = cap;
  }
  memcpy(r->log + r->log_len, line, (size_t)n);
  r->log_len += (size_t)n;
  r->log[r->log_len] = 0;
}

void si_check_free(si_check_result *r) {
  free(r->log);
  r->log = NULL;
  r->log_len = r->log_cap = 0;
}

static int inc_refs(ck *c, uint64_t off, uint64_t len, si_err *e) {
  if (!len) return 0;
  qcow2_state *q = c->q;
  uint64_t first = off >> q->cluster_bits, last = (off + len - 1) >> q->cluster_bits;
  for (uint64_t k = first; k <= last; k++) {
    if (k >= c->file_clusters + MAX_EXTRA_CLUSTERS) {
      logf_(c->r, "ERROR: cluster %llu is far beyond the end of the image\n", (unsigned long long)k);
      c->r->corruptions++;
      return 0;
    }
    if (k >= c->file_clusters) c->beyond = 1;
    if (k >= c->imrt_len) {
      uint64_t nl = c->imrt_len * 2;
      if (nl <= k) nl = k + 1;
      uint64_t *n = realloc(c->imrt, nl * 8);
      if (!n) return si_set_err(e, SI_E_NOMEM, "out of memory for the refcount check");
      memset(n + c->imrt_len, 0, (nl - c->imrt_len) * 8);
      c->imrt = n;
      c->imrt_len = nl;
    }
    if (c->imrt[k] == UINT64_MAX) {
      logf_(c->r, "ERROR: overflow cluster offset=0x%llx\n", (unsigned long long)(k << q->cluster_bits));
      c->r->corruptions++;
      continue;
    }
    c->imrt[k]++;
  }
  return 0;
}

/* L2 table at l2off; active: count stats and repair flags. */
static int check_l2(ck *c, uint64_t l2off, int active, si_err *e) {
  qcow2_state *q = c->q;
  uint64_t *t = (uint64_t *)c->l2buf;
  if (l2off >= q->file_size || q->cs > q->file_size - l2off) {
    logf_(c->r, "ERROR l2_offset=%llx: L2 table lies beyond the end of the image\n", (unsigned long long)l2off);
    c->r->corruptions++;
    return 0;
  }
  if (c->budget < q->l2_entries) {
    if (c->r->check_errors++ == 0) logf_(c->r, "ERROR: too much metadata to check (hostile snapshot table?)\n");
    return 0;
  }
  c->budget -= q->l2_entries;
  uint64_t next_contig = 0; /* like qemu: contiguity is judged within one L2 table */
  if (si_pread_full(c->img->fd, t, q->cs, l2off, e, "L2 table") < 0) return -1;
  for (uint32_t i = 0; i < q->l2_entries; i++) {
    uint64_t ent = be64((uint8_t *)&t[i]);
    if (ent & OFLAG_COMPRESSED) {
      if (ent & OFLAG_COPIED) {
        logf_(c->r, "ERROR: coffset=0x%llx: copied flag must never be set for compressed clusters\n",
              (unsigned long long)(ent & ~(OFLAG_COPIED | OFLAG_COMPRESSED)));
        c->r->corruptions++;
      }
      if (q->has_data_file) {
        logf_(c->r, "ERROR compressed cluster %u with data file\n", i);
        c->r->corruptions++;
        continue;
      }
      uint64_t off, len;
      qcow2_compressed_range(q, ent & ~OFLAG_COPIED, &off, &len);
      if (active) {
        c->r->allocated_clusters++;
        c->r->compressed_clusters++;
        c->r->fragmented_clusters++;
      }
      if (inc_refs(c, off, len, e) < 0) return -1;
      continue;
    }
    uint64_t h = ent & L2E_OFFSET_MASK;
    if (!h || q->has_data_file) continue;
    if (h & (q->cs - 1)) {
      /* Like qemu: counted (over two clusters) unless repairing, which drops the entry. */
      logf_(c->r, "%s offset=%llx: Data cluster is not properly aligned; L2 entry corrupted.\n",
            c->fix == SI_REPAIR_ALL && active ? "Repairing" : "ERROR", (unsigned long long)h);
      c->r->corruptions++;
      if (c->fix == SI_REPAIR_ALL && active) continue;
    }
    if (active) {
      c->r->allocated_clusters++;
      if (next_contig && h != next_contig) c->r->fragmented_clusters++;
      next_contig = h + q->cs;
    }
    if (inc_refs(c, h, q->cs, e) < 0) return -1;
  }
  return 0;
}

static int check_l1(ck *c, uint64_t l1off, uint32_t l1size, int active, si_err *e) {
  qcow2_state *q = c->q;
  if (!l1size) return 0;
  if (inc_refs(c, l1off, (uint64_t)l1size * 8, e) < 0) return -1;
  if ((uint64_t)l1size * 8 > MAX_L1_BYTES || l1off > q->file_size || (uint64_t)l1size * 8 > q->file_size - l1off) {
    logf_(c->r, "ERROR: L1 table at 0x%llx (%u entries) lies beyond the end of the image\n", (unsigned long long)l1off, l1size);
    c->r->corruptions++;
    return 0;
  }
  uint8_t *l1 = si_malloc((size_t)l1size * 8, e);
  if (!l1) return -1;
  if (si_pread_full(c->img->fd, l1, (size_t)l1size * 8, l1off, e, "L1 table") < 0) { free(l1); return -1; }
  for (uint32_t i = 0; i < l1size; i++) {
    uint64_t ent = be64(l1 + i * 8), l2off = ent & L1E_OFFSET_MASK;
    if (!l2off) continue;
    int unaligned = !!(l2off & (q->cs - 1));
    int beyond = l2off >= q->file_size || q->cs > q->file_size - l2off;
    if (unaligned)
      logf_(c->r, "ERROR l2_offset=%llx: Table is not cluster aligned; L1 entry corrupted\n", (unsigned long long)l2off);
    if (unaligned) c->r->corruptions++;
    /* A repair drops an unusable L2 table; otherwise count it like qemu does. */
    if (c->fix == SI_REPAIR_ALL && active && (unaligned || beyond)) {
      if (beyond && !unaligned) {
        logf_(c->r, "ERROR l2_offset=%llx: L2 table lies beyond the end of the image\n", (unsigned long long)l2off);
        c->r->corruptions++;
      }
      continue;
    }
    if (inc_refs(c, l2off, q->cs, e) < 0) { free(l1); return -1; }
    if (check_l2(c, l2off, active, e) < 0) { free(l1); return -1; }
  }
  free(l1);
  return 0;
}

static int check_snapshots(ck *c, si_err *e) {
  qcow2_state *q = c->q;
  uint64_t off = q->snapshots_offset, start = off;
  for (uint32_t s = 0; s < q->nb_snapshots; s++) {
    uint8_t h[40];
    if (off + 40 > q->file_size) {
      logf_(c->r, "ERROR: snapshot table lies beyond the end of the image\n");
      c->r->corruptions++;
      return 0;
    }
    if (si_pread_full(c->img->fd, h, 40, off, e, "snapshot table") < 0) return -1;
    uint64_t l1off = be64(h);
    uint32_t l1size = be32(h + 8);
    uint16_t idlen = be16(h + 12), namelen = be16(h + 14);
    uint32_t extra = be32(h + 36);
    if (extra > 1024) {
      logf_(c->r, "ERROR: snapshot %u has too much extra data\n", s);
      c->r->corruptions++;
      return 0;
    }
    off += 40 + extra + idlen + namelen;
    off = (off + 7) & ~7ULL;
    if (l1off & (q->cs - 1)) {
      logf_(c->r, "ERROR: snapshot %u L1 table is not cluster aligned\n", s);
      c->r->corruptions++;
      continue;
    }
    if (check_l1(c, l1off, l1size, 0, e) < 0) return -1;
  }
  if (q->nb_snapshots && inc_refs(c, start, off - start, e) < 0) return -1;
  return 0;
}

/* One pass. ondisk refcounts are read from the image as it is now. */
static int check_once(si_image *img, int fix, si_check_result *r, si_err *e) {
  qcow2_state *q = img->q;
  ck c;
  memset(&c, 0, sizeof c);
  c.img = img;
  c.q = q;
  c.r = r;
  c.fix = fix;
  c.file_clusters = (q->file_size + q->cs - 1) / q->cs;
  c.budget = (1ULL << 24) + q->file_size * 2;
  c.imrt_len = c.file_clusters + 1;
  c.imrt = calloc(c.imrt_len, 8);
  c.l2buf = malloc(q->cs);
  uint64_t *ondisk = NULL;
  uint8_t *blk = NULL;
  int ret = -1;
  if (!c.imrt || !c.l2buf) { si_set_err(e, SI_E_NOMEM, "out of memory"); goto out; }
  r->total_clusters = (img->size + q->cs - 1) / q->cs;

  if (inc_refs(&c, 0, q->cs, e) < 0) goto out;
  if (check_l1(&c, q->l1_offset, q->l1_size, 1, e) < 0) goto out;
  if (check_snapshots(&c, e) < 0) goto out;
  uint64_t rt_bytes = (uint64_t)q->rt_clusters * q->cs;
  if (inc_refs(&c, q->rt_offset, rt_bytes, e) < 0) goto out;
  uint64_t *rt = calloc(rt_bytes / 8 + 1, 8);
  if (!rt) { si_set_err(e, SI_E_NOMEM, "out of memory"); goto out; }
  if (rt_bytes && si_pread_full(img->fd, rt, rt_bytes, q->rt_offset, e, "refcount table") < 0) { free(rt); goto out; }
  uint64_t nrt = rt_bytes / 8;
  for (uint64_t b = 0; b < nrt; b++) rt[b] = be64((uint8_t *)&rt[b]);
  /* refcount blocks */
  for (uint64_t b = 0; b < nrt; b++) {
    uint64_t off = rt[b] & REFT_OFFSET_MASK;
    if (!off) continue;
    if (off & (q->cs - 1)) {
      logf_(r, "ERROR refcount block %llu is not cluster aligned; refcount table entry corrupted\n", (unsigned long long)b);
      r->corruptions++;
      rt[b] = 0;
      continue;
    }
    uint64_t cl = off >> q->cluster_bits;
    if (cl >= c.file_clusters) {
      logf_(r, "ERROR refcount block %llu is outside image\n", (unsigned long long)b);
      r->corruptions++;
      rt[b] = 0;
      continue;
    }
    if (inc_refs(&c, off, q->cs, e) < 0) { free(rt); goto out; }
    if (c.imrt[cl] != 1) {
      logf_(r, "ERROR refcount block %llu refcount=%llu\n", (unsigned long long)b, (unsigned long long)c.imrt[cl]);
      r->corruptions++;
    }
  }
  /* on-disk refcounts */
  uint64_t n = c.imrt_len > c.file_clusters ? c.imrt_len : c.file_clusters;
  ondisk = calloc(n + 1, 8);
  blk = malloc(q->cs);
  if (!ondisk || !blk) { free(rt); si_set_err(e, SI_E_NOMEM, "out of memory"); goto out; }
  uint64_t epb = q->cs * 8 / (1u << q->refcount_order);
  for (uint64_t b = 0; b < nrt && b * epb < n; b++) {
    uint64_t off = rt[b] & REFT_OFFSET_MASK;
    if (!off) continue;
    if (si_pread_full(img->fd, blk, q->cs, off, e, "refcount block") < 0) { free(rt); goto out; }
    for (uint64_t i = 0; i < epb && b * epb + i < n; i++) ondisk[b * epb + i] = qcow2_rc_entry(blk, q->refcount_order, i);
  }
  uint64_t highest = 0;
  int have_highest = 0;
  for (uint64_t i = 0; i < n; i++) {
    uint64_t r1 = ondisk[i], r2 = i < c.imrt_len ? c.imrt[i] : 0;
    if (r1 || r2) { highest = i; have_highest = 1; }
    if (r1 == r2) continue;
    int leak = r1 > r2;
    int fixing = leak ? (fix & SI_REPAIR_LEAKS) : ((fix & SI_REPAIR_ALL) == SI_REPAIR_ALL);
    logf_(r, "%s cluster %llu refcount=%llu reference=%llu\n", fixing ? "Repairing" : leak ? "Leaked" : "ERROR",
          (unsigned long long)i, (unsigned long long)r1, (unsigned long long)r2);
    if (leak) r->leaks++;
    else r->corruptions++;
  }
  /* COPIED flags (active tables) against on-disk refcounts. */
  if (q->l1_size && (uint64_t)q->l1_size * 8 <= q->file_size - (q->l1_offset < q->file_size ? q->l1_offset : q->file_size)) {
    uint8_t *l1 = si_malloc((size_t)q->l1_size * 8, e);
    if (!l1) { free(rt); goto out; }
    if (si_pread_full(img->fd, l1, (size_t)q->l1_size * 8, q->l1_offset, e, "L1 table") < 0) { free(l1); free(rt); goto out; }
    for (uint32_t i = 0; i < q->l1_size; i++) {
      uint64_t ent = be64(l1 + i * 8), l2off = ent & L1E_OFFSET_MASK;
      if (!l2off) continue;
      uint64_t cl = l2off >> q->cluster_bits, rc = cl < n ? ondisk[cl] : 0;
      if ((rc == 1) != !!(ent & OFLAG_COPIED)) {
        logf_(r, "ERROR OFLAG_COPIED L2 cluster: l1_index=%u l1_entry=%llx refcount=%llu\n", i, (unsigned long long)ent,
              (unsigned long long)rc);
        r->corruptions++;
      }
      if (l2off >= q->file_size || q->cs > q->file_size - l2off) continue;
      uint64_t *t = (uint64_t *)c.l2buf;
      if (si_pread_full(img->fd, t, q->cs, l2off, e, "L2 table") < 0) { free(l1); free(rt); goto out; }
      for (uint32_t j = 0; j < q->l2_entries; j++) {
        uint64_t le = be64((uint8_t *)&t[j]), h = le & L2E_OFFSET_MASK;
        if ((le & OFLAG_COMPRESSED) || !h || q->has_data_file) continue;
        uint64_t dc = h >> q->cluster_bits, drc = dc < n ? ondisk[dc] : 0;
        if ((drc == 1) != !!(le & OFLAG_COPIED)) {
          logf_(r, "ERROR OFLAG_COPIED data cluster: l2_entry=%llx refcount=%llu\n", (unsigned long long)le,
                (unsigned long long)drc);
          r->corruptions++;
        }
      }
    }
    free(l1);
  }
  r->image_end_offset = have_highest ? (highest + 1) << q->cluster_bits : 0;

  if (fix && (r->leaks || r->corruptions ||
              ((fix & SI_REPAIR_ALL) == SI_REPAIR_ALL && (q->incompat & (INCOMPAT_DIRTY | INCOMPAT_CORRUPT))))) {
    /* Repair: new refcounts in the writer's array, flags fixed in place. */
    int all = (fix & SI_REPAIR_ALL) == SI_REPAIR_ALL;
    if (c.beyond) {
      logf_(r, "ERROR: metadata references clusters beyond the end of the file; not repairing\n");
      r->check_errors++;
      free(rt);
      ret = 0;
      goto out;
    }
    free(q->rc);
    q->rc = NULL;
    q->rc_cap = q->rc_len = 0;
    free(q->rt);
    q->rt = rt;
    rt = NULL;
    for (uint64_t i = 0; i < n; i++) {
      uint64_t r1 = ondisk[i], r2 = i < c.imrt_len ? c.imrt[i] : 0;
      uint64_t v = all ? r2 : (r1 > r2 ? r2 : r1);
      if (v && qcow2_rc_set(q, i, v, e) < 0) goto out;
    }
    q->alloc_end = q->rc_len > c.file_clusters ? q->rc_len : c.file_clusters;
    if (all) {
      uint8_t *l1 = si_malloc((size_t)q->l1_size * 8 + 8, e);
      if (!l1) goto out;
      if (si_pread_full(img->fd, l1, (size_t)q->l1_size * 8, q->l1_offset, e, "L1 table") < 0) { free(l1); goto out; }
      for (uint32_t i = 0; i < q->l1_size; i++) {
        uint64_t ent = be64(l1 + i * 8), l2off = ent & L1E_OFFSET_MASK;
        if (!l2off) continue;
        if ((l2off & (q->cs - 1)) || l2off >= q->file_size) { q->l1[i] = 0; q->l1_dirty = 1; continue; }
        uint64_t want = (l2off >> q->cluster_bits) < c.imrt_len && c.imrt[l2off >> q->cluster_bits] == 1;
        uint64_t fixed = want ? (ent | OFLAG_COPIED) : (ent & ~OFLAG_COPIED);
        if (fixed != q->l1[i]) { q->l1[i] = fixed; q->l1_dirty = 1; }
        uint8_t *t = c.l2buf;
        if (si_pread_full(img->fd, t, q->cs, l2off, e, "L2 table") < 0) { free(l1); goto out; }
        int dirty = 0;
        for (uint32_t j = 0; j < q->l2_entries; j++) {
          uint64_t le = be64(t + j * 8), nle = le, h = le & L2E_OFFSET_MASK;
          if (le & OFLAG_COMPRESSED) nle = le & ~OFLAG_COPIED;
          else if (h && (h & (q->cs - 1))) nle = q->version >= 3 ? OFLAG_ZERO : 0;
          else if (h) {
            uint64_t dc = h >> q->cluster_bits;
            nle = (dc < c.imrt_len && c.imrt[dc] == 1) ? (le | OFLAG_COPIED) : (le & ~OFLAG_COPIED);
          }
          if (nle != le) { put64(t + j * 8, nle); dirty = 1; }
        }
        if (dirty && si_pwrite_full(img->fd, t, q->cs, l2off, e, "L2 table") < 0) { free(l1); goto out; }
      }
      free(l1);
      if (q->version >= 3 && (q->incompat & (INCOMPAT_DIRTY | INCOMPAT_CORRUPT))) {
        q->incompat &= ~(INCOMPAT_DIRTY | INCOMPAT_CORRUPT);
        q->header_dirty = 1;
      }
    }
    if (q->rt_clusters == 0 || (q->rt_offset & (q->cs - 1)) || q->rt_offset >= q->file_size ||
        rt_bytes > q->file_size - q->rt_offset) {
      /* No usable table: the flush allocates a new one at the end. */
      free(q->rt);
      q->rt = calloc(1, 8);
      q->rt_clusters = 0;
      q->header_dirty = 1;
      if (!q->rt) { si_set_err(e, SI_E_NOMEM, "out of memory"); goto out; }
    }
    qcow2_rewrite_all_refcounts(img, e);
    if (qcow2_flush(img, e) < 0) goto out;
    r->repaired = 1;
  }
  free(rt);
  ret = 0;
out:
  free(c.imrt);
  free(c.l2buf);
  free(ondisk);
  free(blk);
  return ret;
}

int si_check(const char *path, int repair, si_check_result *r, si_err *e) {
  memset(r, 0, sizeof *r);
  int flags = SI_OPEN_CHECK | SI_OPEN_NO_BACKING | (repair ? SI_OPEN_RDWR : 0);
  si_image *img = si_open(path, SI_FMT_PROBE, flags, e);
  if (!img) return -1;
  if (img->fmt != SI_FMT_QCOW2) {
    si_close(img, NULL);
    return si_set_err(e, SI_E_UNSUPPORTED, "This image format does not support checks");
  }
  int ret = check_once(img, repair, r, e);
  if (ret == 0 && r->repaired) {
    int64_t c0 = r->corruptions, l0 = r->leaks;
    char *log = r->log;
    size_t ll = r->log_len, lc = r->log_cap;
    si_close(img, NULL);
    img = si_open(path, SI_FMT_QCOW2, SI_OPEN_CHECK | SI_OPEN_NO_BACKING, e);
    if (!img) { free(log); r->log = NULL; r->log_len = r->log_cap = 0; return -1; }
    memset(r, 0, sizeof *r);
    r->log = log;
    r->log_len = ll;
    r->log_cap = lc;
    ret = check_once(img, 0, r, e);
    r->repaired = 1;
    r->corruptions_fixed = c0 - r->corruptions;
    r->leaks_fixed = l0 - r->leaks;
    if (r->corruptions_fixed < 0) r->corruptions_fixed = 0;
    if (r->leaks_fixed < 0) r->leaks_fixed = 0;
  }
  si_close(img, NULL);
  if (ret < 0) si_check_free(r);
  return ret;
}

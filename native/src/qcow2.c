/* qcow2 reader and writer. Metadata access is serialised by q->lock; data
 * reads and writes happen outside it, so several threads can read at once. */
#include "qcow2_int.h"
#include <unistd.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <libgen.h>

#define CS(q) ((q)->cs)

static const char *feature_default_names[3][8] = {
    {"dirty bit", "corrupt bit", "external data file", "compression type", "extended L2 entries"},
    {"lazy refcounts"},
    {"bitmaps", "raw external data"}};

qcow2_state *qcow2_state_of(si_image *img) { return img->q; }
uint32_t qcow2_cluster_size(si_image *img) { return (uint32_t)img->q->cs; }
int qcow2_compression_type(si_image *img) { return img->q->compression_type; }
int qcow2_data_fd(si_image *img) { return img->q->data_fd >= 0 ? img->q->data_fd : img->fd; }

int qcow2_probe(const uint8_t *buf, size_t len) {
  return len >= 8 && be32(buf) == QCOW_MAGIC && (be32(buf + 4) == 2 || be32(buf + 4) == 3);
}

uint64_t qcow2_rc_entry(const uint8_t *block, uint32_t order, uint64_t i) {
  uint32_t bits = 1u << order;
  if (bits >= 8) {
    const uint8_t *p = block + i * (bits / 8);
    switch (bits) {
    case 8: return p[0];
    case 16: return be16(p);
    case 32: return be32(p);
    default: return be64(p);
    }
  }
  uint64_t bit = i * bits;
  return (block[bit / 8] >> (bit % 8)) & ((1u << bits) - 1);
}

static void rc_entry_put(uint8_t *block, uint32_t order, uint64_t i, uint64_t v) {
  uint32_t bits = 1u << order;
  if (bits >= 8) {
    uint8_t *p = block + i * (bits / 8);
    switch (bits) {
    case 8: p[0] = (uint8_t)v; break;
    case 16: put16(p, (uint16_t)v); break;
    case 32: put32(p, (uint32_t)v); break;
    default: put64(p, v); break;
    }
    return;
  }
  uint64_t bit = i * bits;
  uint8_t mask = (uint8_t)(((1u << bits) - 1) << (bit % 8));
  block[bit / 8] = (uint8_t)((block[bit / 8] & ~mask) | ((v << (bit % 8)) & mask));
}

static uint64_t rc_max(qcow2_state *q) {
  return q->refcount_order >= 6 ? UINT64_MAX : ((1ULL << (1u << q->refcount_order)) - 1);
}

/* ------------------------------------------------------------ header parsing */

/* qemu's limits (block/qcow2.h, qcow2_do_open): mirrored so that whatever the
 * engine opens, qemu opens too. */
#define QCOW_MAX_SNAPSHOTS 65536u
#define QCOW_SNAPSHOT_HDR 40u
#define QCOW_MAX_SNAPSHOT_EXTRA 1024u
#define QCOW_MAX_SNAPSHOTS_SIZE (64ULL << 20)
#define QCOW_MAX_BITMAPS 65535u
#define QCOW_MAX_BITMAP_DIR (64ULL << 20)
#define QCOW_MAX_BACKING_FMT 16u /* sizeof(bs->backing_format) */

static int parse_extensions(qcow2_state *q, const uint8_t *hdr, uint64_t start, uint64_t end, si_err *e) {
  uint64_t off = start;
  int seen_bf = 0, seen_ft = 0, seen_df = 0;
  while (off < end) {
    if (end - off < 8) return si_set_err(e, SI_E_CORRUPT, "header extension at %llu runs past the header area (ends at %llu)",
                                         (unsigned long long)off, (unsigned long long)end);
    uint32_t type = be32(hdr + off), len = be32(hdr + off + 4);
    off += 8;
    if (type == 0) return 0;
    if (len > end - off)
      return si_set_err(e, SI_E_CORRUPT, "header extension 0x%08x (length %u) runs past the header area", type, len);
    const uint8_t *d = hdr + off;
    switch (type) {
    case EXT_BACKING_FMT:
      if (seen_bf++) return si_set_err(e, SI_E_CORRUPT, "duplicate backing format header extension");
      if (len >= QCOW_MAX_BACKING_FMT) return si_set_err(e, SI_E_CORRUPT, "backing format name is too long: %u bytes (max %u)", len, QCOW_MAX_BACKING_FMT - 1);
      memcpy(q->backing_fmt, d, len);
      q->backing_fmt[len] = 0;
      q->has_backing_fmt = 1;
      break;
    case EXT_FEATURES:
      if (seen_ft++) return si_set_err(e, SI_E_CORRUPT, "duplicate feature name table");
      for (uint32_t i = 0; i + 48 <= len; i += 48) {
        uint8_t t = d[i], bit = d[i + 1];
        if (t < 3 && bit < 64) {
          memcpy(q->feature_names[t][bit], d + i + 2, 46);
          q->feature_names[t][bit][46] = 0;
        }
      }
      break;
    case EXT_DATA_FILE:
      if (seen_df++) return si_set_err(e, SI_E_CORRUPT, "duplicate external data file extension");
      if (len >= sizeof q->data_file) return si_set_err(e, SI_E_CORRUPT, "external data file name is too long");
      memcpy(q->data_file, d, len);
      q->data_file[len] = 0;
      q->has_data_file = 1;
      break;
    default: {
      if (type == EXT_CRYPTO && len != 16)
        return si_set_err(e, SI_E_CORRUPT, "crypto header extension has length %u, expected 16", len);
      if (type == EXT_BITMAPS) {
        if (len != 24) return si_set_err(e, SI_E_CORRUPT, "bitmaps extension has length %u, expected 24", len);
        if (q->autoclear & 1) { /* qemu ignores the extension when the bitmaps bit is clear */
          uint32_t nb = be32(d), reserved = be32(d + 4);
          uint64_t dsize = be64(d + 8), doff = be64(d + 16);
          if (reserved) return si_set_err(e, SI_E_CORRUPT, "bitmaps extension: reserved field is not zero");
          if (nb == 0 || nb > QCOW_MAX_BITMAPS) return si_set_err(e, SI_E_CORRUPT, "bitmaps extension: %u bitmaps (must be 1 to %u)", nb, QCOW_MAX_BITMAPS);
          if (doff & (q->cs - 1)) return si_set_err(e, SI_E_CORRUPT, "bitmaps extension: directory offset 0x%llx is not cluster-aligned", (unsigned long long)doff);
          if (dsize == 0) return si_set_err(e, SI_E_CORRUPT, "bitmaps extension: bitmap directory size is zero");
          if (doff < q->cs) return si_set_err(e, SI_E_CORRUPT, "bitmaps extension: bitmap directory (offset %llu) overlaps the header", (unsigned long long)doff);
          if (dsize > QCOW_MAX_BITMAP_DIR) return si_set_err(e, SI_E_CORRUPT, "bitmaps extension: directory size %llu exceeds %llu", (unsigned long long)dsize, (unsigned long long)QCOW_MAX_BITMAP_DIR);
          if (doff > q->file_size || dsize > q->file_size - doff)
            return si_set_err(e, SI_E_CORRUPT, "bitmap directory (offset %llu, %llu bytes) lies beyond the end of the file (%llu bytes)",
                              (unsigned long long)doff, (unsigned long long)dsize, (unsigned long long)q->file_size);
        }
      }
      /* Unknown (and bitmaps/crypto): keep to write back unchanged. */
      if (q->n_exts >= 64) return si_set_err(e, SI_E_CORRUPT, "too many header extensions");
      struct qext *nx = realloc(q->exts, sizeof *nx * (size_t)(q->n_exts + 1));
      if (!nx) return si_set_err(e, SI_E_NOMEM, "out of memory");
      q->exts = nx;
      nx[q->n_exts].type = type;
      nx[q->n_exts].len = len;
      nx[q->n_exts].data = si_malloc(len ? len : 1, e);
      if (!nx[q->n_exts].data) return -1;
      memcpy(nx[q->n_exts].data, d, len);
      q->n_exts++;
    }
    }
    uint64_t padded = ((uint64_t)len + 7) & ~7ULL;
    if (padded > end - off) return 0;
    off += padded;
  }
  return 0;
}

static void feature_name(qcow2_state *q, int type, int bit, char *out, size_t cap) {
  if (q->feature_names[type][bit][0]) snprintf(out, cap, "%s", q->feature_names[type][bit]);
  else if (bit < 8 && feature_default_names[type][bit]) snprintf(out, cap, "%s", feature_default_names[type][bit]);
  else snprintf(out, cap, "Unknown incompatible feature: %llx", 1ULL << bit);
}

/* A table of `entries` entries of `entry_len` bytes at `off` (qcow2_validate_table,
 * plus: it lies inside the file). */
static int check_table(qcow2_state *q, const char *what, uint64_t off, uint64_t entries, uint32_t entry_len,
                       uint64_t max_bytes, const char *max_note, int in_file, si_err *e) {
  if (entries > max_bytes / entry_len)
    return si_set_err(e, SI_E_CORRUPT, "%s too large: %llu entries (qemu's maximum is %llu, %s)", what,
                      (unsigned long long)entries, (unsigned long long)(max_bytes / entry_len), max_note);
  uint64_t bytes = entries * entry_len;
  if (off & (q->cs - 1))
    return si_set_err(e, SI_E_CORRUPT, "%s offset 0x%llx is not cluster-aligned", what, (unsigned long long)off);
  if (off > (uint64_t)INT64_MAX - bytes)
    return si_set_err(e, SI_E_CORRUPT, "%s offset 0x%llx is invalid (past 2^63)", what, (unsigned long long)off);
  if (in_file && bytes && (off > q->file_size || bytes > q->file_size - off))
    return si_set_err(e, SI_E_CORRUPT, "%s lies beyond the end of the file: offset %llu, %llu bytes, the file has %llu", what,
                      (unsigned long long)off, (unsigned long long)bytes, (unsigned long long)q->file_size);
  return 0;
}

/* The snapshot table: every entry, its id and name and its L1 table inside the file
 * (qcow2_read_snapshots and qcow2_check_read_snapshot_table). */
static int check_snapshot_table(qcow2_state *q, qcow2_read_fn rd, void *ctx, uint64_t *bytes, si_err *e) {
  uint64_t off = q->snapshots_offset;
  for (uint32_t s = 0; s < q->nb_snapshots; s++) {
    uint8_t h[QCOW_SNAPSHOT_HDR];
    if (off > q->file_size || QCOW_SNAPSHOT_HDR > q->file_size - off || rd(ctx, off, sizeof h, h) < 0)
      return si_set_err(e, SI_E_CORRUPT, "snapshot table entry %u (offset %llu) lies beyond the end of the file (%llu bytes)", s,
                        (unsigned long long)off, (unsigned long long)q->file_size);
    uint64_t l1off = be64(h);
    uint32_t l1size = be32(h + 8), extra = be32(h + 36);
    uint16_t idlen = be16(h + 12), namelen = be16(h + 14);
    if (extra > QCOW_MAX_SNAPSHOT_EXTRA)
      return si_set_err(e, SI_E_CORRUPT, "snapshot %u has %u bytes of extra data (qemu's maximum is %u)", s, extra, QCOW_MAX_SNAPSHOT_EXTRA);
    if (q->version >= 3 && extra < 16)
      return si_set_err(e, SI_E_CORRUPT, "snapshot %u has %u bytes of extra data (version 3 needs at least 16)", s, extra);
    off += QCOW_SNAPSHOT_HDR + (uint64_t)extra + idlen + namelen;
    if (off - q->snapshots_offset > QCOW_MAX_SNAPSHOTS_SIZE)
      return si_set_err(e, SI_E_CORRUPT, "snapshot table exceeds qemu's size limit (64 MiB)");
    int past = off > q->file_size;
    off = (off + 7) & ~7ULL;
    if (past)
      return si_set_err(e, SI_E_CORRUPT, "snapshot table entry %u runs beyond the end of the file (%llu bytes)", s, (unsigned long long)q->file_size);
    char what[48];
    snprintf(what, sizeof what, "snapshot %u L1 table", s);
    if (check_table(q, what, l1off, l1size, 8, MAX_L1_BYTES, "32 MiB", 1, e) < 0) return -1;
    if (l1size && l1off < q->cs) return si_set_err(e, SI_E_CORRUPT, "%s (offset %llu) overlaps the header", what, (unsigned long long)l1off);
  }
  *bytes = off - q->snapshots_offset;
  return 0;
}

int qcow2_parse_header(qcow2_state *q, uint64_t *vsize, qcow2_read_fn rd, void *ctx, int flags, si_err *e) {
  uint8_t h[112] = {0};
  uint64_t fsz = q->file_size;
  if (fsz < 8 || rd(ctx, 0, 8, h) < 0)
    return si_set_err(e, SI_E_CORRUPT, "qcow2 header too short: %llu bytes, need 72", (unsigned long long)fsz);
  if (be32(h) != QCOW_MAGIC) return si_set_err(e, SI_E_CORRUPT, "not a qcow2 image (bad magic)");
  q->version = be32(h + 4);
  if (q->version != 2 && q->version != 3) return si_set_err(e, SI_E_UNSUPPORTED, "unsupported qcow2 version %u", q->version);
  uint32_t need = q->version == 2 ? 72 : 104;
  if (fsz < need)
    return si_set_err(e, SI_E_CORRUPT, "qcow2 header too short: %llu bytes, need %u", (unsigned long long)fsz, need);
  if (rd(ctx, 0, fsz < sizeof h ? (size_t)fsz : sizeof h, h) < 0) return si_set_err(e, SI_E_IO, "could not read the qcow2 header");
  uint64_t bf_off = be64(h + 8);
  uint32_t bf_size = be32(h + 16);
  q->cluster_bits = be32(h + 20);
  if (q->cluster_bits < 9 || q->cluster_bits > 21)
    return si_set_err(e, SI_E_CORRUPT, "cluster size 2^%u is out of range (qemu: 2^9 to 2^21)", q->cluster_bits);
  q->cs = 1ULL << q->cluster_bits;
  q->l2_entries = (uint32_t)(q->cs / 8);
  *vsize = be64(h + 24);
  q->crypt_method = be32(h + 32);
  q->l1_size = be32(h + 36);
  q->l1_offset = be64(h + 40);
  q->rt_offset = be64(h + 48);
  q->rt_clusters = be32(h + 56);
  q->nb_snapshots = be32(h + 60);
  q->snapshots_offset = be64(h + 64);
  if (q->version == 3) {
    q->incompat = be64(h + 72);
    q->compat = be64(h + 80);
    q->autoclear = be64(h + 88);
    q->refcount_order = be32(h + 96);
    q->header_length = be32(h + 100);
    if (q->header_length < 104)
      return si_set_err(e, SI_E_CORRUPT, "qcow2 header too short: header_length %u, need at least 104", q->header_length);
    if (q->header_length & 7)
      return si_set_err(e, SI_E_CORRUPT, "header_length %u is not a multiple of 8", q->header_length);
    if (q->header_length > q->cs)
      return si_set_err(e, SI_E_CORRUPT, "qcow2 header exceeds cluster size: header_length %u, cluster size %llu", q->header_length,
                        (unsigned long long)q->cs);
    if (q->header_length > fsz)
      return si_set_err(e, SI_E_CORRUPT, "qcow2 header too short: %llu bytes, header_length says %u", (unsigned long long)fsz, q->header_length);
  } else {
    q->refcount_order = 4;
    q->header_length = 72;
  }
  if (q->refcount_order > 6)
    return si_set_err(e, SI_E_CORRUPT, "refcount order %u is out of range (qemu: 0 to 6, at most 64-bit refcounts)", q->refcount_order);

  /* Header cluster (the extension area); what lies beyond the end of the file reads as zeros, as in qemu. */
  uint64_t hlen = q->cs < fsz ? q->cs : fsz;
  uint8_t *hdr = si_calloc(q->cs, e);
  if (!hdr) return -1;
  if (rd(ctx, 0, hlen, hdr) < 0) { free(hdr); return si_set_err(e, SI_E_IO, "could not read the qcow2 header cluster"); }
  if (q->header_length > 104) {
    q->compression_type = hdr[104];
    for (uint32_t i = 105; i < q->header_length && i < 112; i++)
      if (hdr[i]) { free(hdr); return si_set_err(e, SI_E_CORRUPT, "non-zero header padding at byte %u", i); }
  }
  if (bf_off) {
    if (bf_off > q->cs) {
      free(hdr);
      return si_set_err(e, SI_E_CORRUPT, "invalid backing file offset %llu (past the first cluster, %llu bytes)",
                        (unsigned long long)bf_off, (unsigned long long)q->cs);
    }
    if (bf_size > 1023 || bf_size > q->cs - bf_off) {
      free(hdr);
      return si_set_err(e, SI_E_CORRUPT, "backing file name too long: %u bytes at offset %llu (qemu: at most 1023, inside cluster 0)",
                        bf_size, (unsigned long long)bf_off);
    }
    if (bf_off < q->header_length) { free(hdr); return si_set_err(e, SI_E_CORRUPT, "backing file name (offset %llu) overlaps the header", (unsigned long long)bf_off); }
    if (bf_off + bf_size > fsz) {
      free(hdr);
      return si_set_err(e, SI_E_CORRUPT, "backing file name (offset %llu, %u bytes) lies beyond the end of the file (%llu bytes)",
                        (unsigned long long)bf_off, bf_size, (unsigned long long)fsz);
    }
    memcpy(q->backing, hdr + bf_off, bf_size);
    q->backing[bf_size] = 0;
    if (strlen(q->backing) != bf_size) { free(hdr); return si_set_err(e, SI_E_CORRUPT, "backing file name contains NUL"); }
    q->has_backing = bf_size > 0;
  }
  uint64_t ext_end = bf_off ? bf_off : q->cs;
  int r = parse_extensions(q, hdr, q->header_length, ext_end, e);
  free(hdr);
  if (r < 0) return -1;

  /* Features. */
  uint64_t unknown = q->incompat & ~INCOMPAT_KNOWN;
  if (unknown) {
    char names[400] = "", one[64];
    for (int b = 0; b < 64; b++)
      if (unknown & (1ULL << b)) {
        feature_name(q, 0, b, one, sizeof one);
        if (strlen(names) + strlen(one) + 3 < sizeof names) { if (names[0]) strcat(names, ", "); strcat(names, one); }
      }
    return si_set_err(e, SI_E_UNSUPPORTED, "unsupported qcow2 incompatible features: %s", names);
  }
  if (q->incompat & INCOMPAT_EXTL2) return si_set_err(e, SI_E_UNSUPPORTED, "extended L2 entries (subclusters) are not supported");
  if (q->crypt_method > 2) return si_set_err(e, SI_E_CORRUPT, "unsupported encryption method %u", q->crypt_method);
  if (q->crypt_method) return si_set_err(e, SI_E_UNSUPPORTED, "encrypted qcow2 images are not supported");
  for (int i = 0; i < q->n_exts; i++)
    if (q->exts[i].type == EXT_CRYPTO) return si_set_err(e, SI_E_CORRUPT, "crypto header extension without LUKS encryption");
  if (q->compression_type > 1) return si_set_err(e, SI_E_UNSUPPORTED, "unknown compression type %d", q->compression_type);
  if (q->compression_type != 0 && !(q->incompat & INCOMPAT_COMPRESSION))
    return si_set_err(e, SI_E_CORRUPT, "compression type set but the compression type feature bit is not");
  if (q->compression_type == 0 && (q->incompat & INCOMPAT_COMPRESSION))
    return si_set_err(e, SI_E_CORRUPT, "compression type feature bit set with zlib compression");
  if (q->incompat & INCOMPAT_DATA_FILE) {
    if (!q->has_data_file) return si_set_err(e, SI_E_CORRUPT, "external data file bit set but no file name");
  } else {
    if (q->has_data_file) return si_set_err(e, SI_E_CORRUPT, "data file extension without the external data file bit");
    /* qemu: "data-file-raw requires a data file" (a read/write open refuses it; check opens read/write) */
    if (q->autoclear & 2) return si_set_err(e, SI_E_CORRUPT, "raw external data bit set without an external data file");
  }

  /* Snapshot table (qcow2_validate_table with QCOW_MAX_SNAPSHOTS entries of 40 bytes, then each entry). */
  if (q->nb_snapshots > QCOW_MAX_SNAPSHOTS)
    return si_set_err(e, SI_E_CORRUPT, "snapshot table too large: %u snapshots (qemu's maximum is %u)", q->nb_snapshots, QCOW_MAX_SNAPSHOTS);
  if (check_table(q, "snapshot table", q->snapshots_offset, q->nb_snapshots, QCOW_SNAPSHOT_HDR,
                  (uint64_t)QCOW_SNAPSHOT_HDR * QCOW_MAX_SNAPSHOTS, "65536 snapshots", 1, e) < 0) return -1;
  uint64_t sn_bytes = (uint64_t)q->nb_snapshots * QCOW_SNAPSHOT_HDR;
  /* check (qemu: BDRV_O_CHECK) reports a bad snapshot table instead of refusing to open */
  if (q->nb_snapshots && !(flags & SI_OPEN_CHECK) && check_snapshot_table(q, rd, ctx, &sn_bytes, e) < 0) return -1;

  /* Size and L1: l1_size fits the virtual size and qemu's 32 MiB. */
  uint64_t l2_cov = q->cs * q->l2_entries;
  uint64_t l1_needed = *vsize / l2_cov + (*vsize % l2_cov != 0);
  if (q->l1_size > MAX_L1_BYTES / 8)
    return si_set_err(e, SI_E_CORRUPT, "L1 table too large: %u entries (qemu's maximum is %u, 32 MiB)", q->l1_size, MAX_L1_BYTES / 8);
  if (l1_needed > INT32_MAX || *vsize > (1ULL << 62))
    return si_set_err(e, SI_E_CORRUPT, "image is too big: virtual size %llu", (unsigned long long)*vsize);
  if (l1_needed > q->l1_size)
    return si_set_err(e, SI_E_CORRUPT, "L1 table is too small: %u entries, virtual size %llu needs %llu", q->l1_size,
                      (unsigned long long)*vsize, (unsigned long long)l1_needed);
  if (check_table(q, "L1 table", q->l1_offset, q->l1_size, 8, MAX_L1_BYTES, "32 MiB", 1, e) < 0) return -1;

  /* Refcount table. */
  if (q->rt_clusters == 0 && !(flags & SI_OPEN_CHECK))
    return si_set_err(e, SI_E_CORRUPT, "image does not contain a reference count table (refcount_table_clusters is 0)");
  if (check_table(q, "refcount table", q->rt_offset, (uint64_t)q->rt_clusters << (q->cluster_bits - 3), 8, MAX_RT_BYTES, "8 MiB",
                  !(flags & SI_OPEN_CHECK), e) < 0) return -1;
  if (flags & SI_OPEN_CHECK) return 0; /* check reports overlaps as corruptions */

  /* No table overlaps the header or another (qemu's metadata overlap checks:
   * main header, active L1, refcount table, snapshot table). */
  struct { const char *what; uint64_t off, len; } t[4] = {
      {"header", 0, q->cs},
      {"L1 table", q->l1_offset, (uint64_t)q->l1_size * 8},
      {"refcount table", q->rt_offset, (uint64_t)q->rt_clusters * q->cs},
      {"snapshot table", q->snapshots_offset, q->nb_snapshots ? sn_bytes : 0}};
  for (int i = 0; i < 4; i++)
    for (int j = i + 1; j < 4; j++)
      if (t[i].len && t[j].len && t[i].off < t[j].off + t[j].len && t[j].off < t[i].off + t[i].len)
        return si_set_err(e, SI_E_CORRUPT, "%s (offset %llu) overlaps the %s (offset %llu)", t[j].what, (unsigned long long)t[j].off,
                          t[i].what, (unsigned long long)t[i].off);
  return 0;
}

int si_image_set_backing_path(const char *overlay_path, const char *backing, char *out, size_t cap) {
  if (backing[0] == '/') {
    if (strlen(backing) >= cap) return -1;
    strcpy(out, backing);
    return 0;
  }
  char tmp[4096];
  if (strlen(overlay_path) >= sizeof tmp) return -1;
  strcpy(tmp, overlay_path);
  char *dir = dirname(tmp);
  int n = snprintf(out, cap, "%s/%s", dir, backing);
  return n < 0 || (size_t)n >= cap ? -1 : 0;
}

static int fd_read(void *ctx, uint64_t off, size_t len, uint8_t *out) {
  si_err e = {0, ""};
  return si_pread_exact(*(int *)ctx, out, len, off, &e, "qcow2 header");
}

int qcow2_open(si_image *img, si_err *e) {
  qcow2_state *q = si_calloc(sizeof *q, e);
  if (!q) return -1;
  img->q = q;
  q->data_fd = -1;
  pthread_mutex_init(&q->lock, NULL);
  struct stat st;
  if (fstat(img->fd, &st) < 0) return si_errno_err(e, errno, "stat %s", img->path);
  q->file_size = (uint64_t)st.st_size;
  if (qcow2_parse_header(q, &img->size, fd_read, &img->fd, img->flags, e) < 0) {
    char m[sizeof e->msg];
    snprintf(m, sizeof m, "%.200s: %.300s", img->path, e->msg);
    memcpy(e->msg, m, sizeof m);
    return -1;
  }

  /* Policy: what this open may do with a valid header. */
  if ((q->incompat & INCOMPAT_CORRUPT) && img->writable && !(img->flags & SI_OPEN_CHECK))
    return si_set_err(e, SI_E_CORRUPT, "%s: image is marked corrupt; cannot be opened read/write (run check -r all)", img->path);
  if ((q->incompat & INCOMPAT_DIRTY) && img->writable && !(img->flags & SI_OPEN_CHECK))
    return si_set_err(e, SI_E_PRECONDITION, "%s: image has the dirty bit set; repair it with check -r all first", img->path);
  if (q->incompat & INCOMPAT_DATA_FILE) {
    if (!(img->flags & (SI_OPEN_ALLOW_DATA_FILE | SI_OPEN_CHECK)))
      return si_set_err(e, SI_E_UNSUPPORTED, "%s: image uses an external data file%s%s; refusing (not explicitly allowed)",
                        img->path, q->has_data_file ? " " : "", q->has_data_file ? q->data_file : "");
    if (img->flags & SI_OPEN_CHECK) goto data_done; /* check never reads guest data */
    if (img->writable)
      return si_set_err(e, SI_E_UNSUPPORTED, "%s: writing images with an external data file is not supported", img->path);
    char p[4096];
    if (si_image_set_backing_path(img->path, q->data_file, p, sizeof p) < 0)
      return si_set_err(e, SI_E_INVALID, "data file path too long");
    q->data_fd = open(p, (img->writable ? O_RDWR : O_RDONLY) | O_CLOEXEC);
    if (q->data_fd < 0) return si_errno_err(e, errno, "opening external data file %s", p);
  data_done:;
  }
  if (q->nb_snapshots && img->writable && !(img->flags & SI_OPEN_CHECK))
    return si_set_err(e, SI_E_UNSUPPORTED, "%s: writing images with internal snapshots is not supported", img->path);

  q->l1 = si_calloc((size_t)q->l1_size * 8 + 8, e);
  if (!q->l1) return -1;
  if (q->l1_size) {
    if (si_pread_exact(img->fd, q->l1, (size_t)q->l1_size * 8, q->l1_offset, e, "L1 table") < 0) return -1;
    for (uint32_t i = 0; i < q->l1_size; i++) q->l1[i] = be64((uint8_t *)&q->l1[i]);
  }
  /* L2 cache: bounded to ~32 MiB whatever the cluster size. */
  uint64_t n = (32ULL << 20) / q->cs;
  if (n < 16) n = 16;
  if (n > 1024) n = 1024;
  q->nslots = (int)n;
  q->slots = si_calloc(sizeof(struct l2slot) * n, e);
  if (!q->slots) return -1;
  for (int i = 0; i < q->nslots; i++) q->slots[i].idx = -1;

  if (img->writable) {
    if (qcow2_load_refcounts(img, !(img->flags & SI_OPEN_CHECK), e) < 0) return -1;
  }
  return 0;
}

void qcow2_header_free(qcow2_state *q) {
  for (int i = 0; i < q->n_exts; i++) free(q->exts[i].data);
  free(q->exts);
  q->exts = NULL;
  q->n_exts = 0;
}

void qcow2_free(si_image *img) {
  qcow2_state *q = img->q;
  if (!q) return;
  for (int i = 0; i < q->nslots; i++) free(q->slots[i].t);
  free(q->slots);
  free(q->l1);
  free(q->rt);
  free(q->rc);
  qcow2_header_free(q);
  if (q->data_fd >= 0) close(q->data_fd);
  pthread_mutex_destroy(&q->lock);
  free(q);
  img->q = NULL;
}

/* ------------------------------------------------------------ refcounts */

static int rc_grow(qcow2_state *q, uint64_t need, si_err *e) {
  if (need <= q->rc_cap) return 0;
  uint64_t cap = q->rc_cap ? q->rc_cap : 1024;
  while (cap < need) cap *= 2;
  uint64_t *n = realloc(q->rc, cap * 8);
  if (!n) return si_set_err(e, SI_E_NOMEM, "out of memory for refcounts");
  memset(n + q->rc_cap, 0, (cap - q->rc_cap) * 8);
  q->rc = n;
  q->rc_cap = cap;
  return 0;
}

int qcow2_rc_set(qcow2_state *q, uint64_t cl, uint64_t v, si_err *e) {
  if (v > rc_max(q)) return si_set_err(e, SI_E_UNSUPPORTED, "refcount overflow on cluster %llu", (unsigned long long)cl);
  if (rc_grow(q, cl + 1, e) < 0) return -1;
  q->rc[cl] = v;
  if (cl + 1 > q->rc_len) q->rc_len = cl + 1;
  if (q->rc_dirty_hi <= q->rc_dirty_lo) { q->rc_dirty_lo = cl; q->rc_dirty_hi = cl + 1; }
  else {
    if (cl < q->rc_dirty_lo) q->rc_dirty_lo = cl;
    if (cl + 1 > q->rc_dirty_hi) q->rc_dirty_hi = cl + 1;
  }
  return 0;
}

static uint64_t rc_get(qcow2_state *q, uint64_t cl) { return cl < q->rc_len ? q->rc[cl] : 0; }

int qcow2_load_refcounts(si_image *img, int strict, si_err *e) {
  qcow2_state *q = img->q;
  uint64_t rt_bytes = (uint64_t)q->rt_clusters * q->cs;
  free(q->rt);
  q->rt = si_calloc(rt_bytes + 8, e);
  if (!q->rt) return -1;
  if (rt_bytes) {
    if (q->rt_offset > q->file_size || rt_bytes > q->file_size - q->rt_offset) {
      if (strict) return si_set_err(e, SI_E_CORRUPT, "%s: refcount table lies beyond the end of the file", img->path);
    }
    if (si_pread_full(img->fd, q->rt, rt_bytes, q->rt_offset, e, "refcount table") < 0) return -1;
    for (uint64_t i = 0; i < rt_bytes / 8; i++) q->rt[i] = be64((uint8_t *)&q->rt[i]);
  }
  uint64_t file_clusters = (q->file_size + q->cs - 1) / q->cs;
  if (rc_grow(q, file_clusters + 16, e) < 0) return -1;
  q->rc_len = 0;
  uint64_t epb = q->cs * 8 / (1u << q->refcount_order);
  uint8_t *blk = si_malloc(q->cs, e);
  if (!blk) return -1;
  for (uint64_t b = 0; b < rt_bytes / 8; b++) {
    uint64_t ent = q->rt[b], off = ent & REFT_OFFSET_MASK;
    if (!off) continue;
    if (strict && ((ent & 0x1ff) || (off & (q->cs - 1)) || off >= q->file_size)) {
      free(blk);
      return si_set_err(e, SI_E_CORRUPT, "%s: refcount block %llu at 0x%llx is invalid", img->path,
                        (unsigned long long)b, (unsigned long long)off);
    }
    if ((off & (q->cs - 1)) || off >= q->file_size) continue;
    if (si_pread_full(img->fd, blk, q->cs, off, e, "refcount block") < 0) { free(blk); return -1; }
    for (uint64_t i = 0; i < epb; i++) {
      uint64_t v = qcow2_rc_entry(blk, q->refcount_order, i);
      if (!v) continue;
      uint64_t cl = b * epb + i;
      if (cl >= file_clusters + 65536) {
        if (strict) { free(blk); return si_set_err(e, SI_E_CORRUPT, "%s: refcounts for clusters far beyond the end of the file", img->path); }
        continue;
      }
      if (rc_grow(q, cl + 1, e) < 0) { free(blk); return -1; }
      q->rc[cl] = v;
      if (cl + 1 > q->rc_len) q->rc_len = cl + 1;
    }
  }
  free(blk);
  q->alloc_end = q->rc_len > file_clusters ? q->rc_len : file_clusters;
  q->rc_dirty_lo = q->rc_dirty_hi = 0;
  return 0;
}

static int64_t alloc_clusters(qcow2_state *q, uint64_t n, uint64_t initial, si_err *e) {
  uint64_t start = q->alloc_end;
  if ((start + n) > (1ULL << (56 - q->cluster_bits))) return si_set_err(e, SI_E_NOMEM, "image file too large");
  for (uint64_t i = 0; i < n; i++)
    if (qcow2_rc_set(q, start + i, initial, e) < 0) return -1;
  q->alloc_end = start + n;
  return (int64_t)(start << q->cluster_bits);
}

void qcow2_compressed_range(qcow2_state *q, uint64_t ent, uint64_t *off, uint64_t *len) {
  uint32_t shift = 62 - (q->cluster_bits - 8);
  uint64_t omask = (1ULL << shift) - 1, smask = (1ULL << (q->cluster_bits - 8)) - 1;
  uint64_t o = ent & omask, nsect = (ent >> shift) & smask;
  *off = o;
  *len = (nsect + 1) * 512 - (o & 511);
}

static int release_entry(qcow2_state *q, uint64_t ent, si_err *e) {
  if (ent & OFLAG_COMPRESSED) {
    uint64_t off, len;
    qcow2_compressed_range(q, ent, &off, &len);
    for (uint64_t c = off >> q->cluster_bits; c <= (off + len - 1) >> q->cluster_bits; c++) {
      uint64_t v = rc_get(q, c);
      if (v && qcow2_rc_set(q, c, v - 1, e) < 0) return -1;
    }
    return 0;
  }
  uint64_t h = ent & L2E_OFFSET_MASK;
  if (!h) return 0;
  uint64_t c = h >> q->cluster_bits, v = rc_get(q, c);
  if (v && qcow2_rc_set(q, c, v - 1, e) < 0) return -1;
  return 0;
}

/* Writes refcount blocks and table, growing them as needed (a fixpoint:
 * new blocks need refcounts themselves). */
static int rc_flush(si_image *img, si_err *e) {
  qcow2_state *q = img->q;
  uint64_t epb = q->cs * 8 / (1u << q->refcount_order);
  for (int iter = 0;; iter++) {
    if (iter > 64) return si_set_err(e, SI_E_IO, "refcount structure did not converge");
    uint64_t nblocks = (q->rc_len + epb - 1) / epb;
    uint64_t rt_entries = (uint64_t)q->rt_clusters * q->cs / 8;
    if (nblocks > rt_entries) {
      uint64_t need = (nblocks * 8 + q->cs - 1) / q->cs + 1;
      if (need * q->cs > MAX_RT_BYTES) return si_set_err(e, SI_E_NOMEM, "refcount table would exceed 8 MiB");
      uint64_t *nrt = calloc(need * q->cs / 8 + 1, 8);
      if (!nrt) return si_set_err(e, SI_E_NOMEM, "out of memory");
      memcpy(nrt, q->rt, rt_entries * 8);
      int64_t noff = alloc_clusters(q, need, 1, e);
      if (noff < 0) { free(nrt); return -1; }
      for (uint64_t i = 0; i < q->rt_clusters; i++) {
        uint64_t c = (q->rt_offset >> q->cluster_bits) + i, v = rc_get(q, c);
        if (v && qcow2_rc_set(q, c, v - 1, e) < 0) { free(nrt); return -1; }
      }
      free(q->rt);
      q->rt = nrt;
      q->rt_offset = (uint64_t)noff;
      q->rt_clusters = (uint32_t)need;
      q->rt_dirty = 1;
      q->header_dirty = 1;
      continue;
    }
    int changed = 0;
    for (uint64_t b = 0; b < nblocks; b++) {
      if (q->rt[b] & REFT_OFFSET_MASK) continue;
      int any = 0;
      for (uint64_t i = b * epb; i < (b + 1) * epb && i < q->rc_len; i++)
        if (q->rc[i]) { any = 1; break; }
      if (!any) continue;
      int64_t o = alloc_clusters(q, 1, 1, e);
      if (o < 0) return -1;
      q->rt[b] = (uint64_t)o;
      q->rt_dirty = 1;
      changed = 1;
      /* The whole block is new on disk. */
      if (q->rc_dirty_hi <= q->rc_dirty_lo) { q->rc_dirty_lo = b * epb; q->rc_dirty_hi = (b + 1) * epb; }
      if (b * epb < q->rc_dirty_lo) q->rc_dirty_lo = b * epb;
      if ((b + 1) * epb > q->rc_dirty_hi) q->rc_dirty_hi = (b + 1) * epb;
    }
    if (!changed) break;
  }
  if (q->rc_dirty_hi > q->rc_dirty_lo) {
    uint8_t *blk = si_malloc(q->cs, e);
    if (!blk) return -1;
    for (uint64_t b = q->rc_dirty_lo / epb; b * epb < q->rc_dirty_hi; b++) {
      uint64_t off = q->rt[b] & REFT_OFFSET_MASK;
      if (!off || off >= (q->alloc_end << q->cluster_bits)) continue;
      memset(blk, 0, q->cs);
      for (uint64_t i = 0; i < epb; i++) {
        uint64_t c = b * epb + i;
        if (c >= q->rc_len) break;
        rc_entry_put(blk, q->refcount_order, i, q->rc[c]);
      }
      if (si_pwrite_full(img->fd, blk, q->cs, off, e, "refcount block") < 0) { free(blk); return -1; }
    }
    free(blk);
    q->rc_dirty_lo = q->rc_dirty_hi = 0;
  }
  if (q->rt_dirty) {
    size_t bytes = (size_t)q->rt_clusters * q->cs;
    uint8_t *buf = si_malloc(bytes, e);
    if (!buf) return -1;
    for (size_t i = 0; i < bytes / 8; i++) put64(buf + i * 8, q->rt[i]);
    int r = si_pwrite_full(img->fd, buf, bytes, q->rt_offset, e, "refcount table");
    free(buf);
    if (r < 0) return -1;
    q->rt_dirty = 0;
  }
  return 0;
}

int qcow2_rewrite_all_refcounts(si_image *img, si_err *e) {
  qcow2_state *q = img->q;
  q->rc_dirty_lo = 0;
  q->rc_dirty_hi = q->rc_len ? q->rc_len : 1;
  q->rt_dirty = 1;
  return 0;
}

/* ------------------------------------------------------------ L2 cache */

int qcow2_read_l2(si_image *img, uint64_t l2off, uint64_t *out, si_err *e) {
  qcow2_state *q = img->q;
  if (l2off & (q->cs - 1))
    return si_set_err(e, SI_E_CORRUPT, "%s: L2 table offset 0x%llx is not cluster-aligned", img->path, (unsigned long long)l2off);
  if (l2off >= q->file_size || q->cs > q->file_size - l2off)
    return si_set_err(e, SI_E_CORRUPT, "%s: L2 table at 0x%llx lies beyond the end of the file", img->path, (unsigned long long)l2off);
  if (si_pread_exact(img->fd, out, q->cs, l2off, e, "L2 table") < 0) return -1;
  for (uint32_t i = 0; i < q->l2_entries; i++) out[i] = be64((uint8_t *)&out[i]);
  return 0;
}

static int slot_writeback(si_image *img, struct l2slot *s, si_err *e) {
  qcow2_state *q = img->q;
  if (!s->dirty) return 0;
  uint64_t off = q->l1[s->idx] & L1E_OFFSET_MASK;
  uint8_t *buf = si_malloc(q->cs, e);
  if (!buf) return -1;
  for (uint32_t i = 0; i < q->l2_entries; i++) put64(buf + i * 8, s->t[i]);
  int r = si_pwrite_full(img->fd, buf, q->cs, off, e, "L2 table");
  free(buf);
  if (r < 0) return -1;
  if (off + q->cs > q->file_size) q->file_size = off + q->cs;
  s->dirty = 0;
  return 0;
}

/* Returns the cached L2 table for l1 index idx, or NULL with *unalloc=1 when
 * the L1 entry is empty and alloc is 0. Called with q->lock held. */
static uint64_t *get_l2(si_image *img, uint64_t idx, int alloc, int *unalloc, si_err *e) {
  qcow2_state *q = img->q;
  *unalloc = 0;
  uint64_t l1e = q->l1[idx];
  if (l1e & L1E_RESERVED_MASK) {
    si_set_err(e, SI_E_CORRUPT, "%s: L1 entry %llu has reserved bits set", img->path, (unsigned long long)idx);
    return NULL;
  }
  uint64_t l2off = l1e & L1E_OFFSET_MASK;
  struct l2slot *s = &q->slots[idx % (uint64_t)q->nslots];
  if (s->idx == (int64_t)idx && s->t) return s->t;
  if (!l2off && !alloc) { *unalloc = 1; return NULL; }
  if (s->idx >= 0 && slot_writeback(img, s, e) < 0) return NULL;
  if (!s->t) {
    s->t = si_malloc(q->cs, e);
    if (!s->t) return NULL;
  }
  s->idx = -1;
  if (!l2off) {
    int64_t o = alloc_clusters(q, 1, 1, e);
    if (o < 0) return NULL;
    memset(s->t, 0, q->cs);
    q->l1[idx] = (uint64_t)o | OFLAG_COPIED;
    q->l1_dirty = 1;
    s->dirty = 1;
  } else {
    if (img->writable && rc_get(q, l2off >> q->cluster_bits) != 1) {
      si_set_err(e, SI_E_UNSUPPORTED, "%s: L2 table at 0x%llx is shared; cannot write", img->path, (unsigned long long)l2off);
      return NULL;
    }
    if (qcow2_read_l2(img, l2off, s->t, e) < 0) return NULL;
    s->dirty = 0;
  }
  s->idx = (int64_t)idx;
  return s->t;
}

/* ------------------------------------------------------------ block status */

static int entry_kind(si_image *img, uint64_t ent, uint64_t *host, si_err *e) {
  qcow2_state *q = img->q;
  if (ent & OFLAG_COMPRESSED) {
    if (q->has_data_file) return si_set_err(e, SI_E_CORRUPT, "%s: compressed cluster in an image with a data file", img->path);
    *host = ent;
    return SI_BS_COMPRESSED;
  }
  if (ent & L2E_STD_RESERVED_MASK)
    return si_set_err(e, SI_E_CORRUPT, "%s: L2 entry 0x%llx has reserved bits set", img->path, (unsigned long long)ent);
  if ((ent & OFLAG_ZERO) && q->version >= 3) return SI_BS_ZERO;
  uint64_t h = ent & L2E_OFFSET_MASK;
  if (!h && !(q->has_data_file && (ent & OFLAG_COPIED))) return SI_BS_UNALLOC;
  *host = h;
  return SI_BS_DATA;
}

int qcow2_block_status(si_image *img, uint64_t off, uint64_t len, uint64_t *pnum, int *kind, uint64_t *host,
                       si_err *e) {
  qcow2_state *q = img->q;
  uint64_t l2_cov = q->cs * q->l2_entries;
  uint64_t l1i = off / l2_cov;
  uint64_t in_l2 = off % l2_cov;
  uint64_t max = l2_cov - in_l2;
  if (max > len) max = len;
  *host = 0;
  if (l1i >= q->l1_size) { *kind = SI_BS_UNALLOC; *pnum = len; return 0; }
  pthread_mutex_lock(&q->lock);
  int unalloc;
  uint64_t *t = get_l2(img, l1i, 0, &unalloc, e);
  if (!t) {
    if (!unalloc) { pthread_mutex_unlock(&q->lock); return -1; }
    /* Empty L1 entries: coalesce the whole run so huge sparse images are cheap. */
    uint64_t n = max, j = l1i + 1;
    while (n < len && j < q->l1_size && !(q->l1[j] & L1E_OFFSET_MASK)) { n += l2_cov; j++; }
    if (n < len && j >= q->l1_size) n = len;
    pthread_mutex_unlock(&q->lock);
    *kind = SI_BS_UNALLOC;
    *pnum = n > len ? len : n;
    return 0;
  }
  uint64_t i = in_l2 >> q->cluster_bits, inc = off & (q->cs - 1);
  uint64_t h0 = 0;
  int k0 = entry_kind(img, t[i], &h0, e);
  if (k0 < 0) { pthread_mutex_unlock(&q->lock); return -1; }
  uint64_t n = q->cs - inc;
  if (k0 != SI_BS_COMPRESSED) {
    uint64_t j = i + 1;
    while (n < max && j < q->l2_entries) {
      uint64_t h = 0;
      int k = entry_kind(img, t[j], &h, e);
      if (k < 0) { e->code = 0; break; }
      if (k != k0 || (k0 == SI_BS_DATA && h != h0 + (j - i) * q->cs)) break;
      n += q->cs;
      j++;
    }
  }
  pthread_mutex_unlock(&q->lock);
  *pnum = n > max ? max : n;
  *kind = k0;
  *host = k0 == SI_BS_DATA ? h0 + inc : h0;
  return 0;
}

int qcow2_read_compressed(si_image *img, uint64_t ent, uint8_t *out, si_err *e) {
  qcow2_state *q = img->q;
  uint64_t off, len;
  qcow2_compressed_range(q, ent, &off, &len);
  uint8_t *in = si_malloc(len, e);
  if (!in) return -1;
  int r = si_pread_full(img->fd, in, len, off, e, "compressed cluster");
  if (r == 0) r = si_decompress_cluster(q->compression_type, in, len, out, q->cs, e);
  free(in);
  return r;
}

/* ------------------------------------------------------------ writing */

int qcow2_store_cluster(si_image *img, uint64_t guest_off, const uint8_t *data, size_t clen, int compressed,
                        uint64_t *host, si_err *e) {
  (void)data;
  qcow2_state *q = img->q;
  uint64_t l2_cov = q->cs * q->l2_entries, l1i = guest_off / l2_cov;
  uint64_t i = (guest_off % l2_cov) >> q->cluster_bits;
  if (l1i >= q->l1_size) return si_set_err(e, SI_E_INVALID, "write beyond the end of the image");
  pthread_mutex_lock(&q->lock);
  int unalloc, r = -1;
  uint64_t *t = get_l2(img, l1i, 1, &unalloc, e);
  if (!t) goto out;
  if (release_entry(q, t[i], e) < 0) goto out;
  if (!compressed) {
    int64_t h = alloc_clusters(q, 1, 1, e);
    if (h < 0) goto out;
    t[i] = (uint64_t)h | OFLAG_COPIED;
    *host = (uint64_t)h;
  } else {
    uint64_t start = q->comp_cur;
    uint64_t cb = q->cluster_bits;
    int fresh = 1;
    if (start && (start & (q->cs - 1)) && rc_get(q, start >> cb) < rc_max(q)) {
      uint64_t first = start >> cb, last = (start + clen - 1) >> cb;
      if (last == first) fresh = 0;
      else if (first + 1 == q->alloc_end) {
        if (alloc_clusters(q, last - first, 0, e) < 0) goto out;
        fresh = 0;
      }
    }
    if (fresh) {
      int64_t h = alloc_clusters(q, (clen + q->cs - 1) / q->cs, 0, e);
      if (h < 0) goto out;
      start = (uint64_t)h;
    }
    for (uint64_t c = start >> cb; c <= (start + clen - 1) >> cb; c++)
      if (qcow2_rc_set(q, c, rc_get(q, c) + 1, e) < 0) goto out;
    uint64_t nsect = ((start + clen - 1) >> 9) - (start >> 9);
    uint32_t shift = 62 - (q->cluster_bits - 8);
    t[i] = OFLAG_COMPRESSED | (nsect << shift) | start;
    q->comp_cur = start + clen;
    uint64_t end = ((start + clen + 511) & ~511ULL);
    if (end > q->min_file_end) q->min_file_end = end;
    *host = start;
  }
  q->slots[l1i % (uint64_t)q->nslots].dirty = 1;
  r = 0;
out:
  pthread_mutex_unlock(&q->lock);
  return r;
}

int qcow2_set_zero_cluster(si_image *img, uint64_t guest_off, si_err *e) {
  qcow2_state *q = img->q;
  uint64_t l2_cov = q->cs * q->l2_entries, l1i = guest_off / l2_cov;
  uint64_t i = (guest_off % l2_cov) >> q->cluster_bits;
  if (l1i >= q->l1_size) return si_set_err(e, SI_E_INVALID, "write beyond the end of the image");
  pthread_mutex_lock(&q->lock);
  int unalloc, r = -1;
  uint64_t *t = get_l2(img, l1i, !!img->backing || q->version >= 3, &unalloc, e);
  if (!t) { if (unalloc) r = 0; goto out; }
  if (release_entry(q, t[i], e) < 0) goto out;
  t[i] = q->version >= 3 ? OFLAG_ZERO : 0;
  q->slots[l1i % (uint64_t)q->nslots].dirty = 1;
  r = 0;
out:
  pthread_mutex_unlock(&q->lock);
  return r;
}

int qcow2_write(si_image *img, const void *buf, uint64_t len, uint64_t off, si_err *e) {
  qcow2_state *q = img->q;
  const uint8_t *src = buf;
  uint8_t *cbuf = NULL;
  int fd = qcow2_data_fd(img);
  while (len) {
    uint64_t inc = off & (q->cs - 1), n = q->cs - inc;
    if (n > len) n = len;
    uint64_t coff = off - inc;
    uint64_t l2_cov = q->cs * q->l2_entries, l1i = coff / l2_cov, i = (coff % l2_cov) >> q->cluster_bits;
    if (l1i >= q->l1_size) { free(cbuf); return si_set_err(e, SI_E_INVALID, "write beyond the end of the image"); }
    pthread_mutex_lock(&q->lock);
    int unalloc;
    uint64_t *t = get_l2(img, l1i, 1, &unalloc, e);
    if (!t) { pthread_mutex_unlock(&q->lock); free(cbuf); return -1; }
    uint64_t ent = t[i], h = ent & L2E_OFFSET_MASK;
    int inplace = !(ent & OFLAG_COMPRESSED) && h && !(ent & OFLAG_ZERO && q->version >= 3) &&
                  rc_get(q, h >> q->cluster_bits) == 1;
    pthread_mutex_unlock(&q->lock);
    if (inplace) {
      if (si_pwrite_full(fd, src, n, h + inc, e, "data cluster") < 0) { free(cbuf); return -1; }
    } else {
      if (!cbuf && !(cbuf = si_malloc(q->cs, e))) return -1;
      if (n < q->cs) {
        if (si_read(img, cbuf, q->cs, coff, e) < 0) { free(cbuf); return -1; }
      }
      memcpy(cbuf + inc, src, n);
      pthread_mutex_lock(&q->lock);
      t = get_l2(img, l1i, 1, &unalloc, e);
      int64_t nh = -1;
      if (t && release_entry(q, t[i], e) == 0) nh = alloc_clusters(q, 1, 1, e);
      if (nh >= 0) {
        t[i] = (uint64_t)nh | OFLAG_COPIED;
        q->slots[l1i % (uint64_t)q->nslots].dirty = 1;
      }
      pthread_mutex_unlock(&q->lock);
      if (nh < 0) { free(cbuf); return -1; }
      if (si_pwrite_full(fd, cbuf, q->cs, (uint64_t)nh, e, "data cluster") < 0) { free(cbuf); return -1; }
    }
    src += n; off += n; len -= n;
  }
  free(cbuf);
  return 0;
}

int qcow2_write_zeroes(si_image *img, uint64_t len, uint64_t off, si_err *e) {
  qcow2_state *q = img->q;
  while (len) {
    uint64_t inc = off & (q->cs - 1), n = q->cs - inc;
    if (n > len) n = len;
    int whole = inc == 0 && n == q->cs;
    if (whole && (q->version >= 3 || !img->backing)) {
      if (qcow2_set_zero_cluster(img, off, e) < 0) return -1;
    } else {
      uint8_t *z = si_calloc(n, e);
      if (!z) return -1;
      int r = qcow2_write(img, z, n, off, e);
      free(z);
      if (r < 0) return -1;
    }
    off += n; len -= n;
  }
  return 0;
}

/* ------------------------------------------------------------ header writing */

static int build_header(qcow2_state *q, uint64_t size, uint8_t *buf, si_err *e) {
  memset(buf, 0, q->cs);
  put32(buf, QCOW_MAGIC);
  put32(buf + 4, q->version);
  put32(buf + 20, q->cluster_bits);
  put64(buf + 24, size);
  put32(buf + 36, q->l1_size);
  put64(buf + 40, q->l1_offset);
  put64(buf + 48, q->rt_offset);
  put32(buf + 56, q->rt_clusters);
  put32(buf + 60, q->nb_snapshots);
  put64(buf + 64, q->snapshots_offset);
  uint64_t off;
  if (q->version >= 3) {
    put64(buf + 72, q->incompat);
    put64(buf + 80, q->compat);
    put64(buf + 88, q->autoclear);
    put32(buf + 96, q->refcount_order);
    put32(buf + 100, 112);
    buf[104] = (uint8_t)q->compression_type;
    off = 112;
  } else {
    off = 72;
  }
#define NEED(n) do { if (off + (n) + 8 > q->cs) return si_set_err(e, SI_E_INVALID, "qcow2 header does not fit in one cluster"); } while (0)
  if (q->has_backing && q->has_backing_fmt) {
    uint32_t l = (uint32_t)strlen(q->backing_fmt);
    NEED(8 + ((l + 7) & ~7u));
    put32(buf + off, EXT_BACKING_FMT); put32(buf + off + 4, l);
    memcpy(buf + off + 8, q->backing_fmt, l);
    off += 8 + ((l + 7) & ~7u);
  }
  if (q->has_data_file) {
    uint32_t l = (uint32_t)strlen(q->data_file);
    NEED(8 + ((l + 7) & ~7u));
    put32(buf + off, EXT_DATA_FILE); put32(buf + off + 4, l);
    memcpy(buf + off + 8, q->data_file, l);
    off += 8 + ((l + 7) & ~7u);
  }
  if (q->version >= 3 && q->cs >= 4096) {
    static const struct { uint8_t t, b; const char *n; } f[] = {
        {0, 0, "dirty bit"}, {0, 1, "corrupt bit"}, {0, 2, "external data file"}, {0, 3, "compression type"},
        {0, 4, "extended L2 entries"}, {1, 0, "lazy refcounts"}, {2, 0, "bitmaps"}, {2, 1, "raw external data"}};
    NEED(8 + 48 * 8);
    put32(buf + off, EXT_FEATURES); put32(buf + off + 4, 48 * 8);
    for (int i = 0; i < 8; i++) {
      uint8_t *p = buf + off + 8 + i * 48;
      p[0] = f[i].t; p[1] = f[i].b;
      memcpy(p + 2, f[i].n, strlen(f[i].n));
    }
    off += 8 + 48 * 8;
  }
  for (int i = 0; i < q->n_exts; i++) {
    uint32_t l = q->exts[i].len;
    NEED(8 + (((uint64_t)l + 7) & ~7ULL));
    put32(buf + off, q->exts[i].type); put32(buf + off + 4, l);
    memcpy(buf + off + 8, q->exts[i].data, l);
    off += 8 + ((l + 7) & ~7u);
  }
  NEED(0);
  off += 8; /* end marker */
  if (q->has_backing) {
    uint32_t l = (uint32_t)strlen(q->backing);
    if (l > 1023 || off + l > q->cs) return si_set_err(e, SI_E_INVALID, "backing file name does not fit in the header");
    memcpy(buf + off, q->backing, l);
    put64(buf + 8, off);
    put32(buf + 16, l);
    off += l;
  }
  return (int)off;
#undef NEED
}

int qcow2_write_header(si_image *img, si_err *e) {
  qcow2_state *q = img->q;
  uint8_t *buf = si_malloc(q->cs, e);
  if (!buf) return -1;
  /* Autoclear bits we do not maintain (bitmaps) must be cleared when we write. */
  q->autoclear &= q->has_data_file ? 2 : 0;
  int n = build_header(q, img->size, buf, e);
  int r = n < 0 ? -1 : si_pwrite_full(img->fd, buf, (size_t)n, 0, e, "qcow2 header");
  free(buf);
  if (r == 0) q->header_dirty = 0;
  return r;
}

int qcow2_flush(si_image *img, si_err *e) {
  qcow2_state *q = img->q;
  if (!img->writable) return 0;
  pthread_mutex_lock(&q->lock);
  int r = 0;
  for (int i = 0; i < q->nslots && r == 0; i++)
    if (q->slots[i].idx >= 0) r = slot_writeback(img, &q->slots[i], e);
  if (r == 0 && q->l1_dirty && q->l1_size) {
    uint8_t *buf = si_malloc((size_t)q->l1_size * 8, e);
    if (!buf) r = -1;
    else {
      for (uint32_t i = 0; i < q->l1_size; i++) put64(buf + i * 8, q->l1[i]);
      r = si_pwrite_full(img->fd, buf, (size_t)q->l1_size * 8, q->l1_offset, e, "L1 table");
      free(buf);
      if (r == 0) q->l1_dirty = 0;
    }
  }
  if (r == 0) r = rc_flush(img, e);
  if (r == 0 && q->header_dirty) r = qcow2_write_header(img, e);
  if (r == 0 && q->min_file_end) {
    struct stat st;
    if (fstat(img->fd, &st) == 0 && (uint64_t)st.st_size < q->min_file_end &&
        ftruncate(img->fd, (off_t)q->min_file_end) < 0)
      r = si_errno_err(e, errno, "extending %s", img->path);
  }
  pthread_mutex_unlock(&q->lock);
  return r;
}

int qcow2_get_info(si_image *img, si_info *info, si_err *e) {
  (void)e;
  qcow2_state *q = img->q;
  info->cluster_size = (uint32_t)q->cs;
  info->version = (int)q->version;
  info->refcount_bits = 1 << q->refcount_order;
  info->compression_type = q->compression_type;
  info->corrupt = !!(q->incompat & INCOMPAT_CORRUPT);
  info->dirty = !!(q->incompat & INCOMPAT_DIRTY);
  info->lazy_refcounts = !!(q->compat & 1);
  info->extended_l2 = !!(q->incompat & INCOMPAT_EXTL2);
  info->has_data_file = q->has_data_file;
  info->incompatible = q->incompat;
  info->compatible = q->compat;
  info->autoclear = q->autoclear;
  info->nb_snapshots = q->nb_snapshots;
  if (q->has_backing) snprintf(info->backing_file, sizeof info->backing_file, "%s", q->backing);
  if (q->has_backing_fmt) snprintf(info->backing_format, sizeof info->backing_format, "%s", q->backing_fmt);
  if (q->has_data_file) snprintf(info->data_file, sizeof info->data_file, "%s", q->data_file);
  return 0;
}

/* ------------------------------------------------------------ create */

int qcow2_create_file(const char *path, const si_create_opts *o, uint64_t size, si_err *e) {
  uint32_t cs = o->cluster_size ? o->cluster_size : 65536;
  if (cs < 512 || cs > (2u << 20) || (cs & (cs - 1)))
    return si_set_err(e, SI_E_INVALID, "cluster size %u must be a power of two between 512 and 2097152", cs);
  int version = o->version ? o->version : 3;
  if (version != 2 && version != 3) return si_set_err(e, SI_E_INVALID, "qcow2 version must be 2 or 3");
  int order = o->refcount_order < 0 ? 4 : o->refcount_order;
  if (order > 6 || (version == 2 && order != 4))
    return si_set_err(e, SI_E_INVALID, "refcount bits must be a power of two up to 64 (16 for compat=0.10)");
  if (o->compression_type && version == 2)
    return si_set_err(e, SI_E_INVALID, "zstd compression requires compat=1.1 (version 3)");
  if (o->prealloc_metadata) return si_set_err(e, SI_E_UNSUPPORTED, "preallocation is not supported for writing");
  if (o->backing_file && !o->backing_format)
    return si_set_err(e, SI_E_INVALID, "a backing file needs an explicit backing format (-F)");
  if (size > (1ULL << 56)) return si_set_err(e, SI_E_INVALID, "image size too large");
  qcow2_state q;
  memset(&q, 0, sizeof q);
  q.version = (uint32_t)version;
  q.cs = cs;
  q.cluster_bits = (uint32_t)__builtin_ctz(cs);
  q.refcount_order = (uint32_t)order;
  q.compression_type = o->compression_type;
  if (o->compression_type) q.incompat |= INCOMPAT_COMPRESSION;
  uint64_t l2_cov = (uint64_t)cs * (cs / 8);
  uint64_t l1_size = (size + l2_cov - 1) / l2_cov;
  if (l1_size * 8 > MAX_L1_BYTES) return si_set_err(e, SI_E_INVALID, "image too large for cluster size %u", cs);
  q.l1_size = (uint32_t)l1_size;
  uint64_t l1_clusters = (l1_size * 8 + cs - 1) / cs;
  if (!l1_clusters) l1_clusters = 1;
  uint64_t epb = (uint64_t)cs * 8 / (1u << order);
  uint64_t rb = 1, rt = 1, n;
  for (;;) {
    n = 1 + rt + rb + l1_clusters;
    uint64_t nrb = (n + epb - 1) / epb, nrt = (nrb * 8 + cs - 1) / cs;
    if (nrb == rb && nrt == rt) break;
    rb = nrb; rt = nrt;
  }
  if (rt * cs > MAX_RT_BYTES) return si_set_err(e, SI_E_INVALID, "image too large for cluster size %u", cs);
  q.rt_offset = cs;
  q.rt_clusters = (uint32_t)rt;
  q.l1_offset = (1 + rt + rb) * (uint64_t)cs;
  if (o->backing_file) {
    if (strlen(o->backing_file) > 1023) return si_set_err(e, SI_E_INVALID, "backing file name too long");
    if (strlen(o->backing_format) >= sizeof q.backing_fmt) return si_set_err(e, SI_E_INVALID, "backing format too long");
    q.has_backing = 1;
    q.has_backing_fmt = 1;
    strcpy(q.backing, o->backing_file);
    strcpy(q.backing_fmt, o->backing_format);
  }
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return si_errno_err(e, errno, "creating %s", path);
  size_t meta = (size_t)(1 + rt + rb) * cs;
  uint8_t *buf = si_calloc(meta, e);
  int r = -1;
  if (!buf) goto out;
  if (build_header(&q, size, buf, e) < 0) goto out;
  for (uint64_t b = 0; b < rb; b++) put64(buf + cs + b * 8, (1 + rt + b) * (uint64_t)cs);
  for (uint64_t c = 0; c < n; c++) {
    uint64_t b = c / epb;
    rc_entry_put(buf + (1 + rt + b) * cs, (uint32_t)order, c % epb, 1);
  }
  if (si_pwrite_full(fd, buf, meta, 0, e, "qcow2 metadata") < 0) goto out;
  if (l1_size) {
    uint8_t *z = si_calloc(l1_size * 8, e);
    if (!z) goto out;
    r = si_pwrite_full(fd, z, l1_size * 8, q.l1_offset, e, "L1 table");
    free(z);
    if (r < 0) goto out;
  }
  r = 0;
out:
  free(buf);
  close(fd);
  if (r < 0) unlink(path);
  return r;
}

int qcow2_resize(si_image *img, uint64_t new_size, int shrink, si_err *e) {
  qcow2_state *q = img->q;
  if (new_size > (1ULL << 56)) return si_set_err(e, SI_E_INVALID, "image size too large");
  if (new_size < img->size) {
    if (!shrink) return si_set_err(e, SI_E_INVALID, "use --shrink to shrink an image");
    uint64_t pos = new_size;
    while (pos < img->size) {
      uint64_t n, h;
      int k;
      if (qcow2_block_status(img, pos, img->size - pos, &n, &k, &h, e) < 0) return -1;
      if (k != SI_BS_UNALLOC && k != SI_BS_ZERO)
        return si_set_err(e, SI_E_PRECONDITION, "cannot shrink: data is allocated at offset %llu beyond the new size",
                          (unsigned long long)pos);
      pos += n;
    }
    img->size = new_size;
    q->header_dirty = 1;
    return 0;
  }
  uint64_t l2_cov = q->cs * q->l2_entries;
  uint64_t need = (new_size + l2_cov - 1) / l2_cov;
  if (need * 8 > MAX_L1_BYTES) return si_set_err(e, SI_E_INVALID, "image too large for its cluster size");
  if (need > q->l1_size) {
    pthread_mutex_lock(&q->lock);
    uint64_t clusters = (need * 8 + q->cs - 1) / q->cs;
    uint64_t *nl1 = calloc(clusters * q->cs / 8, 8);
    int64_t off = nl1 ? alloc_clusters(q, clusters, 1, e) : si_set_err(e, SI_E_NOMEM, "out of memory");
    if (off < 0) { free(nl1); pthread_mutex_unlock(&q->lock); return -1; }
    memcpy(nl1, q->l1, (size_t)q->l1_size * 8);
    uint64_t old_clusters = ((uint64_t)q->l1_size * 8 + q->cs - 1) / q->cs;
    for (uint64_t i = 0; i < old_clusters && q->l1_size; i++) {
      uint64_t c = (q->l1_offset >> q->cluster_bits) + i, v = rc_get(q, c);
      if (v) qcow2_rc_set(q, c, v - 1, e);
    }
    free(q->l1);
    q->l1 = nl1;
    q->l1_offset = (uint64_t)off;
    q->l1_size = (uint32_t)need;
    q->l1_dirty = 1;
    pthread_mutex_unlock(&q->lock);
    /* Write the whole new L1 now so the file covers it. */
    uint8_t *z = si_calloc(clusters * q->cs, e);
    if (!z) return -1;
    for (uint32_t i = 0; i < q->l1_size; i++) put64(z + i * 8, q->l1[i]);
    int r = si_pwrite_full(img->fd, z, clusters * q->cs, q->l1_offset, e, "L1 table");
    free(z);
    if (r < 0) return -1;
  }
  img->size = new_size;
  q->header_dirty = 1;
  return 0;
}

int qcow2_set_backing(si_image *img, const char *backing, const char *fmt, si_err *e) {
  qcow2_state *q = img->q;
  if (backing && backing[0]) {
    if (!fmt || !fmt[0]) return si_set_err(e, SI_E_INVALID, "a backing file needs an explicit backing format (-F)");
    if (strlen(backing) > 1023) return si_set_err(e, SI_E_INVALID, "backing file name too long");
    if (strlen(fmt) >= sizeof q->backing_fmt) return si_set_err(e, SI_E_INVALID, "backing format too long");
    strcpy(q->backing, backing);
    strcpy(q->backing_fmt, fmt);
    q->has_backing = q->has_backing_fmt = 1;
  } else {
    q->has_backing = q->has_backing_fmt = 0;
    q->backing[0] = q->backing_fmt[0] = 0;
  }
  q->header_dirty = 1;
  return 0;
}

int qcow2_make_empty(si_image *img, si_err *e) {
  qcow2_state *q = img->q;
  pthread_mutex_lock(&q->lock);
  int r = 0;
  for (uint32_t i = 0; i < q->l1_size && r == 0; i++) {
    uint64_t l2off = q->l1[i] & L1E_OFFSET_MASK;
    if (!l2off) continue;
    int unalloc;
    uint64_t *t = get_l2(img, i, 0, &unalloc, e);
    if (!t) { r = -1; break; }
    for (uint32_t j = 0; j < q->l2_entries && r == 0; j++) r = release_entry(q, t[j], e);
    struct l2slot *s = &q->slots[i % (uint64_t)q->nslots];
    s->idx = -1;
    s->dirty = 0;
    uint64_t c = l2off >> q->cluster_bits, v = rc_get(q, c);
    if (v) r = r ? r : qcow2_rc_set(q, c, v - 1, e);
    q->l1[i] = 0;
    q->l1_dirty = 1;
  }
  pthread_mutex_unlock(&q->lock);
  return r;
}

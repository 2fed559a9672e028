/* Whole-image operations: convert (multi-threaded), compare, map, resize,
 * rebase -u, commit. */
#include "internal.h"
#include <unistd.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>

void si_convert_opts_init(si_convert_opts *o) {
  memset(o, 0, sizeof *o);
  o->src_fmt = SI_FMT_PROBE;
  o->dst_fmt = SI_FMT_RAW;
  si_create_opts_init(&o->create);
  o->min_sparse = 4096;
}

/* Status through the whole chain: *zero=1 when the range surely reads zeros. */
static int chain_status(si_image *img, uint64_t off, uint64_t len, uint64_t *pnum, int *zero, si_err *e) {
  for (;;) {
    if (off >= img->size) { *pnum = len; *zero = 1; return 0; }
    uint64_t n, h;
    int k;
    if (si_block_status(img, off, len, &n, &k, &h, e) < 0) return -1;
    if (n < len) len = n;
    if (k == SI_BS_DATA || k == SI_BS_COMPRESSED) { *pnum = len; *zero = 0; return 0; }
    if (k == SI_BS_ZERO || !img->backing) { *pnum = len; *zero = 1; return 0; }
    img = img->backing;
  }
}

enum { CL_SKIP = 0, CL_ZERO = 1, CL_DATA = 2, CL_COMP = 3 };

typedef struct conv {
  si_image *src, *dst;
  int dst_fd;
  const si_convert_opts *o;
  int qcow2_out, top_only, zero_init, v2, src_raw, prealloc;
  uint64_t pre_end;
  volatile int cfr_whole, cfr_ok;
  /* One-copy data path (qcow2 targets): data clusters move from the source's
   * data file (oc_fd, oc_len bytes long) by copy_file_range, page cache to page
   * cache; zero detection reads only a probe of each cluster. */
  uint64_t oc_len;
  int oc_fd;
  uint64_t size, cs, chunk, nchunks;
  pthread_mutex_t mu, wmu;
  pthread_cond_t cv, main_cv;
  uint64_t next_chunk, next_write, done_bytes;
  int running, failed;
  si_err err;
  volatile int *cancel;
} conv;

static void conv_fail(conv *c, si_err *e) {
  pthread_mutex_lock(&c->mu);
  if (!c->failed) { c->failed = 1; c->err = *e; }
  pthread_cond_broadcast(&c->cv);
  pthread_cond_broadcast(&c->main_cv);
  pthread_mutex_unlock(&c->mu);
}

/* Allocating the blocks of a run before writing it spares ext4 its
 * per-page delayed-allocation work (about 30% of a large buffered write). */
static void prealloc(conv *c, uint64_t off, uint64_t len) {
  if (c->prealloc && len >= 65536 && fallocate(c->dst_fd, FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) < 0)
    c->prealloc = 0; /* not supported here: stop trying */
}

/* qcow2 targets grow at the end: preallocate ahead in 64 MiB steps (fewer,
 * larger extents); the unused tail is released when the convert finishes. */
static void prealloc_ahead(conv *c, uint64_t off, uint64_t len) {
  if (!c->prealloc || off + len <= c->pre_end) return;
  uint64_t start = c->pre_end > off ? c->pre_end : off, end = start + (64u << 20);
  if (end < off + len) end = off + len;
  if (fallocate(c->dst_fd, FALLOC_FL_KEEP_SIZE, (off_t)start, (off_t)(end - start)) < 0) { c->prealloc = 0; return; }
  c->pre_end = end;
}

static int write_raw_nonzero(conv *c, const uint8_t *buf, uint64_t len, uint64_t off, si_err *e) {
  uint64_t g = c->o->min_sparse;
  if (!g) return si_pwrite_full(c->dst_fd, buf, len, off, e, "target");
  uint64_t i = 0;
  while (i < len) {
    uint64_t n = g - ((off + i) % g);
    if (n > len - i) n = len - i;
    if (si_is_zero(buf + i, n)) { i += n; continue; }
    uint64_t j = i + n;
    while (j < len) {
      uint64_t m = g < len - j ? g : len - j;
      if (si_is_zero(buf + j, m)) break;
      j += m;
    }
    prealloc(c, off + i, j - i);
    if (si_pwrite_full(c->dst_fd, buf + i, j - i, off + i, e, "target") < 0) return -1;
    i = j;
  }
  return 0;
}

/* Copies len bytes of the source's data file to the target: copy_file_range
 * (page cache to page cache, one copy), else through the bounce buffer. */
static int copy_run(conv *c, uint64_t soff, uint64_t doff, uint64_t len, uint8_t *bounce, si_err *e) {
  loff_t si = (loff_t)soff, di = (loff_t)doff;
  while (len && c->cfr_ok) {
    ssize_t n = copy_file_range(c->oc_fd, &si, c->dst_fd, &di, len, 0);
    if (n > 0) { len -= (uint64_t)n; continue; }
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) return si_set_err(e, SI_E_IO, "source ended early at offset %llu", (unsigned long long)si);
    if (errno != EXDEV && errno != EINVAL && errno != EOPNOTSUPP && errno != ENOSYS && errno != EBADF)
      return si_errno_err(e, errno, "copying to target at offset %llu", (unsigned long long)di);
    c->cfr_ok = 0; /* not possible between these files: copy through memory */
  }
  if (len && (si_pread_exact(c->oc_fd, bounce, len, (uint64_t)si, e, "source") < 0 ||
              si_pwrite_full(c->dst_fd, bounce, len, (uint64_t)di, e, "target") < 0))
    return -1;
  return 0;
}

/* Whether len bytes of the source's data file at soff are zeros: a probe of
 * the first bytes settles data, only a zero-looking start reads the rest. */
static int src_is_zero(conv *c, uint64_t soff, uint64_t len, uint8_t *bounce, si_err *e) {
  uint64_t pl = len < 512 ? len : 512;
  if (si_pread_exact(c->oc_fd, bounce, pl, soff, e, "source") < 0) return -1;
  if (!si_is_zero(bounce, pl)) return 0;
  if (si_pread_exact(c->oc_fd, bounce, len, soff, e, "source") < 0) return -1;
  return si_is_zero(bounce, len);
}

/* One-copy plan of a chunk: per target cluster its kind (anydata: 0 nothing
 * allocated, 1 zeros, 2 data) and the offset of its data in the source data file.
 * Returns 0 when the chunk must take the buffered path (compressed or mixed
 * clusters, data past the end of the data file, a partial last qcow2 cluster), 1 when
 * planned, -1 on error. The source has no backing file. */
static int onecopy_plan(conv *c, uint64_t off, uint64_t len, uint64_t nc, uint8_t *anydata, uint64_t *sh, si_err *e) {
  if (len % c->cs) return 0; /* the partial last cluster takes the buffered path */
  memset(anydata, 0, nc);
  for (uint64_t cl = 0; cl < nc; cl++) sh[cl] = UINT64_MAX;
  uint64_t pos = 0;
  while (pos < len) {
    uint64_t n, h;
    int k;
    if (si_block_status(c->src, off + pos, len - pos, &n, &k, &h, e) < 0) return -1;
    if (n == 0) return si_set_err(e, SI_E_IO, "no progress in block status");
    if (k == SI_BS_COMPRESSED) return 0;
    for (uint64_t cl = pos / c->cs; cl <= (pos + n - 1) / c->cs; cl++) {
      uint64_t cs0 = cl * c->cs;
      if (c->src_raw) { /* holes inside a data cluster read as zeros from the file itself */
        sh[cl] = off + cs0;
        if (k == SI_BS_DATA) anydata[cl] = 2;
        else if (anydata[cl] == 0) anydata[cl] = 1;
        continue;
      }
      if (k == SI_BS_DATA) {
        /* the host offset of the cluster's start (modular: valid whichever starts first);
         * all of the cluster must be data at one host run */
        uint64_t base = h - (pos - cs0);
        if (anydata[cl] == 1 || (sh[cl] != UINT64_MAX && sh[cl] != base)) return 0;
        sh[cl] = base;
        anydata[cl] = 2;
      } else {
        if (anydata[cl] == 2) return 0;
        anydata[cl] = 1;
      }
    }
    pos += n;
  }
  for (uint64_t cl = 0; cl < nc; cl++) {
    if (anydata[cl] != 2) continue;
    uint64_t l = cl * c->cs + c->cs > len ? len - cl * c->cs : c->cs;
    if (sh[cl] > c->oc_len || l > c->oc_len - sh[cl]) return 0;
  }
  return 1;
}

static void *conv_worker(void *arg) {
  conv *c = arg;
  si_err e = {0, ""};
  uint64_t ncl = c->chunk / c->cs;
  /* The source is read with pread into these reused, page-aligned buffers:
   * measured on this VM kind, mapping each 4 MiB chunk of a raw source
   * (mmap + MAP_POPULATE, munmap) cost 2-3x the system time of copying it,
   * page-table work and faults being dear under a paravirtualised MMU. */
  uint8_t *buf = NULL, *cbuf = NULL;
  if (posix_memalign((void **)&buf, 4096, c->chunk)) buf = NULL;
  if (c->o->compress && posix_memalign((void **)&cbuf, 4096, c->chunk)) cbuf = NULL;
  uint8_t *state = malloc(ncl);
  uint8_t *anydata = malloc(ncl);
  size_t *clen = malloc(ncl * sizeof(size_t));
  uint64_t *host = malloc(ncl * sizeof(uint64_t));
  uint64_t *sh = c->oc_fd >= 0 ? malloc(ncl * sizeof(uint64_t)) : NULL; /* source offsets, one-copy path */
  if (!buf || (c->oc_fd >= 0 && !sh) || !state || !anydata || !clen || !host || (c->o->compress && !cbuf)) {
    si_set_err(&e, SI_E_NOMEM, "out of memory for convert buffers");
    conv_fail(c, &e);
    goto out;
  }
  for (;;) {
    pthread_mutex_lock(&c->mu);
    if (c->failed || (c->cancel && *c->cancel)) { pthread_mutex_unlock(&c->mu); break; }
    uint64_t idx = c->next_chunk++;
    pthread_mutex_unlock(&c->mu);
    if (idx >= c->nchunks) break;
    uint8_t *data = buf; /* the chunk's guest data */
    uint64_t off = idx * c->chunk, len = c->size - off < c->chunk ? c->size - off : c->chunk;
    uint64_t span = 1; /* chunks this worker accounts for */
    if (!c->top_only && c->zero_init && c->o->min_sparse) {
      /* A long run of zeros (a huge sparse image): claim all its whole chunks at once. */
      uint64_t zn;
      int zz;
      if (chain_status(c->src, off, c->size - off, &zn, &zz, &e) < 0) goto fail;
      if (zz && zn >= 2 * c->chunk) {
        pthread_mutex_lock(&c->mu);
        if (c->next_chunk == idx + 1) {
          span = zn / c->chunk;
          c->next_chunk = idx + span;
        }
        pthread_mutex_unlock(&c->mu);
        if (span > 1) {
          if (c->qcow2_out) {
            pthread_mutex_lock(&c->mu);
            while (c->next_write != idx && !c->failed) pthread_cond_wait(&c->cv, &c->mu);
            c->next_write += span;
            pthread_cond_broadcast(&c->cv);
            pthread_mutex_unlock(&c->mu);
          }
          pthread_mutex_lock(&c->mu);
          c->done_bytes += span * c->chunk;
          pthread_cond_broadcast(&c->main_cv);
          pthread_mutex_unlock(&c->mu);
          continue;
        }
      }
    }
    uint64_t nc = (len + c->cs - 1) / c->cs;
    int oc = 0;
    if (c->oc_fd >= 0 && (oc = onecopy_plan(c, off, len, nc, anydata, sh, &e)) < 0) goto fail;
    if (oc) goto planned;
    memset(state, CL_SKIP, nc);
    memset(anydata, 0, nc);
    /* Plan: which parts to read, which are known zeros or left to the backing file. */
    uint64_t pos = 0;
    while (pos < len) {
      uint64_t n, h;
      int k, z;
      if (c->top_only) {
        if (si_block_status(c->src, off + pos, len - pos, &n, &k, &h, &e) < 0) goto fail;
        z = k == SI_BS_ZERO ? 1 : k == SI_BS_UNALLOC ? 2 : 0;
      } else {
        if (chain_status(c->src, off + pos, len - pos, &n, &z, &e) < 0) goto fail;
      }
      if (n == 0) { si_set_err(&e, SI_E_IO, "no progress in block status"); goto fail; }
      for (uint64_t cl = pos / c->cs; cl <= (pos + n - 1) / c->cs; cl++) {
        if (z == 0) anydata[cl] = 2;
        else if (z == 1 && anydata[cl] == 0) anydata[cl] = 1;
      }
      if (z && (c->top_only || c->o->min_sparse == 0)) memset(buf + pos, 0, n);
      pos += n;
    }
    /* raw -> raw without zero detection: nothing to look at, so let the kernel
     * copy the data extents (a reflink on filesystems that can share blocks). */
    if (c->src_raw && !c->qcow2_out && c->o->min_sparse == 0 && c->cfr_whole) {
      int ok = 1;
      for (uint64_t cl = 0; cl < nc && ok;) {
        if (anydata[cl] != 2) {
          /* -S 0 means fully allocated: allocate (zeroed) blocks for holes too */
          uint64_t s = cl * c->cs, l = s + c->cs > len ? len - s : c->cs;
          if (fallocate(c->dst_fd, FALLOC_FL_KEEP_SIZE, (off_t)(off + s), (off_t)l) < 0) ok = 0;
          cl++;
          continue;
        }
        uint64_t end = cl;
        while (end < nc && anydata[end] == 2) end++;
        uint64_t s = cl * c->cs, l = end * c->cs > len ? len - s : (end - cl) * c->cs;
        loff_t si = (loff_t)(off + s), di = (loff_t)(off + s);
        while (l) {
          ssize_t n = copy_file_range(c->src->fd, &si, c->dst_fd, &di, l, 0);
          if (n <= 0) { ok = 0; break; }
          l -= (uint64_t)n;
        }
        cl = end;
      }
      if (ok) goto chunk_done;
      c->cfr_whole = 0; /* e.g. EXDEV: fall back to reading and writing (rewrites this chunk) */
    }
    /* Read whole target clusters that hold any data. */
    for (uint64_t cl = 0; cl < nc;) {
      if (anydata[cl] != 2) { cl++; continue; }
      uint64_t end = cl;
      while (end < nc && anydata[end] == 2) end++;
      uint64_t s = cl * c->cs, l = end * c->cs > len ? len - s : (end - cl) * c->cs;
      if (si_read(c->src, buf + s, l, off + s, &e) < 0) goto fail;
      cl = end;
    }
    if (c->top_only) {
      /* Zeros decided by the top layer but mixed with unallocated parts in one
       * target cluster: take the cluster's full content through the chain. */
      for (uint64_t cl = 0; cl < nc; cl++) {
        if (anydata[cl] != 1) continue;
        uint64_t s = cl * c->cs, l = s + c->cs > len ? len - s : c->cs, p2 = 0, n2, h2;
        int k2, mixed = 0;
        while (p2 < l) {
          if (si_block_status(c->src, off + s + p2, l - p2, &n2, &k2, &h2, &e) < 0) goto fail;
          if (k2 == SI_BS_UNALLOC) mixed = 1;
          p2 += n2;
        }
        if (mixed) {
          if (si_read(c->src, buf + s, l, off + s, &e) < 0) goto fail;
          anydata[cl] = 2;
        }
      }
    }
  planned:
    if (!c->qcow2_out) {
      /* One writer at a time: concurrent writers only spin on the inode lock. */
      int r = 0;
      pthread_mutex_lock(&c->wmu);
      if (c->o->min_sparse == 0) {
        r = si_pwrite_full(c->dst_fd, data, len, off, &e, "target");
      } else {
        for (uint64_t cl = 0; cl < nc && r == 0;) {
          if (anydata[cl] != 2) { cl++; continue; }
          uint64_t end = cl;
          while (end < nc && anydata[end] == 2) end++;
          uint64_t s = cl * c->cs, l = end * c->cs > len ? len - s : (end - cl) * c->cs;
          r = write_raw_nonzero(c, data + s, l, off + s, &e);
          cl = end;
        }
      }
      pthread_mutex_unlock(&c->wmu);
      if (r < 0) goto fail;
    } else {
      /* one-copy: whole clusters only (no compression, no backing file, zero_init) */
      for (uint64_t cl = 0; oc && cl < nc; cl++) {
        int z = anydata[cl] != 2 ? 1 : src_is_zero(c, sh[cl], c->cs, buf, &e);
        if (z < 0) goto fail;
        state[cl] = z ? CL_SKIP : CL_DATA;
      }
      for (uint64_t cl = 0; !oc && cl < nc; cl++) {
        uint64_t s = cl * c->cs, l = s + c->cs > len ? len - s : c->cs;
        if (l < c->cs) memset(data + s + l, 0, c->cs - l); /* only the last chunk is partial */
        if (anydata[cl] == 0) { state[cl] = c->zero_init || c->top_only ? CL_SKIP : CL_ZERO; continue; }
        int z = anydata[cl] == 1 || (c->o->min_sparse && si_is_zero(data + s, c->cs));
        if (z && c->o->min_sparse) {
          state[cl] = c->top_only ? (c->v2 ? CL_DATA : CL_ZERO) : (c->zero_init ? CL_SKIP : CL_ZERO);
          if (state[cl] != CL_DATA) continue;
        } else {
          state[cl] = CL_DATA;
        }
        if (c->o->compress) {
          clen[cl] = si_compress_cluster(c->o->create.compression_type, c->o->level, data + s, c->cs,
                                         cbuf + s, c->cs - 1);
          if (clen[cl]) state[cl] = CL_COMP;
        }
      }
      /* Allocation happens in guest order, so the layout is sequential. */
      pthread_mutex_lock(&c->mu);
      while (c->next_write != idx && !c->failed) pthread_cond_wait(&c->cv, &c->mu);
      int failed = c->failed;
      pthread_mutex_unlock(&c->mu);
      if (failed) break;
      int r = 0;
      for (uint64_t cl = 0; cl < nc && r == 0; cl++) {
        uint64_t g = off + cl * c->cs;
        if (state[cl] == CL_DATA) r = qcow2_store_cluster(c->dst, g, data + cl * c->cs, c->cs, 0, &host[cl], &e);
        else if (state[cl] == CL_COMP) r = qcow2_store_cluster(c->dst, g, cbuf + cl * c->cs, clen[cl], 1, &host[cl], &e);
        else if (state[cl] == CL_ZERO) r = qcow2_set_zero_cluster(c->dst, g, &e);
      }
      /* Write while holding the turn: writes to one file serialise on its
       * inode lock anyway, and queueing here beats spinning there. */
      for (uint64_t cl = 0; cl < nc && r == 0;) {
        if (state[cl] == CL_COMP) {
          prealloc_ahead(c, host[cl], clen[cl]);
          r = si_pwrite_full(c->dst_fd, cbuf + cl * c->cs, clen[cl], host[cl], &e, "target");
          cl++;
          continue;
        }
        if (state[cl] != CL_DATA) { cl++; continue; }
        uint64_t end = cl + 1;
        while (end < nc && state[end] == CL_DATA && host[end] == host[cl] + (end - cl) * c->cs &&
               (!oc || sh[end] == sh[cl] + (end - cl) * c->cs))
          end++;
        prealloc_ahead(c, host[cl], (end - cl) * c->cs);
        r = oc ? copy_run(c, sh[cl], host[cl], (end - cl) * c->cs, buf, &e)
               : si_pwrite_full(c->dst_fd, data + cl * c->cs, (end - cl) * c->cs, host[cl], &e, "target");
        cl = end;
      }
      pthread_mutex_lock(&c->mu);
      c->next_write++;
      pthread_cond_broadcast(&c->cv);
      pthread_mutex_unlock(&c->mu);
      if (r < 0) goto fail;
    }
  chunk_done:
    pthread_mutex_lock(&c->mu);
    c->done_bytes += len;
    pthread_cond_broadcast(&c->main_cv);
    pthread_mutex_unlock(&c->mu);
    continue;
  fail:
    conv_fail(c, &e);
    break;
  }
out:
  free(buf); free(cbuf); free(sh); free(state); free(anydata); free(clen); free(host);
  si_compress_thread_cleanup();
  pthread_mutex_lock(&c->mu);
  c->running--;
  pthread_cond_broadcast(&c->main_cv);
  pthread_cond_broadcast(&c->cv);
  pthread_mutex_unlock(&c->mu);
  return NULL;
}

int si_convert(const char *srcp, const char *dstp, const si_convert_opts *o, si_progress *p, si_err *e) {
  if (!strcmp(srcp, dstp)) return si_set_err(e, SI_E_INVALID, "source and target are the same file");
  if (o->dst_fmt != SI_FMT_RAW && o->dst_fmt != SI_FMT_QCOW2) return si_set_err(e, SI_E_INVALID, "unknown target format");
  if (o->compress && o->dst_fmt != SI_FMT_QCOW2) return si_set_err(e, SI_E_INVALID, "compression requires a qcow2 target");
  if (o->create.backing_file && o->dst_fmt != SI_FMT_QCOW2) return si_set_err(e, SI_E_INVALID, "-B requires a qcow2 target");
  if (o->min_sparse % 512 || o->min_sparse > (16u << 20)) return si_set_err(e, SI_E_INVALID, "invalid min_sparse");
  si_image *src = si_open(srcp, o->src_fmt, o->allow_data_file ? SI_OPEN_ALLOW_DATA_FILE : 0, e);
  if (!src) return -1;
  /* Never truncate a file we are about to read (the source or one of its backing files). */
  struct stat dst_st;
  if (stat(dstp, &dst_st) == 0) {
    for (si_image *l = src; l; l = l->backing) {
      struct stat st;
      if (fstat(l->fd, &st) == 0 && st.st_dev == dst_st.st_dev && st.st_ino == dst_st.st_ino) {
        si_set_err(e, SI_E_INVALID, "target %s is %s", dstp, l == src ? "the source image" : "a backing file of the source");
        si_close(src, NULL);
        return -1;
      }
    }
  }
  conv c;
  memset(&c, 0, sizeof c);
  c.src = src;
  c.o = o;
  c.size = src->size;
  c.dst_fd = -1;
  c.cancel = p ? p->cancel : NULL;
  int started = 0;
  c.qcow2_out = o->dst_fmt == SI_FMT_QCOW2;
  c.top_only = o->create.backing_file != NULL;
  c.src_raw = src->fmt == SI_FMT_RAW;
  c.prealloc = !getenv("STRATO_IMG_NO_PREALLOC");
  c.cfr_whole = 1;
  c.cfr_ok = 1;
  c.oc_fd = -1;
  int r = -1;
  if (c.qcow2_out) {
    si_create_opts co = o->create;
    co.size = c.size;
    if (si_create(dstp, SI_FMT_QCOW2, &co, e) < 0) goto out;
    c.dst = si_open(dstp, SI_FMT_QCOW2, SI_OPEN_RDWR | SI_OPEN_NO_BACKING, e);
    if (!c.dst) goto out_unlink;
    c.dst_fd = c.dst->fd;
    c.cs = qcow2_cluster_size(c.dst);
    c.v2 = (o->create.version == 2);
    c.zero_init = !c.top_only;
  } else {
    c.dst_fd = open(dstp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (c.dst_fd < 0) { si_errno_err(e, errno, "creating %s", dstp); goto out; }
    if (ftruncate(c.dst_fd, (off_t)c.size) < 0) { si_errno_err(e, errno, "sizing %s", dstp); goto out_unlink; }
    c.cs = 64 * 1024;
    c.zero_init = 1;
  }
  /* One-copy path for qcow2 targets. Measured on a 2-vCPU PVM guest (4 GiB raw,
   * 1.2 GiB data): CPU -11%, wall -2..3% against pread + pwrite. Mapping the
   * source to scan it in place instead was slower there (first touch of each
   * mapped page is dear under a paravirtualised MMU), as was reading whole
   * clusters and then copy_file_range (its splice path costs more than pwrite). */
  if (c.qcow2_out && !o->compress && o->min_sparse && !c.top_only && !getenv("STRATO_IMG_NO_ONECOPY") &&
      (c.src_raw || (src->fmt == SI_FMT_QCOW2 && !src->backing))) {
    int mfd = c.src_raw ? src->fd : qcow2_data_fd(src);
    struct stat st;
    if (fstat(mfd, &st) == 0 && S_ISREG(st.st_mode)) {
      c.oc_len = (uint64_t)st.st_size;
      c.oc_fd = mfd;
    }
  }
  uint64_t want = 4u << 20; /* fewer turn hand-offs; measured ~20% faster than 1 MiB */
  const char *ck = getenv("STRATO_IMG_CHUNK_KB");
  if (ck && atoi(ck) >= 64) want = (uint64_t)atoi(ck) << 10;
  c.chunk = c.cs >= want ? c.cs : (want / c.cs) * c.cs;
  if (o->compress && c.chunk < 4 * c.cs) c.chunk = 4 * c.cs;
  c.nchunks = (c.size + c.chunk - 1) / c.chunk;
  pthread_mutex_init(&c.mu, NULL);
  pthread_mutex_init(&c.wmu, NULL);
  pthread_cond_init(&c.cv, NULL);
  pthread_cond_init(&c.main_cv, NULL);
  int nt = o->threads > 0 ? o->threads : si_ncpus() + (o->compress ? 0 : 1);
  if (nt > 16) nt = 16;
  if ((uint64_t)nt > c.nchunks) nt = c.nchunks ? (int)c.nchunks : 1;
  pthread_t th[16];
  c.running = 0;
  for (int i = 0; i < nt; i++) {
    pthread_mutex_lock(&c.mu);
    c.running++;
    pthread_mutex_unlock(&c.mu);
    if (pthread_create(&th[i], NULL, conv_worker, &c) != 0) {
      pthread_mutex_lock(&c.mu);
      c.running--;
      pthread_mutex_unlock(&c.mu);
      break;
    }
    started++;
  }
  if (!started && c.nchunks) { si_set_err(e, SI_E_IO, "could not start convert threads"); goto out_unlink; }
  pthread_mutex_lock(&c.mu);
  uint64_t last = UINT64_MAX;
  while (c.running > 0) {
    if (c.done_bytes != last && p && p->cb) {
      last = c.done_bytes;
      pthread_mutex_unlock(&c.mu);
      p->cb(p->opaque, last, c.size);
      pthread_mutex_lock(&c.mu);
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 100 * 1000 * 1000;
    if (ts.tv_nsec >= 1000000000) { ts.tv_sec++; ts.tv_nsec -= 1000000000; }
    pthread_cond_timedwait(&c.main_cv, &c.mu, &ts);
  }
  pthread_mutex_unlock(&c.mu);
  for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
  if (c.failed) { *e = c.err; goto out_unlink; }
  if (c.cancel && *c.cancel) { si_set_err(e, SI_E_CANCELLED, "convert cancelled"); goto out_unlink; }
  if (c.dst) {
    si_image *d = c.dst;
    c.dst = NULL;
    if (si_close(d, e) < 0) goto out_unlink;
    /* Release blocks preallocated past the end of the file. */
    struct stat st;
    if (c.pre_end && stat(dstp, &st) == 0 && truncate(dstp, st.st_size) < 0) {
      si_errno_err(e, errno, "trimming %s", dstp);
      goto out_unlink_closed;
    }
  }
  if (p && p->cb) p->cb(p->opaque, c.size, c.size);
  r = 0;
  goto out;
out_unlink:
  if (c.dst) { si_close(c.dst, NULL); c.dst = NULL; }
  else if (!c.qcow2_out && c.dst_fd >= 0) { close(c.dst_fd); c.dst_fd = -1; }
out_unlink_closed:
  unlink(dstp);
out:
  if (c.dst) si_close(c.dst, NULL);
  if (!c.qcow2_out && c.dst_fd >= 0) close(c.dst_fd);
  si_close(src, NULL);
  if (c.nchunks || started) {
    pthread_mutex_destroy(&c.mu);
    pthread_mutex_destroy(&c.wmu);
    pthread_cond_destroy(&c.cv);
    pthread_cond_destroy(&c.main_cv);
  }
  return r;
}

/* ------------------------------------------------------------ compare */

int si_compare(const char *a, int fa, const char *b, int fb, int strict, uint64_t *diff_off, si_progress *p,
               si_err *e) {
  si_image *A = si_open(a, fa, 0, e);
  if (!A) return -1;
  si_image *B = si_open(b, fb, 0, e);
  if (!B) { si_close(A, NULL); return -1; }
  int r = 0;
  if (strict && A->size != B->size) { *diff_off = A->size < B->size ? A->size : B->size; r = 1; goto out; }
  uint64_t size = A->size > B->size ? A->size : B->size;
  const uint64_t CH = 1u << 20;
  uint8_t *ba = si_malloc(CH, e), *bb = si_malloc(CH, e);
  if (!ba || !bb) { r = -1; goto out2; }
  for (uint64_t off = 0; off < size;) {
    if (p && p->cancel && *p->cancel) { r = si_set_err(e, SI_E_CANCELLED, "compare cancelled"); break; }
    uint64_t na, nb;
    int za, zb;
    if (chain_status(A, off, size - off, &na, &za, e) < 0 || chain_status(B, off, size - off, &nb, &zb, e) < 0) { r = -1; break; }
    uint64_t n = na < nb ? na : nb;
    if (za && zb) { off += n; continue; }
    if (n > CH) n = CH;
    if (si_read(A, ba, n, off, e) < 0 || si_read(B, bb, n, off, e) < 0) { r = -1; break; }
    if (memcmp(ba, bb, n)) {
      uint64_t i = 0;
      while (ba[i] == bb[i]) i++;
      *diff_off = (off + i) & ~511ULL;
      r = 1;
      break;
    }
    off += n;
    if (p && p->cb) p->cb(p->opaque, off, size);
  }
out2:
  free(ba); free(bb);
out:
  si_close(A, NULL);
  si_close(B, NULL);
  return r;
}

/* ------------------------------------------------------------ map */

int si_map(const char *path, int fmt, int (*cb)(void *, const si_map_entry *), void *opaque, si_err *e) {
  si_image *img = si_open(path, fmt, 0, e);
  if (!img) return -1;
  si_map_entry cur;
  int have = 0, r = 0;
  for (uint64_t off = 0; off < img->size;) {
    uint64_t len = img->size - off;
    si_image *l = img;
    int depth = 0;
    si_map_entry m = {off, 0, 0, 0, 0, 0, 0, 0};
    for (;;) {
      uint64_t n, h;
      int k;
      if (off >= l->size) { m.length = len; m.depth = depth; m.zero = 1; m.present = 1; break; }
      if (si_block_status(l, off, len, &n, &k, &h, e) < 0) { r = -1; goto done; }
      if (n < len) len = n;
      if (k == SI_BS_UNALLOC && l->backing) { l = l->backing; depth++; continue; }
      m.length = len;
      m.depth = depth;
      if (k == SI_BS_UNALLOC) { m.present = 0; m.zero = 1; }
      else if (k == SI_BS_ZERO) {
        m.present = 1; m.zero = 1;
        if (l->fmt == SI_FMT_RAW) { m.has_offset = 1; m.offset = h; }
      } else if (k == SI_BS_COMPRESSED) { m.present = 1; m.data = 1; }
      else { m.present = 1; m.data = 1; m.has_offset = 1; m.offset = h; }
      break;
    }
    if (have && cur.depth == m.depth && cur.present == m.present && cur.zero == m.zero && cur.data == m.data &&
        cur.has_offset == m.has_offset && (!m.has_offset || cur.offset + cur.length == m.offset)) {
      cur.length += m.length;
    } else {
      if (have && cb(opaque, &cur)) goto done;
      cur = m;
      have = 1;
    }
    off += m.length;
  }
  if (have) cb(opaque, &cur);
done:
  si_close(img, NULL);
  return r;
}

/* ------------------------------------------------------------ resize, rebase, commit */

int si_resize(const char *path, int fmt, uint64_t new_size, int shrink, si_err *e) {
  si_image *img = si_open(path, fmt, SI_OPEN_RDWR | SI_OPEN_NO_BACKING, e);
  if (!img) return -1;
  int r;
  if (img->fmt == SI_FMT_RAW) {
    r = 0;
    if (new_size < img->size) {
      if (!shrink) r = si_set_err(e, SI_E_INVALID, "use --shrink to shrink an image");
      else {
        off_t d = lseek(img->fd, (off_t)new_size, SEEK_DATA);
        if (d >= 0 && (uint64_t)d < img->size)
          r = si_set_err(e, SI_E_PRECONDITION, "cannot shrink: data is allocated at offset %lld beyond the new size",
                         (long long)d);
      }
    }
    if (r == 0 && ftruncate(img->fd, (off_t)new_size) < 0) r = si_errno_err(e, errno, "resizing %s", path);
  } else {
    r = qcow2_resize(img, new_size, shrink, e);
  }
  int c = si_close(img, r < 0 ? NULL : e);
  return r < 0 ? r : c;
}

int si_rebase_unsafe(const char *path, const char *backing, const char *backing_fmt, si_err *e) {
  si_image *img = si_open(path, SI_FMT_QCOW2, SI_OPEN_RDWR | SI_OPEN_NO_BACKING, e);
  if (!img) return -1;
  int r = qcow2_set_backing(img, backing, backing_fmt, e);
  int c = si_close(img, r < 0 ? NULL : e);
  return r < 0 ? r : c;
}

int si_commit(const char *path, int fmt, int keep, si_progress *p, si_err *e) {
  si_image *top = si_open(path, fmt, (keep ? 0 : SI_OPEN_RDWR) | SI_OPEN_NO_BACKING, e);
  if (!top) return -1;
  si_info info;
  int r = -1;
  si_image *base = NULL;
  uint8_t *buf = NULL;
  if (si_get_info(top, &info, e) < 0) goto out;
  if (top->fmt != SI_FMT_QCOW2 || !info.backing_file[0]) { si_set_err(e, SI_E_INVALID, "image does not have a backing file"); goto out; }
  if (!info.backing_format[0]) { si_set_err(e, SI_E_UNSUPPORTED, "backing file has no format; refusing to probe it"); goto out; }
  char bp[4096];
  if (si_image_set_backing_path(path, info.backing_file, bp, sizeof bp) < 0) { si_set_err(e, SI_E_INVALID, "path too long"); goto out; }
  int bf = !strcmp(info.backing_format, "raw") ? SI_FMT_RAW : !strcmp(info.backing_format, "qcow2") ? SI_FMT_QCOW2 : -2;
  if (bf < 0) { si_set_err(e, SI_E_UNSUPPORTED, "unsupported backing format '%s'", info.backing_format); goto out; }
  base = si_open(bp, bf, SI_OPEN_RDWR, e);
  if (!base) goto out;
  if (base->size < top->size) {
    if (base->fmt == SI_FMT_RAW) {
      if (ftruncate(base->fd, (off_t)top->size) < 0) { si_errno_err(e, errno, "growing %s", bp); goto out; }
      base->size = top->size;
    } else if (qcow2_resize(base, top->size, 0, e) < 0) goto out;
  }
  const uint64_t CH = 1u << 20;
  buf = si_malloc(CH, e);
  if (!buf) goto out;
  for (uint64_t off = 0; off < top->size;) {
    if (p && p->cancel && *p->cancel) { si_set_err(e, SI_E_CANCELLED, "commit cancelled"); goto out; }
    uint64_t n, h;
    int k;
    uint64_t len = top->size - off < CH ? top->size - off : CH;
    if (si_block_status(top, off, len, &n, &k, &h, e) < 0) goto out;
    if (k == SI_BS_DATA || k == SI_BS_COMPRESSED) {
      if (si_read(top, buf, n, off, e) < 0 || si_write(base, buf, n, off, e) < 0) goto out;
    } else if (k == SI_BS_ZERO) {
      if (si_write_zeroes(base, n, off, e) < 0) goto out;
    }
    off += n;
    if (p && p->cb) p->cb(p->opaque, off, top->size);
  }
  if (si_close(base, e) < 0) { base = NULL; goto out; }
  base = NULL;
  if (!keep && qcow2_make_empty(top, e) < 0) goto out;
  r = 0;
out:
  free(buf);
  if (base) si_close(base, NULL);
  int c = si_close(top, r < 0 ? NULL : e);
  return r < 0 ? r : c;
}

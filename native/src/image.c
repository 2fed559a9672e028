/* Format-independent image layer: open (with backing chain), read through
 * the chain, write, block status. */
#include "internal.h"
#include <unistd.h>
#include <fcntl.h>
#include <sys/stat.h>

static si_image *open_depth(const char *path, int fmt, int flags, int depth, si_err *e);

static int parse_fmt(const char *s) {
  if (!strcmp(s, "raw")) return SI_FMT_RAW;
  if (!strcmp(s, "qcow2")) return SI_FMT_QCOW2;
  return -2;
}

static si_image *open_depth(const char *path, int fmt, int flags, int depth, si_err *e) {
  if (depth > SI_MAX_CHAIN) {
    si_set_err(e, SI_E_CORRUPT, "backing chain deeper than %d (a loop?) at %s", SI_MAX_CHAIN, path);
    return NULL;
  }
  si_image *img = si_calloc(sizeof *img, e);
  if (!img) return NULL;
  img->fd = -1;
  img->flags = flags;
  img->writable = !!(flags & SI_OPEN_RDWR);
  img->path = strdup(path);
  if (!img->path) { si_set_err(e, SI_E_NOMEM, "out of memory"); free(img); return NULL; }
  img->fd = open(path, (img->writable ? O_RDWR : O_RDONLY) | O_CLOEXEC);
  if (img->fd < 0) { si_errno_err(e, errno, "could not open '%s'", path); goto fail; }
  struct stat st;
  if (fstat(img->fd, &st) < 0) { si_errno_err(e, errno, "stat %s", path); goto fail; }
  if (S_ISDIR(st.st_mode)) { si_set_err(e, SI_E_INVALID, "'%s' is a directory", path); goto fail; }
  if (fmt == SI_FMT_PROBE) {
    uint8_t h[8] = {0};
    if (si_pread_full(img->fd, h, 8, 0, e, "image header") < 0) goto fail;
    fmt = qcow2_probe(h, 8) ? SI_FMT_QCOW2 : SI_FMT_RAW;
  }
  img->fmt = fmt;
  if (fmt == SI_FMT_RAW) {
    img->size = (uint64_t)st.st_size;
    return img;
  }
  if (fmt != SI_FMT_QCOW2) { si_set_err(e, SI_E_INVALID, "unknown image format"); goto fail; }
  if (qcow2_open(img, e) < 0) goto fail;
  si_info info;
  memset(&info, 0, sizeof info);
  qcow2_get_info(img, &info, e);
  if (info.backing_file[0] && !(flags & SI_OPEN_NO_BACKING)) {
    if (!info.backing_format[0]) {
      si_set_err(e, SI_E_UNSUPPORTED,
                 "%s: backing file '%s' has no backing format; refusing to probe it (set one with rebase -u -F)", path,
                 info.backing_file);
      goto fail;
    }
    int bf = parse_fmt(info.backing_format);
    if (bf < 0) {
      si_set_err(e, SI_E_UNSUPPORTED, "%s: unsupported backing format '%s'", path, info.backing_format);
      goto fail;
    }
    if (!strncmp(info.backing_file, "json:", 5) || strstr(info.backing_file, "://")) {
      si_set_err(e, SI_E_UNSUPPORTED, "%s: backing file '%s' is not a plain file name", path, info.backing_file);
      goto fail;
    }
    char bp[4096];
    if (si_image_set_backing_path(path, info.backing_file, bp, sizeof bp) < 0) {
      si_set_err(e, SI_E_INVALID, "backing path too long");
      goto fail;
    }
    img->backing = open_depth(bp, bf, flags & (SI_OPEN_ALLOW_DATA_FILE), depth + 1, e);
    if (!img->backing) goto fail;
  }
  return img;
fail:
  si_close(img, NULL);
  return NULL;
}

si_image *si_open(const char *path, int fmt, int flags, si_err *e) { return open_depth(path, fmt, flags, 0, e); }

int si_flush(si_image *img, si_err *e) {
  if (img->fmt == SI_FMT_QCOW2 && img->q) return qcow2_flush(img, e);
  return 0;
}

int si_close(si_image *img, si_err *e) {
  if (!img) return 0;
  int r = 0;
  if (img->writable && img->fmt == SI_FMT_QCOW2 && img->q && e) r = qcow2_flush(img, e);
  if (img->fmt == SI_FMT_QCOW2) qcow2_free(img);
  if (img->backing) si_close(img->backing, NULL);
  if (img->fd >= 0) close(img->fd);
  free(img->path);
  free(img);
  return r;
}

uint64_t si_size(const si_image *img) { return img->size; }
int si_format(const si_image *img) { return img->fmt; }
si_image *si_backing(const si_image *img) { return img->backing; }

int si_block_status(si_image *img, uint64_t off, uint64_t len, uint64_t *pnum, int *kind, uint64_t *host, si_err *e) {
  if (off >= img->size || len == 0) { *pnum = len; *kind = SI_BS_ZERO; *host = 0; return 0; }
  if (len > img->size - off) len = img->size - off;
  if (img->fmt == SI_FMT_QCOW2) return qcow2_block_status(img, off, len, pnum, kind, host, e);
  *host = off;
  off_t d = lseek(img->fd, (off_t)off, SEEK_DATA);
  if (d < 0) {
    if (errno == ENXIO) { *kind = SI_BS_ZERO; *pnum = len; return 0; }
    *kind = SI_BS_DATA; *pnum = len; return 0; /* no SEEK_DATA: all data */
  }
  if ((uint64_t)d > off) {
    uint64_t n = (uint64_t)d - off;
    *kind = SI_BS_ZERO; *pnum = n < len ? n : len;
    return 0;
  }
  off_t h = lseek(img->fd, (off_t)off, SEEK_HOLE);
  uint64_t n = h < 0 || (uint64_t)h <= off ? len : (uint64_t)h - off;
  *kind = SI_BS_DATA; *pnum = n < len ? n : len;
  return 0;
}

int si_read(si_image *img, void *buf, uint64_t len, uint64_t off, si_err *e) {
  uint8_t *p = buf;
  if (off >= img->size) { memset(p, 0, len); return 0; }
  if (len > img->size - off) {
    memset(p + (img->size - off), 0, len - (img->size - off));
    len = img->size - off;
  }
  if (img->fmt == SI_FMT_RAW) return si_pread_full(img->fd, p, len, off, e, "raw image");
  uint8_t *cbuf = NULL;
  uint64_t cs = qcow2_cluster_size(img);
  while (len) {
    uint64_t n, host;
    int kind;
    if (qcow2_block_status(img, off, len, &n, &kind, &host, e) < 0) { free(cbuf); return -1; }
    if (n == 0 || n > len) { free(cbuf); return si_set_err(e, SI_E_IO, "block status made no progress"); }
    switch (kind) {
    case SI_BS_DATA:
      if (si_pread_full(qcow2_data_fd(img), p, n, host, e, "data cluster") < 0) { free(cbuf); return -1; }
      break;
    case SI_BS_ZERO: memset(p, 0, n); break;
    case SI_BS_UNALLOC:
      if (img->backing) {
        if (si_read(img->backing, p, n, off, e) < 0) { free(cbuf); return -1; }
      } else {
        memset(p, 0, n);
      }
      break;
    case SI_BS_COMPRESSED:
      if (!cbuf && !(cbuf = si_malloc(cs, e))) return -1;
      if (qcow2_read_compressed(img, host, cbuf, e) < 0) { free(cbuf); return -1; }
      memcpy(p, cbuf + (off & (cs - 1)), n);
      break;
    }
    p += n; off += n; len -= n;
  }
  free(cbuf);
  return 0;
}

int si_write(si_image *img, const void *buf, uint64_t len, uint64_t off, si_err *e) {
  if (!img->writable) return si_set_err(e, SI_E_PERM, "%s is open read-only", img->path);
  if (off > img->size || len > img->size - off) return si_set_err(e, SI_E_INVALID, "write beyond the end of the image");
  if (img->fmt == SI_FMT_RAW) return si_pwrite_full(img->fd, buf, len, off, e, "raw image");
  return qcow2_write(img, buf, len, off, e);
}

int si_write_zeroes(si_image *img, uint64_t len, uint64_t off, si_err *e) {
  if (!img->writable) return si_set_err(e, SI_E_PERM, "%s is open read-only", img->path);
  if (off > img->size || len > img->size - off) return si_set_err(e, SI_E_INVALID, "write beyond the end of the image");
  if (img->fmt == SI_FMT_RAW) {
    if (fallocate(img->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) == 0) return 0;
    uint8_t *z = si_calloc(1 << 20, e);
    if (!z) return -1;
    while (len) {
      uint64_t n = len < (1 << 20) ? len : (1 << 20);
      if (si_pwrite_full(img->fd, z, n, off, e, "raw image") < 0) { free(z); return -1; }
      off += n; len -= n;
    }
    free(z);
    return 0;
  }
  return qcow2_write_zeroes(img, len, off, e);
}

int si_get_info(si_image *img, si_info *info, si_err *e) {
  memset(info, 0, sizeof *info);
  info->format = img->fmt;
  info->virtual_size = img->size;
  struct stat st;
  if (fstat(img->fd, &st) < 0) return si_errno_err(e, errno, "stat %s", img->path);
  info->file_size = (uint64_t)st.st_size;
  info->actual_size = (uint64_t)st.st_blocks * 512;
  if (img->fmt == SI_FMT_QCOW2) return qcow2_get_info(img, info, e);
  return 0;
}

void si_create_opts_init(si_create_opts *o) {
  memset(o, 0, sizeof *o);
  o->refcount_order = -1;
}

int si_create(const char *path, int fmt, const si_create_opts *o, si_err *e) {
  uint64_t size = o->size;
  if (fmt == SI_FMT_RAW) {
    if (o->backing_file) return si_set_err(e, SI_E_INVALID, "raw images cannot have a backing file");
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return si_errno_err(e, errno, "creating %s", path);
    int r = ftruncate(fd, (off_t)size) < 0 ? si_errno_err(e, errno, "sizing %s", path) : 0;
    close(fd);
    return r;
  }
  if (fmt != SI_FMT_QCOW2) return si_set_err(e, SI_E_INVALID, "unknown image format");
  if (o->backing_file) {
    if (!o->backing_format) return si_set_err(e, SI_E_INVALID, "a backing file needs an explicit backing format (-F)");
    int bf = !strcmp(o->backing_format, "raw") ? SI_FMT_RAW : !strcmp(o->backing_format, "qcow2") ? SI_FMT_QCOW2 : -2;
    if (bf < 0) return si_set_err(e, SI_E_INVALID, "unsupported backing format '%s'", o->backing_format);
    if (size == 0) {
      char bp[4096];
      if (si_image_set_backing_path(path, o->backing_file, bp, sizeof bp) < 0)
        return si_set_err(e, SI_E_INVALID, "backing path too long");
      si_image *b = si_open(bp, bf, SI_OPEN_NO_BACKING, e);
      if (!b) return -1;
      size = b->size;
      si_close(b, NULL);
    }
  }
  return qcow2_create_file(path, o, size, e);
}

#include "internal.h"
#include <stdarg.h>
#include <unistd.h>
#include <fcntl.h>
#include <sys/stat.h>

const char *si_err_class(int code) {
  switch (code) {
  case SI_E_INVALID: return "INVALID_ARGUMENT";
  case SI_E_NOTFOUND: return "NOT_FOUND";
  case SI_E_CORRUPT: return "FAILED_PRECONDITION";
  case SI_E_UNSUPPORTED: return "FAILED_PRECONDITION";
  case SI_E_PRECONDITION: return "FAILED_PRECONDITION";
  case SI_E_CANCELLED: return "FAILED_PRECONDITION";
  case SI_E_NOMEM: return "RESOURCE_EXHAUSTED";
  case SI_E_EXISTS: return "ALREADY_EXISTS";
  case SI_E_PERM: return "PERMISSION_DENIED";
  default: return "INTERNAL";
  }
}

const char *si_err_kind(int code) {
  switch (code) {
  case SI_E_INVALID: return "invalid";
  case SI_E_NOTFOUND: return "notfound";
  case SI_E_CORRUPT: return "corrupt";
  case SI_E_UNSUPPORTED: return "unsupported";
  case SI_E_PRECONDITION: return "precondition";
  case SI_E_CANCELLED: return "cancelled";
  case SI_E_NOMEM: return "nomem";
  case SI_E_EXISTS: return "exists";
  case SI_E_PERM: return "perm";
  case SI_E_IO: return "io";
  default: return "internal";
  }
}

int si_set_err(si_err *e, int code, const char *fmt, ...) {
  if (e && (e->code == SI_OK || code == SI_E_CANCELLED)) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    e->code = code;
  }
  return -1;
}

int si_errno_err(si_err *e, int err, const char *fmt, ...) {
  if (!e || e->code != SI_OK) return -1;
  char buf[400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  int code = SI_E_IO;
  if (err == ENOENT) code = SI_E_NOTFOUND;
  else if (err == EACCES || err == EPERM || err == EROFS) code = SI_E_PERM;
  else if (err == EEXIST) code = SI_E_EXISTS;
  else if (err == ENOMEM) code = SI_E_NOMEM;
  return si_set_err(e, code, "%s: %s", buf, strerror(err));
}

void *si_malloc(size_t n, si_err *e) {
  void *p = malloc(n ? n : 1);
  if (!p) si_set_err(e, SI_E_NOMEM, "out of memory allocating %zu bytes", n);
  return p;
}
void *si_calloc(size_t n, si_err *e) {
  void *p = calloc(1, n ? n : 1);
  if (!p) si_set_err(e, SI_E_NOMEM, "out of memory allocating %zu bytes", n);
  return p;
}

int si_pread_full(int fd, void *buf, size_t len, uint64_t off, si_err *e, const char *what) {
  uint8_t *p = buf;
  while (len) {
    ssize_t n = pread(fd, p, len, (off_t)off);
    if (n < 0) {
      if (errno == EINTR) continue;
      return si_errno_err(e, errno, "reading %s at offset %llu", what, (unsigned long long)off);
    }
    if (n == 0) { memset(p, 0, len); return 0; }
    p += n; len -= (size_t)n; off += (uint64_t)n;
  }
  return 0;
}

int si_pread_exact(int fd, void *buf, size_t len, uint64_t off, si_err *e, const char *what) {
  uint8_t *p = buf;
  while (len) {
    ssize_t n = pread(fd, p, len, (off_t)off);
    if (n < 0) {
      if (errno == EINTR) continue;
      return si_errno_err(e, errno, "reading %s at offset %llu", what, (unsigned long long)off);
    }
    if (n == 0)
      return si_set_err(e, SI_E_CORRUPT, "%s at offset %llu lies beyond the end of the file", what,
                        (unsigned long long)off);
    p += n; len -= (size_t)n; off += (uint64_t)n;
  }
  return 0;
}

int si_pwrite_full(int fd, const void *buf, size_t len, uint64_t off, si_err *e, const char *what) {
  const uint8_t *p = buf;
  while (len) {
    ssize_t n = pwrite(fd, p, len, (off_t)off);
    if (n < 0) {
      if (errno == EINTR) continue;
      return si_errno_err(e, errno, "writing %s at offset %llu", what, (unsigned long long)off);
    }
    p += n; len -= (size_t)n; off += (uint64_t)n;
  }
  return 0;
}

int si_is_zero(const void *buf, size_t len) {
  const uint8_t *p = buf;
  while (len && ((uintptr_t)p & 15)) { if (*p) return 0; p++; len--; }
  const uint64_t *q = (const uint64_t *)p;
  while (len >= 64) {
    if (q[0] | q[1] | q[2] | q[3] | q[4] | q[5] | q[6] | q[7]) return 0;
    q += 8; len -= 64;
  }
  p = (const uint8_t *)q;
  while (len) { if (*p) return 0; p++; len--; }
  return 1;
}

int si_ncpus(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n < 1 ? 1 : (n > 16 ? 16 : (int)n);
}

/* ---------------------------------------------------------------- sparse files */
int si_sparse_extents(const char *path, int (*cb)(void *, const si_extent *), void *opaque, si_err *e) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return si_errno_err(e, errno, "opening %s", path);
  struct stat st;
  if (fstat(fd, &st) < 0) { close(fd); return si_errno_err(e, errno, "stat %s", path); }
  uint64_t size = (uint64_t)st.st_size, pos = 0;
  int rc = 0;
  while (pos < size) {
    off_t d = lseek(fd, (off_t)pos, SEEK_DATA);
    if (d < 0 && errno != ENXIO) { rc = si_errno_err(e, errno, "SEEK_DATA on %s", path); break; }
    uint64_t data = d < 0 ? size : (uint64_t)d;
    if (data > pos) {
      si_extent x = {pos, data - pos, 0};
      if (cb(opaque, &x)) break;
      pos = data;
      if (pos >= size) break;
    }
    off_t h = lseek(fd, (off_t)pos, SEEK_HOLE);
    uint64_t hole = h < 0 ? size : (uint64_t)h;
    if (hole > size) hole = size;
    if (hole <= pos) { rc = si_set_err(e, SI_E_IO, "SEEK_HOLE on %s went backwards", path); break; }
    si_extent x = {pos, hole - pos, 1};
    if (cb(opaque, &x)) break;
    pos = hole;
  }
  close(fd);
  return rc;
}

int si_punch_hole(const char *path, uint64_t offset, uint64_t length, si_err *e) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return si_errno_err(e, errno, "opening %s", path);
  int rc = 0;
  if (length && fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)offset, (off_t)length) < 0)
    rc = si_errno_err(e, errno, "punching a hole in %s", path);
  close(fd);
  return rc;
}

int si_file_sizes(const char *path, uint64_t *apparent, uint64_t *allocated, si_err *e) {
  struct stat st;
  if (stat(path, &st) < 0) return si_errno_err(e, errno, "stat %s", path);
  *apparent = (uint64_t)st.st_size;
  *allocated = (uint64_t)st.st_blocks * 512;
  return 0;
}

int si_sparse_copy(const char *src, const char *dst, si_progress *p, si_err *e) {
  si_convert_opts o;
  si_convert_opts_init(&o);
  o.src_fmt = SI_FMT_RAW;
  o.dst_fmt = SI_FMT_RAW;
  return si_convert(src, dst, &o, p, e);
}

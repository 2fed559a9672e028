/* Sequential bulk I/O that bypasses the page cache where the filesystem
 * allows (O_DIRECT): the sink writes received data (image uploads) staged in
 * an aligned buffer, all-zero 64 KiB blocks as holes, and finish() sets the
 * size and fdatasyncs; the source reads a file front to back into aligned
 * places of the caller's buffers (image downloads). Filling or reading
 * through the page cache costs about a CPU-second per GiB on a VM like the
 * ones Strato runs on (page allocation), and a GiB image read once does not
 * belong in the cache anyway. Where O_DIRECT is refused (tmpfs, some network
 * filesystems) both fall back to ordinary I/O. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "internal.h"

#define SINK_BLOCK (64u * 1024u)
#define SINK_STAGE (4u * 1024u * 1024u) /* a multiple of SINK_BLOCK */
#define SINK_ALIGN 4096u

struct si_sink {
  int fd;
  int direct;
  uint8_t *stage;
  size_t fill;       /* bytes in stage */
  uint64_t base;     /* file offset of stage[0] */
  uint64_t size;     /* bytes received */
  char path[1024];
};

static int sink_pwrite(si_sink *s, const uint8_t *p, size_t len, uint64_t off, si_err *e) {
  for (;;) {
    ssize_t n = pwrite(s->fd, p, len, (off_t)off);
    if (n == (ssize_t)len) return 0;
    if (n >= 0) { p += n; len -= (size_t)n; off += (uint64_t)n; continue; }
    if (errno == EINTR) continue;
    /* Some filesystems accept O_DIRECT at open and refuse the I/O. */
    if (errno == EINVAL && s->direct) {
      int fl = fcntl(s->fd, F_GETFL);
      if (fl >= 0 && fcntl(s->fd, F_SETFL, fl & ~O_DIRECT) == 0) { s->direct = 0; continue; }
    }
    return si_errno_err(e, errno, "writing %s at offset %llu", s->path, (unsigned long long)off);
  }
}

/* Writes stage[0, len) (len a multiple of SINK_ALIGN, or the padded tail),
 * skipping all-zero blocks. */
static int sink_flush(si_sink *s, size_t len, si_err *e) {
  size_t run = (size_t)-1;
  for (size_t off = 0; off < len; off += SINK_BLOCK) {
    size_t n = len - off < SINK_BLOCK ? len - off : SINK_BLOCK;
    if (si_is_zero(s->stage + off, n)) {
      if (run != (size_t)-1 && sink_pwrite(s, s->stage + run, off - run, s->base + run, e) < 0) return -1;
      run = (size_t)-1;
    } else if (run == (size_t)-1) {
      run = off;
    }
  }
  if (run != (size_t)-1 && sink_pwrite(s, s->stage + run, len - run, s->base + run, e) < 0) return -1;
  return 0;
}

int si_sink_open(const char *path, int direct, si_sink **out, si_err *e) {
  *out = NULL;
  if (strlen(path) >= sizeof(((si_sink *)0)->path)) return si_set_err(e, SI_E_INVALID, "path too long: %s", path);
  si_sink *s = si_calloc(sizeof *s, e);
  if (!s) return -1;
  strcpy(s->path, path);
  if (posix_memalign((void **)&s->stage, SINK_ALIGN, SINK_STAGE) != 0) {
    free(s);
    return si_set_err(e, SI_E_NOMEM, "out of memory for the write buffer of %s", path);
  }
  int flags = O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC;
  s->fd = -1;
  if (direct) {
    s->fd = open(path, flags | O_DIRECT, 0640);
    s->direct = s->fd >= 0;
  }
  if (s->fd < 0) s->fd = open(path, flags, 0640);
  if (s->fd < 0) {
    int err = errno;
    free(s->stage);
    free(s);
    return si_errno_err(e, err, "creating %s", path);
  }
  *out = s;
  return 0;
}

int si_sink_write(si_sink *s, const void *buf, size_t len, si_err *e) {
  const uint8_t *p = buf;
  while (len) {
    size_t n = SINK_STAGE - s->fill < len ? SINK_STAGE - s->fill : len;
    memcpy(s->stage + s->fill, p, n);
    s->fill += n; s->size += n; p += n; len -= n;
    if (s->fill == SINK_STAGE) {
      if (sink_flush(s, SINK_STAGE, e) < 0) return -1;
      s->base += SINK_STAGE;
      s->fill = 0;
    }
  }
  return 0;
}

int si_sink_finish(si_sink *s, si_err *e) {
  if (s->fill) {
    /* The tail goes out padded to the alignment; the truncate below drops the padding. */
    size_t padded = (s->fill + SINK_ALIGN - 1) / SINK_ALIGN * SINK_ALIGN;
    memset(s->stage + s->fill, 0, padded - s->fill);
    if (sink_flush(s, padded, e) < 0) return -1;
    s->base += s->fill;
    s->fill = 0;
  }
  if (ftruncate(s->fd, (off_t)s->size) < 0) return si_errno_err(e, errno, "setting the size of %s", s->path);
  if (fdatasync(s->fd) < 0) return si_errno_err(e, errno, "syncing %s", s->path);
  return 0;
}

uint64_t si_sink_size(const si_sink *s) { return s->size; }
int si_sink_direct(const si_sink *s) { return s->direct; }

void si_sink_close(si_sink *s) {
  if (!s) return;
  if (s->fd >= 0) close(s->fd);
  free(s->stage);
  free(s);
}

/* ---------------------------------------------------------------- source */

struct si_source {
  int fd;
  int direct;
  uint64_t pos;
  char path[1024];
};

int si_source_open(const char *path, int direct, si_source **out, si_err *e) {
  *out = NULL;
  if (strlen(path) >= sizeof(((si_source *)0)->path)) return si_set_err(e, SI_E_INVALID, "path too long: %s", path);
  si_source *s = si_calloc(sizeof *s, e);
  if (!s) return -1;
  strcpy(s->path, path);
  s->fd = -1;
  if (direct) {
    s->fd = open(path, O_RDONLY | O_CLOEXEC | O_DIRECT);
    s->direct = s->fd >= 0;
  }
  if (s->fd < 0) s->fd = open(path, O_RDONLY | O_CLOEXEC);
  if (s->fd < 0) {
    int err = errno;
    free(s);
    return si_errno_err(e, err, "opening %s", path);
  }
  *out = s;
  return 0;
}

size_t si_source_align(const si_source *s) { return s->direct ? SINK_ALIGN : 1; }

int si_source_read(si_source *s, void *buf, size_t len, size_t *got, si_err *e) {
  *got = 0;
  uint8_t *p = buf;
  if (s->direct && (((uintptr_t)p | len) & (SINK_ALIGN - 1))) return si_set_err(e, SI_E_INVALID, "unaligned direct read of %s", s->path);
  while (len) {
    ssize_t n = pread(s->fd, p, len, (off_t)s->pos);
    if (n == 0) return 0;
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EINVAL && s->direct) {
        int fl = fcntl(s->fd, F_GETFL);
        if (fl >= 0 && fcntl(s->fd, F_SETFL, fl & ~O_DIRECT) == 0) { s->direct = 0; continue; }
      }
      return si_errno_err(e, errno, "reading %s at offset %llu", s->path, (unsigned long long)s->pos);
    }
    p += n; len -= (size_t)n; s->pos += (uint64_t)n; *got += (size_t)n;
    /* A short direct read is the end of the file (the rest is not aligned). */
    if (s->direct && (n & (SINK_ALIGN - 1))) return 0;
  }
  return 0;
}

void si_source_close(si_source *s) {
  if (!s) return;
  if (s->fd >= 0) close(s->fd);
  free(s);
}

/* libFuzzer harness for the header/table parsers: the format inspector, the
 * qcow2 open path (header, extensions, L1), block status, reads (including
 * compressed clusters), check and repair, and one allocating write. The
 * input lives in a memfd, so nothing outside it is ever touched. */
#define _GNU_SOURCE
#include "../src/strato_img.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static void walk(const char *path, int flags) {
  si_err e = {0, ""};
  si_image *img = si_open(path, SI_FMT_QCOW2, flags | SI_OPEN_NO_BACKING, &e);
  if (!img) return;
  si_info info;
  si_get_info(img, &info, &e);
  uint64_t size = si_size(img), off = 0;
  for (int i = 0; i < 2048 && off < size; i++) {
    uint64_t n = 0, h = 0;
    int k = 0;
    e.code = 0;
    if (si_block_status(img, off, size - off, &n, &k, &h, &e) < 0 || n == 0) break;
    off += n;
  }
  static uint8_t buf[1 << 17];
  uint64_t spots[] = {0, size / 2, size > sizeof buf ? size - sizeof buf : 0};
  for (int i = 0; i < 3; i++) {
    e.code = 0;
    si_read(img, buf, sizeof buf, spots[i], &e);
  }
  if (flags & SI_OPEN_RDWR) {
    memset(buf, 0xa5, 4096);
    e.code = 0;
    if (size >= 8192) si_write(img, buf, 4096, size / 3, &e);
  }
  e.code = 0;
  si_close(img, &e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > (1u << 20)) return 0;
  si_inspect_result ir;
  si_inspect_buf(data, size, size, &ir);
  int fd = memfd_create("strato-fuzz", MFD_CLOEXEC);
  if (fd < 0) return 0;
  if (write(fd, data, size) != (ssize_t)size) { close(fd); return 0; }
  char path[64];
  snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  walk(path, 0);
  si_err e = {0, ""};
  si_check_result r;
  if (si_check(path, 0, &r, &e) == 0) si_check_free(&r);
  e.code = 0;
  if (si_check(path, SI_REPAIR_ALL, &r, &e) == 0) si_check_free(&r);
  walk(path, SI_OPEN_RDWR);
  close(fd);
  return 0;
}

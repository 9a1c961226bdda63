/*
 * Test-only LD_PRELOAD shim (fault injection: a real disk cannot be made slow on demand). While
 * the file named by SLOW_SYNC_FLAG exists, every fsync/fdatasync of a SQLite write-ahead log
 * (a descriptor whose path ends in "-wal") sleeps SLOW_SYNC_MS before the real call, so a reader
 * in another process can look at the database while a sync is running. It logs to SLOW_SYNC_LOG,
 * with CLOCK_MONOTONIC nanoseconds (the clock of Node's process.hrtime.bigint() in every process):
 *   "W <ns>"          a write to a -wal file returned
 *   "B <id> <ns>"     a sync of a -wal file began (before the sleep)
 *   "E <id> <ns>"     that sync returned
 * While the file named by FAIL_SYNC_FLAG exists, every fsync/fdatasync of a -wal file fails with
 * EIO instead (the real call is not made; a real disk cannot be made to fail on demand either),
 * and logs "F main" or "F pool": whether the failed call ran in the process's main thread (the
 * event loop's) or another one (libuv's thread pool).
 * Built with the system C compiler by the tests that preload it: test/integration/audit-log.test.ts
 * (slow) and test/integration/group-commit-sync-fault.test.ts (failing).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static ssize_t (*real_pwrite64)(int, const void *, size_t, off64_t);
static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static int sync_ids;

static void resolve(void) {
  if (real_write) return;
  real_pwrite = dlsym(RTLD_NEXT, "pwrite");
  real_pwrite64 = dlsym(RTLD_NEXT, "pwrite64");
  real_fsync = dlsym(RTLD_NEXT, "fsync");
  real_fdatasync = dlsym(RTLD_NEXT, "fdatasync");
  real_write = dlsym(RTLD_NEXT, "write");
}

static int flagged(const char *name) {
  const char *flag = getenv(name);
  return flag != NULL && access(flag, F_OK) == 0;
}

static int active(void) { return flagged("SLOW_SYNC_FLAG"); }

static int is_wal(int fd) {
  char link[64], path[4096];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  ssize_t n = readlink(link, path, sizeof path - 1);
  if (n < 4) return 0;
  path[n] = 0;
  return strcmp(path + n - 4, "-wal") == 0;
}

static void note(const char *what) {
  const char *log = getenv("SLOW_SYNC_LOG");
  if (log == NULL) return;
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  char line[96];
  int len = snprintf(line, sizeof line, "%s %lld\n", what, (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec);
  int fd = open(log, O_WRONLY | O_APPEND | O_CREAT, 0600);
  if (fd < 0) return;
  real_write(fd, line, len);
  close(fd);
}

static void wrote(int fd) {
  if (active() && is_wal(fd)) note("W");
}

static int slow(int fd, int (*real)(int)) {
  if (flagged("FAIL_SYNC_FLAG") && is_wal(fd)) {
    note(syscall(SYS_gettid) == getpid() ? "F main" : "F pool");
    errno = EIO;
    return -1;
  }
  if (!active() || !is_wal(fd)) return real(fd);
  char what[32];
  int id = __sync_add_and_fetch(&sync_ids, 1);
  snprintf(what, sizeof what, "B %d", id);
  note(what);
  const char *ms = getenv("SLOW_SYNC_MS");
  usleep((useconds_t)(ms ? atoi(ms) : 300) * 1000);
  int result = real(fd);
  snprintf(what, sizeof what, "E %d", id);
  note(what);
  return result;
}

ssize_t write(int fd, const void *buf, size_t count) {
  resolve();
  ssize_t n = real_write(fd, buf, count);
  wrote(fd);
  return n;
}
ssize_t pwrite(int fd, const void *buf, size_t count, off_t offset) {
  resolve();
  ssize_t n = real_pwrite(fd, buf, count, offset);
  wrote(fd);
  return n;
}
ssize_t pwrite64(int fd, const void *buf, size_t count, off64_t offset) {
  resolve();
  ssize_t n = real_pwrite64(fd, buf, count, offset);
  wrote(fd);
  return n;
}
int fsync(int fd) {
  resolve();
  return slow(fd, real_fsync);
}
int fdatasync(int fd) {
  resolve();
  return slow(fd, real_fdatasync);
}

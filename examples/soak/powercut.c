/*
 * powercut.so: an LD_PRELOAD shim for the crash soak's power cuts (see
 * powercut.rs, which builds it with `cc` and reads what it writes).
 *
 * A power cut keeps what was fsynced and may drop anything written since.
 * The page cache hides that from a process crash, so this shim keeps its
 * own account: every pwrite/write/ftruncate on a file in the tracked
 * directory (AION_SOAK_PC_DIR, ending in '/'; `-shm` and `.lock` files are
 * left out: SQLite rebuilds the WAL index after a power cut) is held in
 * memory, per file, until an fsync or fdatasync of that file; the sync then
 * appends the held operations to the log (AION_SOAK_PC_LOG) before the real
 * sync runs. The log therefore holds exactly the writes that a sync made
 * durable, in order; writes held in memory die with the process. The log
 * itself is written with plain write(2): it only has to survive a SIGKILL
 * of this process (the page cache does that), not a real power cut.
 *
 * An unlink of a tracked file is taken as durable at once (its held
 * operations are dropped): SQLite unlinks only the rollback journal of the
 * database's first transaction, and the WAL at a clean close.
 *
 * Record: "PCR1" u32 name_len, name, u64 ops_len, ops, "PCEN". Ops: 'W' u64
 * offset u64 len bytes | 'T' u64 size | 'D' (unlinked). A record cut short
 * by SIGKILL belongs to a sync that never returned and is ignored by the
 * reader.
 *
 * AION_SOAK_PC_SYNC_DELAY_US, if set, makes every sync of a tracked file
 * wait that long before its writes count as durable: a slow disk, which
 * widens the window in which a cut finds written but unsynced data.
 *
 * Without the first two variables the shim only passes calls through.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>
#include <fcntl.h>
#include <time.h>

#define MAX_FILES 16
#define FD_CACHE 65536

static char dir[4096];
static size_t dir_len;
static int log_fd = -1;
static long sync_delay_us;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

/* Per fd: 0 not looked at yet, -1 not tracked, k > 0 file k-1. */
static int fd_class[FD_CACHE];

struct held {
    char name[256];
    char *ops;
    size_t len, cap;
};
static struct held files[MAX_FILES];
static int n_files;

static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static ssize_t (*real_pwrite64)(int, const void *, size_t, off64_t);
static ssize_t (*real_write)(int, const void *, size_t);
static int (*real_ftruncate)(int, off_t);
static int (*real_ftruncate64)(int, off64_t);
static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static int (*real_close)(int);
static int (*real_unlink)(const char *);

/* The next definition of `name` (libc's), looked up on first use. */
static void *resolve(void **slot, const char *name) {
    void *f = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
    if (!f) {
        f = dlsym(RTLD_NEXT, name);
        if (!f) abort();
        __atomic_store_n(slot, f, __ATOMIC_RELEASE);
    }
    return f;
}
#define REAL(name) ((__typeof__(real_##name))resolve((void **)&real_##name, #name))

__attribute__((constructor)) static void init(void) {
    const char *d = getenv("AION_SOAK_PC_DIR");
    const char *l = getenv("AION_SOAK_PC_LOG");
    if (!d || !l || strlen(d) >= sizeof dir) return;
    strcpy(dir, d);
    dir_len = strlen(dir);
    log_fd = open(l, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    const char *delay = getenv("AION_SOAK_PC_SYNC_DELAY_US");
    if (delay) sync_delay_us = atol(delay);
}

static void slow_disk(void) {
    if (sync_delay_us <= 0) return;
    struct timespec t = {sync_delay_us / 1000000, (sync_delay_us % 1000000) * 1000};
    while (nanosleep(&t, &t) != 0) {
    }
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* The tracked file at this absolute path (its index + 1), or -1. */
static int classify_path(const char *path) {
    size_t n = strlen(path);
    const char *name = path + dir_len;
    if (log_fd < 0 || n <= dir_len || strncmp(path, dir, dir_len) != 0 ||
        strchr(name, '/') || ends_with(name, "-shm") || ends_with(name, ".lock") ||
        strlen(name) >= sizeof files[0].name)
        return -1;
    int c = -1;
    pthread_mutex_lock(&lock);
    for (int i = 0; i < n_files; i++)
        if (strcmp(files[i].name, name) == 0) c = i + 1;
    if (c < 0 && n_files < MAX_FILES) {
        strcpy(files[n_files].name, name);
        c = ++n_files;
    }
    pthread_mutex_unlock(&lock);
    if (c < 0) abort(); /* more files than expected: fail loudly */
    return c;
}

/* The tracked file behind fd (its index + 1), or -1. */
static int classify(int fd) {
    if (log_fd < 0 || fd < 0) return -1;
    if (fd < FD_CACHE) {
        int c = __atomic_load_n(&fd_class[fd], __ATOMIC_ACQUIRE);
        if (c != 0) return c;
    }
    char link[64], path[4096];
    int c = -1;
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n > 0) {
        path[n] = 0;
        c = classify_path(path);
    }
    if (fd < FD_CACHE) __atomic_store_n(&fd_class[fd], c, __ATOMIC_RELEASE);
    return c;
}

static void put(struct held *h, const void *p, size_t n) {
    if (h->len + n > h->cap) {
        size_t cap = h->cap ? h->cap : 65536;
        while (cap < h->len + n) cap *= 2;
        h->ops = realloc(h->ops, cap);
        if (!h->ops) abort();
        h->cap = cap;
    }
    memcpy(h->ops + h->len, p, n);
    h->len += n;
}

static void hold_write(int c, const void *buf, uint64_t len, uint64_t off) {
    pthread_mutex_lock(&lock);
    struct held *h = &files[c - 1];
    put(h, "W", 1);
    put(h, &off, 8);
    put(h, &len, 8);
    put(h, buf, len);
    pthread_mutex_unlock(&lock);
}

static void hold_truncate(int c, uint64_t size) {
    pthread_mutex_lock(&lock);
    struct held *h = &files[c - 1];
    put(h, "T", 1);
    put(h, &size, 8);
    pthread_mutex_unlock(&lock);
}

static void append_all(const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = REAL(write)(log_fd, p, n);
        if (w <= 0) abort(); /* the account would be wrong: fail loudly */
        p += w;
        n -= (size_t)w;
    }
}

/* Moves file c's held operations to the log: they are durable now. */
static void make_durable(int c) {
    pthread_mutex_lock(&lock);
    struct held *h = &files[c - 1];
    uint32_t name_len = (uint32_t)strlen(h->name);
    uint64_t ops_len = h->len;
    size_t total = 4 + 4 + name_len + 8 + ops_len + 4;
    char *rec = malloc(total);
    if (!rec) abort();
    char *p = rec;
    memcpy(p, "PCR1", 4), p += 4;
    memcpy(p, &name_len, 4), p += 4;
    memcpy(p, h->name, name_len), p += name_len;
    memcpy(p, &ops_len, 8), p += 8;
    memcpy(p, h->ops, ops_len), p += ops_len;
    memcpy(p, "PCEN", 4);
    append_all(rec, total); /* one write(2) for all but huge records */
    free(rec);
    h->len = 0;
    pthread_mutex_unlock(&lock);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off) {
    ssize_t r = REAL(pwrite)(fd, buf, n, off);
    int c = classify(fd);
    if (r > 0 && c > 0) hold_write(c, buf, (uint64_t)r, (uint64_t)off);
    return r;
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off64_t off) {
    ssize_t r = REAL(pwrite64)(fd, buf, n, off);
    int c = classify(fd);
    if (r > 0 && c > 0) hold_write(c, buf, (uint64_t)r, (uint64_t)off);
    return r;
}

ssize_t write(int fd, const void *buf, size_t n) {
    int c = classify(fd);
    if (c <= 0) return REAL(write)(fd, buf, n);
    off_t off = lseek(fd, 0, SEEK_CUR);
    ssize_t r = REAL(write)(fd, buf, n);
    if (r > 0) hold_write(c, buf, (uint64_t)r, (uint64_t)off);
    return r;
}

int ftruncate(int fd, off_t size) {
    int r = REAL(ftruncate)(fd, size);
    int c = classify(fd);
    if (r == 0 && c > 0) hold_truncate(c, (uint64_t)size);
    return r;
}

int ftruncate64(int fd, off64_t size) {
    int r = REAL(ftruncate64)(fd, size);
    int c = classify(fd);
    if (r == 0 && c > 0) hold_truncate(c, (uint64_t)size);
    return r;
}

int fsync(int fd) {
    int c = classify(fd);
    if (c > 0) {
        slow_disk();
        make_durable(c);
    }
    return REAL(fsync)(fd);
}

int fdatasync(int fd) {
    int c = classify(fd);
    if (c > 0) {
        slow_disk();
        make_durable(c);
    }
    return REAL(fdatasync)(fd);
}

int close(int fd) {
    if (fd >= 0 && fd < FD_CACHE) __atomic_store_n(&fd_class[fd], 0, __ATOMIC_RELEASE);
    return REAL(close)(fd);
}

int unlink(const char *path) {
    int c = path[0] == '/' ? classify_path(path) : -1;
    if (c > 0) {
        pthread_mutex_lock(&lock);
        files[c - 1].len = 0;
        put(&files[c - 1], "D", 1);
        pthread_mutex_unlock(&lock);
        make_durable(c);
    }
    return REAL(unlink)(path);
}

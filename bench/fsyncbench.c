/*
 * fsyncbench.c - what storing one small file durably costs on this disk.
 *
 * usage: fsyncbench DIR [COUNT [SIZE]]     (defaults: 1000 files of 4096 bytes)
 *
 * Makes DIR/tmp and DIR/new and stores COUNT files of SIZE bytes in four
 * ways, the file written in tmp/ and renamed into new/ as a Maildir writer
 * does:
 *   plain     write, rename                          (not durable)
 *   fsync     write, fsync, rename                   (data durable, name not)
 *   fsync+dir write, fsync, rename, fsync(new/)      (durable: one message
 *                                                     the careful way)
 *   grouped   COUNT writes, one syncfs, COUNT renames, one fsync(new/)
 *                                                    (durable, as a batch)
 *   grouped-link  the same with link + unlink for rename (what a writer
 *             that must never replace a name does without renameat2)
 *   grouped-noreplace  the same with renameat2(RENAME_NOREPLACE)
 *   grouped-fdatasync  COUNT writes each started with sync_file_range,
 *             COUNT fdatasyncs, COUNT renames, one fsync(new/) (durable
 *             without syncfs, which also flushes other writers' data)
 * and prints, per way, milliseconds per file and files per second. The file
 * system is synced between ways so one way's dirty data is not paid for by
 * the next. Files are left in DIR/new (names wWAY-PID-I): deleting them
 * is left to the caller, because on an ext4 without a journal creating files
 * right after deleting many is much slower, which would skew the next way.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum way { PLAIN, FSYNC, FSYNC_DIR, GROUPED, GROUPED_LINK, GROUPED_NOREPLACE,
           GROUPED_FDATASYNC, WAYS };
static const char *const way_name[WAYS] = {
    "write+rename",
    "write+fsync+rename",
    "write+fsync+rename+dirfsync",
    "grouped: writes, syncfs, renames, dirfsync",
    "grouped, link+unlink for rename",
    "grouped, renameat2 NOREPLACE",
    "grouped, fdatasync each for syncfs",
};

static char tmp_dir[4096], new_dir[4096];

static void fail(const char *what)
{
    fprintf(stderr, "fsyncbench: %s: %s\n", what, strerror(errno));
    exit(1);
}

static double seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void names(int way, int i, char *from, char *to, size_t len)
{
    snprintf(from, len, "%s/w%d-%ld-%06d", tmp_dir, way, (long)getpid(), i);
    snprintf(to, len, "%s/w%d-%ld-%06d", new_dir, way, (long)getpid(), i);
}

static int fds[1 << 16];

/* sync: 1 fsync, 2 keep the descriptor open in fds[slot] after starting
 * its writeback (sync_file_range), 0 nothing */
static void write_file_slot(const char *path, const char *buf, size_t size, int sync, int slot)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    size_t done = 0;
    if (fd < 0)
        fail(path);
    while (done < size) {
        ssize_t w = write(fd, buf + done, size - done);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            fail("write");
        }
        done += (size_t)w;
    }
    if (sync == 2) {
        if (sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE) != 0)
            fail("sync_file_range");
        fds[slot] = fd;
        return;
    }
    if (sync && fsync(fd) != 0)
        fail("fsync");
    if (close(fd) != 0)
        fail("close");
}

static void write_file(const char *path, const char *buf, size_t size, int sync)
{
    write_file_slot(path, buf, size, sync, 0);
}

int main(int argc, char **argv)
{
    int count = argc > 2 ? atoi(argv[2]) : 1000;
    size_t size = argc > 3 ? (size_t)atol(argv[3]) : 4096;
    char from[4200], to[4200], *buf;
    int dir_fd;

    if (argc < 2 || count <= 0 || count > (1 << 16) || size == 0) {
        fprintf(stderr, "usage: fsyncbench DIR [COUNT [SIZE]]\n");
        return 64;
    }
    buf = malloc(size);
    if (buf == NULL)
        fail("malloc");
    for (size_t i = 0; i < size; i++)
        buf[i] = (i % 73 == 72) ? '\n' : (char)('a' + i % 26);
    snprintf(tmp_dir, sizeof tmp_dir, "%s/tmp", argv[1]);
    snprintf(new_dir, sizeof new_dir, "%s/new", argv[1]);
    if (mkdir(argv[1], 0700) != 0 && errno != EEXIST)
        fail(argv[1]);
    if (mkdir(tmp_dir, 0700) != 0 && errno != EEXIST)
        fail(tmp_dir);
    if (mkdir(new_dir, 0700) != 0 && errno != EEXIST)
        fail(new_dir);
    dir_fd = open(new_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd < 0)
        fail(new_dir);

    for (int way = 0; way < WAYS; way++) {
        double start, took;

        syncfs(dir_fd);
        start = seconds();
        if (way >= GROUPED) {
            for (int i = 0; i < count; i++) {
                names(way, i, from, to, sizeof from);
                write_file_slot(from, buf, size, way == GROUPED_FDATASYNC ? 2 : 0, i);
            }
            if (way == GROUPED_FDATASYNC) {
                for (int i = 0; i < count; i++)
                    if (fdatasync(fds[i]) != 0 || close(fds[i]) != 0)
                        fail("fdatasync");
            } else if (syncfs(dir_fd) != 0)
                fail("syncfs");
            for (int i = 0; i < count; i++) {
                names(way, i, from, to, sizeof from);
                if (way == GROUPED_LINK) {
                    if (link(from, to) != 0)
                        fail("link");
                } else if (way == GROUPED_NOREPLACE) {
                    if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) != 0)
                        fail("renameat2");
                } else if (rename(from, to) != 0)
                    fail("rename");
            }
            if (fsync(dir_fd) != 0)
                fail("fsync dir");
            if (way == GROUPED_LINK)
                for (int i = 0; i < count; i++) {
                    names(way, i, from, to, sizeof from);
                    if (unlink(from) != 0)
                        fail("unlink");
                }
        } else {
            for (int i = 0; i < count; i++) {
                names(way, i, from, to, sizeof from);
                write_file(from, buf, size, way != PLAIN);
                if (rename(from, to) != 0)
                    fail("rename");
                if (way == FSYNC_DIR && fsync(dir_fd) != 0)
                    fail("fsync dir");
            }
        }
        took = seconds() - start;
        printf("%-44s %8.3f ms/file %9.0f files/s\n", way_name[way],
               took * 1000.0 / count, count / took);
        fflush(stdout);
    }
    close(dir_fd);
    free(buf);
    return 0;
}

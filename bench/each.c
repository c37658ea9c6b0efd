/*
 * each.c - one process per message, every tool paying the same spawn cost.
 *
 * usage: each LIST PROGRAM [ARG...]
 *
 * LIST names one message file per line. For each, PROGRAM is started with
 * posix_spawnp(3) with that file as its standard input and /dev/null as its
 * standard output (standard error is inherited), and waited for before the
 * next one starts. Exit status: 0 when every run exited 0; 1 otherwise (a
 * line on stderr says how many failed and shows the first few).
 *
 * Built by bench/deliver.sh with: gcc -O2 -o each each.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static int run_one(char *const argv[], int in_fd, int null_fd)
{
    posix_spawn_file_actions_t acts;
    pid_t child;
    int err, status;

    if (posix_spawn_file_actions_init(&acts) != 0)
        return -1;
    posix_spawn_file_actions_adddup2(&acts, in_fd, STDIN_FILENO);
    posix_spawn_file_actions_adddup2(&acts, null_fd, STDOUT_FILENO);
    err = posix_spawnp(&child, argv[0], &acts, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&acts);
    if (err != 0) {
        fprintf(stderr, "each: cannot start %s: %s\n", argv[0], strerror(err));
        exit(2);
    }
    for (;;) {
        if (waitpid(child, &status, 0) == child)
            break;
        if (errno != EINTR) {
            perror("each: waitpid");
            exit(2);
        }
    }
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    return 128 + WTERMSIG(status);
}

int main(int argc, char **argv)
{
    FILE *list;
    char *path = NULL;
    size_t cap = 0;
    ssize_t n;
    long runs = 0, bad = 0;
    int null_fd;

    if (argc < 3) {
        fprintf(stderr, "usage: each LIST PROGRAM [ARG...]\n");
        return 64;
    }
    list = fopen(argv[1], "re");
    if (list == NULL) {
        perror(argv[1]);
        return 66;
    }
    null_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (null_fd < 0) {
        perror("/dev/null");
        return 71;
    }
    while ((n = getline(&path, &cap, list)) != -1) {
        int fd, rc;

        while (n > 0 && (path[n - 1] == '\n' || path[n - 1] == '\r'))
            path[--n] = '\0';
        if (n == 0)
            continue;
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            perror(path);
            bad++;
            continue;
        }
        rc = run_one(argv + 2, fd, null_fd);
        close(fd);
        runs++;
        if (rc != 0) {
            if (bad < 3)
                fprintf(stderr, "each: %s < %s: status %d\n", argv[2], path, rc);
            bad++;
        }
    }
    free(path);
    fclose(list);
    if (bad) {
        fprintf(stderr, "each: %ld of %ld runs failed\n", bad, runs);
        return 1;
    }
    return 0;
}

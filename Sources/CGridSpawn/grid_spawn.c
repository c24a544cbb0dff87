#define _GNU_SOURCE
#include "grid_spawn.h"

#include <dirent.h>
#include <ftw.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <linux/close_range.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/fsuid.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* In a child just forked: default signal handling, nothing blocked, and death with the forking thread (the signal
 * follows the thread, which waits for the child for as long as it runs; a worker that died before the prctl is caught
 * by the parent check). Async-signal-safe. Returns -1 with errno set if the prctl failed. */
static int child_reset(pid_t parent) {
    sigset_t all;
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);
    for (int s = 1; s < 32; s++) {
        if (s != SIGKILL && s != SIGSTOP) signal(s, SIG_DFL);
    }
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) return -1;
    if (getppid() != parent) _exit(127);
    return 0;
}

/* In a child about to exec: a session keyring of its own, empty, so that it cannot read or fill the keys of the
 * worker's session (Kerberos or AFS tokens on a campus machine) or of the jobs beside it. A kernel without keyrings,
 * or one that refuses (a container's seccomp), leaves the one inherited. Async-signal-safe. */
#ifndef KEYCTL_JOIN_SESSION_KEYRING
#define KEYCTL_JOIN_SESSION_KEYRING 1
#endif
static void own_session_keyring(void) {
    long ignored = syscall(SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, (char *)0);
    (void)ignored;
}

/* In a child that failed before its exec: tells the parent why (errno on the report pipe) and exits. */
static void child_fail(int report_fd) __attribute__((noreturn));
static void child_fail(int report_fd) {
    int e = errno;
    ssize_t ignored = write(report_fd, &e, sizeof e);
    (void)ignored;
    _exit(127);
}

static pid_t spawn(const char *path, char *const argv[], char *const envp[], const char *dir, int in_fd, int out_fd,
                   int err_fd, const grid_rlimit *limits, int nlimits, int new_session, const int *cgroup_fds,
                   int ncgroup_fds, int inherit_fd) {
    /* A descriptor to keep among the child's standard streams would be replaced by one of them. */
    if (inherit_fd >= 0 && inherit_fd < 3) { errno = EBADF; return -1; }
    int report[2];
    if (pipe2(report, O_CLOEXEC) != 0) return -1;
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (devnull < 0) { close(report[0]); close(report[1]); return -1; }

    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(report[0]); close(report[1]); close(devnull);
        errno = e;
        return -1;
    }
    if (pid == 0) {
        /* Child: only async-signal-safe calls from here on. */
        if (child_reset(parent) != 0) goto fail;
        /* Join the job's cgroups before anything else runs, so every descendant is born inside them. */
        for (int i = 0; i < ncgroup_fds; i++) {
            if (write(cgroup_fds[i], "0\n", 2) != 2) goto fail;
        }
        if (new_session && setsid() < 0) goto fail;
        if (dup2(in_fd >= 0 ? in_fd : devnull, 0) < 0) goto fail;
        if (out_fd >= 0 && dup2(out_fd, 1) < 0) goto fail;
        if (dup2(err_fd >= 0 ? err_fd : devnull, 2) < 0) goto fail;
        /* Nothing of the worker's may leak into the job: its sockets (the manager link, the peer port) and event
         * fds are not all close-on-exec. Mark every descriptor above stderr close-on-exec (the report pipe already
         * is, and still reports a failed exec). */
        if (close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) != 0) {
            struct rlimit nofile;
            int top = (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < 1048576) ? (int)nofile.rlim_cur : 65536;
            for (int fd = 3; fd < top; fd++) {
                int flags = fcntl(fd, F_GETFD);
                if (flags >= 0) fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
            }
        }
        /* The one descriptor the program keeps. */
        if (inherit_fd >= 3 && fcntl(inherit_fd, F_SETFD, 0) != 0) goto fail;
        own_session_keyring();
        if (dir != NULL && chdir(dir) != 0) goto fail;
        for (int i = 0; i < nlimits; i++) {
            struct rlimit rl = { (rlim_t)limits[i].value, (rlim_t)limits[i].value };
            if (setrlimit(limits[i].resource, &rl) != 0) goto fail;
        }
        execve(path, argv, envp);
    fail:
        child_fail(report[1]);
    }
    close(report[1]);
    close(devnull);
    int child_errno = 0;
    ssize_t n;
    do {
        n = read(report[0], &child_errno, sizeof child_errno);
    } while (n < 0 && errno == EINTR);
    close(report[0]);
    if (n == (ssize_t)sizeof child_errno) {
        int status;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
        errno = child_errno;
        return -1;
    }
    return pid;
}

pid_t grid_spawn(const char *path, char *const argv[], char *const envp[], const char *dir, int out_fd,
                 const grid_rlimit *limits, int nlimits, int new_session, const int *cgroup_fds, int ncgroup_fds,
                 int inherit_fd) {
    return spawn(path, argv, envp, dir, -1, out_fd, out_fd, limits, nlimits, new_session, cgroup_fds, ncgroup_fds, inherit_fd);
}

pid_t grid_spawn_io(const char *path, char *const argv[], char *const envp[], const char *dir, int in_fd, int out_fd,
                    int new_session, int inherit_fd) {
    return spawn(path, argv, envp, dir, in_fd, out_fd, -1, NULL, 0, new_session, NULL, 0, inherit_fd);
}

#include <sched.h>

static int write_file(const char *path, const char *text) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    size_t length = strlen(text);
    ssize_t n;
    do {
        n = write(fd, text, length);
    } while (n < 0 && errno == EINTR);
    int e = errno;
    close(fd);
    if (n != (ssize_t)length) {
        errno = n < 0 ? e : EIO;
        return -1;
    }
    return 0;
}

int grid_sandbox_userns(unsigned int uid, unsigned int gid) {
    if (uid == 0 || gid == 0 || uid > 0x7fffffffu || gid > 0x7fffffffu) { errno = EINVAL; return -1; }
    int ready[2], go[2];
    if (pipe2(ready, O_CLOEXEC) != 0) return -1;
    if (pipe2(go, O_CLOEXEC) != 0) { int e = errno; close(ready[0]); close(ready[1]); errno = e; return -1; }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(ready[0]); close(ready[1]); close(go[0]); close(go[1]);
        errno = e;
        return -1;
    }
    if (pid == 0) {
        /* Child: async-signal-safe calls only. It makes the namespace, forbids namespaces inside it, says so (an
         * errno, 0 for done), and waits until the parent has mapped and opened it. */
        close(ready[0]);
        close(go[1]);
        int result = 0;
        if (child_reset(parent) != 0 || unshare(CLONE_NEWUSER) != 0 ||
            write_file("/proc/sys/user/max_user_namespaces", "0") != 0) {
            result = errno != 0 ? errno : EPERM;
        }
        ssize_t ignored = write(ready[1], &result, sizeof result);
        (void)ignored;
        char byte;
        while (read(go[0], &byte, 1) < 0 && errno == EINTR) {}
        _exit(0);
    }
    close(ready[1]);
    close(go[0]);
    int child = EPIPE;
    ssize_t n;
    do {
        n = read(ready[0], &child, sizeof child);
    } while (n < 0 && errno == EINTR);
    close(ready[0]);
    int fd = -1;
    int e = 0;
    if (n != (ssize_t)sizeof child) {
        e = EPIPE;
    } else if (child != 0) {
        e = child;
    } else {
        char path[64], map[64];
        snprintf(map, sizeof map, "0 0 1\n%u %u 1\n", uid, uid);
        snprintf(path, sizeof path, "/proc/%d/uid_map", (int)pid);
        if (write_file(path, map) != 0) e = errno;
        snprintf(map, sizeof map, "0 0 1\n%u %u 1\n", gid, gid);
        snprintf(path, sizeof path, "/proc/%d/gid_map", (int)pid);
        if (e == 0 && write_file(path, map) != 0) e = errno;
        snprintf(path, sizeof path, "/proc/%d/ns/user", (int)pid);
        if (e == 0 && (fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) e = errno;
        /* Never 0, 1 or 2 (a worker started with a standard stream closed): a child puts its own streams there. */
        if (e == 0 && fd < 3) {
            int high = fcntl(fd, F_DUPFD_CLOEXEC, 3);
            if (high < 0) e = errno;
            close(fd);
            fd = high;
        }
    }
    /* A byte, not only the close: a child another thread forked meanwhile may hold a copy of this end until its exec. */
    char byte = 'G';
    ssize_t ignored = write(go[1], &byte, 1);
    (void)ignored;
    close(go[1]);
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    if (e != 0) {
        if (fd >= 0) close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

int grid_pipe_cloexec(int fds[2]) { return pipe2(fds, O_CLOEXEC); }

#include <sys/syscall.h>
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
int grid_pidfd_open(pid_t pid) { return (int)syscall(SYS_pidfd_open, pid, 0); }

/* ---- standby: a child forked ahead of its job (see grid_spawn.h) ---- */

#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>

/* Closes every descriptor above stderr but the `nkeep` ones in `keep` (async-signal-safe). */
static void close_all_but(const int *keep, int nkeep) {
    int sorted[72];
    int n = 0;
    for (int i = 0; i < nkeep && n < 72; i++) {
        if (keep[i] < 3) continue;
        int j = n++;
        while (j > 0 && sorted[j - 1] > keep[i]) { sorted[j] = sorted[j - 1]; j--; }
        sorted[j] = keep[i];
    }
    unsigned int from = 3;
    for (int i = 0; i < n; i++) {
        unsigned int k = (unsigned int)sorted[i];
        if (k < from) continue; /* a duplicate */
        if (k > from && close_range(from, k - 1, 0) != 0) {
            for (unsigned int fd = from; fd < k; fd++) close((int)fd);
        }
        from = k + 1;
    }
    if (close_range(from, ~0U, 0) != 0) {
        for (unsigned int fd = from; fd < 65536; fd++) close((int)fd);
    }
}

/* The next NUL-terminated field of the request, or NULL past its end. */
static char *next_field(char **cursor, char *end) {
    char *start = *cursor;
    if (start >= end) return NULL;
    char *p = start;
    while (p < end && *p != 0) p++;
    if (p >= end) return NULL;
    *cursor = p + 1;
    return start;
}

static int parse_count(const char *s, long max, long *out) {
    if (s == NULL || *s == 0) return -1;
    long v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9') return -1;
        v = v * 10 + (*s - '0');
        if (v > max) return -1;
    }
    *out = v;
    return 0;
}

pid_t grid_standby_fork(const int *cgroup_fds, int ncgroup_fds, int out_fd, int inherit_fd, int *request_fd, int *report_fd) {
    if (inherit_fd >= 0 && inherit_fd < 3) { errno = EBADF; return -1; }
    if (ncgroup_fds < 0 || ncgroup_fds > 64) { errno = EINVAL; return -1; }
    int channel[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, channel) != 0) return -1;
    int report[2];
    if (pipe2(report, O_CLOEXEC) != 0) { int e = errno; close(channel[0]); close(channel[1]); errno = e; return -1; }
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    char *buffer = malloc(GRID_STANDBY_MAX_REQUEST);
    char **slots = malloc(sizeof(char *) * (GRID_STANDBY_MAX_STRINGS + 2));
    if (devnull < 0 || buffer == NULL || slots == NULL) {
        int e = devnull < 0 ? errno : ENOMEM;
        if (devnull >= 0) close(devnull);
        free(buffer); free(slots);
        close(channel[0]); close(channel[1]); close(report[0]); close(report[1]);
        errno = e;
        return -1;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        free(buffer); free(slots); close(devnull);
        close(channel[0]); close(channel[1]); close(report[0]); close(report[1]);
        errno = e;
        return -1;
    }
    if (pid == 0) {
        /* Child: only async-signal-safe calls from here on. */
        if (child_reset(parent) != 0) goto fail;
        /* It holds a copy of the worker's memory (its keys, its tokens) until its exec: no core dump of it, and no
         * ptrace or /proc/PID/mem by another process of the worker's user meanwhile. The exec resets this. */
        if (prctl(PR_SET_DUMPABLE, 0) != 0) goto fail;
        /* It may wait a long time: it must not hold the worker's sockets, pipes and files open meanwhile. */
        int keep[70];
        int nkeep = 0;
        keep[nkeep++] = channel[1];
        keep[nkeep++] = report[1];
        keep[nkeep++] = devnull;
        keep[nkeep++] = out_fd;
        keep[nkeep++] = inherit_fd;
        for (int i = 0; i < ncgroup_fds; i++) keep[nkeep++] = cgroup_fds[i];
        close_all_but(keep, nkeep);
        /* Nor its standard streams: the job's own from now on. */
        if (dup2(devnull, 0) < 0) goto fail;
        if (out_fd >= 0 && (dup2(out_fd, 1) < 0 || dup2(out_fd, 2) < 0)) goto fail;
        for (int i = 0; i < ncgroup_fds; i++) {
            if (write(cgroup_fds[i], "0\n", 2) != 2) goto fail;
            close(cgroup_fds[i]);
        }
        /* Ready: in its cgroups, holding nothing of the worker's. */
        char ready = 'R';
        if (send(channel[1], &ready, 1, MSG_NOSIGNAL) != 1) _exit(0);
        /* The request: its length (8 bytes), then its fields. A closed socket means "not needed": exit quietly. */
        uint64_t length = 0;
        size_t got = 0;
        while (got < sizeof length) {
            ssize_t n = read(channel[1], (char *)&length + got, sizeof length - got);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) _exit(0);
            got += (size_t)n;
        }
        if (length == 0 || length > GRID_STANDBY_MAX_REQUEST) { errno = E2BIG; goto fail; }
        got = 0;
        while (got < length) {
            ssize_t n = read(channel[1], buffer + got, length - got);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) _exit(0);
            got += (size_t)n;
        }
        char *cursor = buffer;
        char *end = buffer + length;
        char *path = next_field(&cursor, end);
        char *dir = next_field(&cursor, end);
        char *session = next_field(&cursor, end);
        long nargs = 0, nenv = 0, nlimits = 0;
        if (path == NULL || dir == NULL || session == NULL) { errno = EINVAL; goto fail; }
        if (parse_count(next_field(&cursor, end), GRID_STANDBY_MAX_STRINGS, &nargs) != 0) { errno = EINVAL; goto fail; }
        char **argv = slots;
        for (long i = 0; i < nargs; i++) {
            if ((argv[i] = next_field(&cursor, end)) == NULL) { errno = EINVAL; goto fail; }
        }
        argv[nargs] = NULL;
        if (parse_count(next_field(&cursor, end), GRID_STANDBY_MAX_STRINGS - nargs, &nenv) != 0) { errno = EINVAL; goto fail; }
        char **envp = slots + nargs + 1;
        for (long i = 0; i < nenv; i++) {
            if ((envp[i] = next_field(&cursor, end)) == NULL) { errno = EINVAL; goto fail; }
        }
        envp[nenv] = NULL;
        if (parse_count(next_field(&cursor, end), 64, &nlimits) != 0) { errno = EINVAL; goto fail; }
        if (session[0] == '1' && setsid() < 0) goto fail;
        if (dir[0] != 0 && chdir(dir) != 0) goto fail;
        for (long i = 0; i < nlimits; i++) {
            long resource = 0;
            if (parse_count(next_field(&cursor, end), 64, &resource) != 0) { errno = EINVAL; goto fail; }
            char *v = next_field(&cursor, end);
            if (v == NULL) { errno = EINVAL; goto fail; }
            unsigned long long big = 0;
            for (; *v; v++) {
                if (*v < '0' || *v > '9') { errno = EINVAL; goto fail; }
                unsigned long long digit = (unsigned long long)(*v - '0');
                if (big > (~0ULL - digit) / 10) { errno = EINVAL; goto fail; }
                big = big * 10 + digit;
            }
            struct rlimit rl = { (rlim_t)big, (rlim_t)big };
            if (setrlimit((int)resource, &rl) != 0) goto fail;
        }
        /* Everything kept so far is close-on-exec except the job's standard streams, and the one it inherits. */
        if (inherit_fd >= 3 && fcntl(inherit_fd, F_SETFD, 0) != 0) goto fail;
        own_session_keyring();
        execve(path, argv, envp);
    fail:
        child_fail(report[1]);
    }
    free(buffer);
    free(slots);
    close(devnull);
    close(channel[1]);
    close(report[1]);
    /* Wait until it is ready (or failed: then say why, and reap it). */
    char ready = 0;
    ssize_t n;
    do {
        n = read(channel[0], &ready, 1);
    } while (n < 0 && errno == EINTR);
    if (n != 1 || ready != 'R') {
        int child_errno = EPIPE;
        ssize_t m;
        do {
            m = read(report[0], &child_errno, sizeof child_errno);
        } while (m < 0 && errno == EINTR);
        if (m != (ssize_t)sizeof child_errno) child_errno = EPIPE;
        close(channel[0]);
        close(report[0]);
        int status;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
        errno = child_errno;
        return -1;
    }
    *request_fd = channel[0];
    *report_fd = report[0];
    return pid;
}

int grid_standby_go(int request_fd, int report_fd, const char *request, size_t length) {
    int result = 0;
    int saved = 0;
    if (length == 0 || length > GRID_STANDBY_MAX_REQUEST) {
        saved = E2BIG;
        result = -1;
    } else {
        uint64_t header = (uint64_t)length;
        size_t sent = 0;
        const char *parts[2] = { (const char *)&header, request };
        size_t sizes[2] = { sizeof header, length };
        for (int part = 0; part < 2 && result == 0; part++) {
            sent = 0;
            while (sent < sizes[part]) {
                ssize_t n = send(request_fd, parts[part] + sent, sizes[part] - sent, MSG_NOSIGNAL);
                if (n < 0 && errno == EINTR) continue;
                if (n <= 0) { saved = n < 0 ? errno : EPIPE; result = -1; break; }
                sent += (size_t)n;
            }
        }
    }
    close(request_fd);
    /* EOF: the child exec'd (the pipe is close-on-exec). An errno: it failed, at its cgroup join or at the exec. */
    int child_errno = 0;
    ssize_t n;
    do {
        n = read(report_fd, &child_errno, sizeof child_errno);
    } while (n < 0 && errno == EINTR);
    close(report_fd);
    if (n == (ssize_t)sizeof child_errno) {
        errno = child_errno;
        return -1;
    }
    if (result != 0) { errno = saved; return -1; }
    return 0;
}

int grid_count_descendants(pid_t root, int limit) {
    pid_t stack[256];
    int top = 0, count = 0;
    stack[top++] = root;
    while (top > 0 && count < limit) {
        pid_t p = stack[--top];
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/task", (int)p);
        DIR *d = opendir(path);
        if (!d) continue;
        struct dirent *e;
        while ((e = readdir(d)) != NULL && count < limit) {
            if (e->d_name[0] == '.') continue;
            char children[128];
            snprintf(children, sizeof children, "/proc/%d/task/%.16s/children", (int)p, e->d_name);
            int fd = open(children, O_RDONLY | O_CLOEXEC);
            if (fd < 0) continue;
            char buf[4096];
            ssize_t n = read(fd, buf, sizeof buf - 1);
            close(fd);
            if (n <= 0) continue;
            buf[n] = 0;
            char *s = buf;
            while (*s && count < limit) {
                char *end;
                long c = strtol(s, &end, 10);
                if (end == s) break;
                s = end;
                while (*s == ' ') s++;
                /* A child that ended and was not waited for (a zombie) runs nothing: not counted. */
                char stat[64];
                snprintf(stat, sizeof stat, "/proc/%ld/stat", c);
                int sfd = open(stat, O_RDONLY | O_CLOEXEC);
                if (sfd >= 0) {
                    char sb[512];
                    ssize_t sn = read(sfd, sb, sizeof sb - 1);
                    close(sfd);
                    if (sn > 0) {
                        sb[sn] = 0;
                        char *paren = strrchr(sb, ')');
                        if (paren && paren[1] == ' ' && paren[2] == 'Z') continue;
                    }
                }
                count++;
                if (top < 256) stack[top++] = (pid_t)c;
            }
        }
        closedir(d);
    }
    return count;
}

/* The walk's running totals: nftw's callback has no context argument, and each walking thread has its own. */
static __thread long long du_bytes, du_entries, du_stop_bytes, du_stop_entries;
static __thread int du_hidden;

/* Whether the folder holding `path` (its last component cut off) belongs to `uid`. */
static int parent_owned_by(const char *path, uid_t uid) {
    char parent[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof parent) return 0;
    memcpy(parent, path, n + 1);
    char *slash = strrchr(parent, '/');
    if (!slash) return 0;
    if (slash == parent) slash[1] = 0; else *slash = 0;
    struct stat st;
    return lstat(parent, &st) == 0 && st.st_uid == uid;
}

static int du_visit(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)ftw;
    int saved = errno;
    du_entries++;
    /* The thread's file-system uid (setfsuid with an invalid uid changes nothing and returns it). What the walk cannot
       read is hidden only when it is this user's own: a job made it unreadable on purpose. A folder of another uid
       (a rootless container's user) is one this worker could never read: not the job's doing. */
    uid_t me = (uid_t)setfsuid((uid_t)-1);
    if (flag == FTW_DNR) { if (st && st->st_uid == me) du_hidden = 1; }
    else if (flag == FTW_NS) { if (saved == EACCES && parent_owned_by(path, me)) du_hidden = 1; }
    else if (st) du_bytes += (long long)st->st_blocks * 512;
    return (du_bytes > du_stop_bytes || du_entries > du_stop_entries || du_hidden) ? 1 : 0;
}

long long grid_disk_usage(const char *path, long long stop_bytes, long long stop_entries, long long *entries, int *hidden) {
    du_bytes = 0;
    du_entries = 0;
    du_hidden = 0;
    du_stop_bytes = stop_bytes;
    du_stop_entries = stop_entries;
    int r = nftw(path, du_visit, 16, FTW_PHYS | FTW_MOUNT);
    if (entries) *entries = du_entries;
    if (hidden) *hidden = du_hidden;
    if (r < 0) return -1;
    return du_bytes;
}

/* One pass of grid_make_removable: every folder it reaches gets mode 0700, links never followed. */
static __thread int rm_unread;

static int rm_visit(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)ftw;
    if (flag == FTW_D || flag == FTW_DNR) {
        fchmodat(AT_FDCWD, path, 0700, AT_SYMLINK_NOFOLLOW);
        if (flag == FTW_DNR) rm_unread++;
    }
    return 0;
}

int grid_make_removable(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0 || !S_ISDIR(st.st_mode)) return 0;
    fchmodat(AT_FDCWD, path, 0700, AT_SYMLINK_NOFOLLOW);
    /* A folder that could not be read is opened up in one pass and walked in the next: as many passes as such folders
       lie one inside another, at most 64. nftw holds at most 16 descriptors, however deep the tree. */
    for (int pass = 0; pass < 64; pass++) {
        rm_unread = 0;
        if (nftw(path, rm_visit, 16, FTW_PHYS | FTW_MOUNT) != 0) return rm_unread > 0 ? rm_unread : 1;
        if (rm_unread == 0) return 0;
    }
    return rm_unread;
}

int grid_setfsuid(unsigned int uid) { return setfsuid((uid_t)uid); }

/* grid_hand_over, one folder: walked by descriptor (each step opened with O_NOFOLLOW from its parent's descriptor, so
 * a folder swapped for a link while the walk goes on is never followed out), on the folder's own file system only;
 * what a folder holds gets its owner before the folder does. A regular file with other links stays as it is (its
 * other names may be outside). Returns the first errno, 0 for none. `depth` bounds the recursion. */
static int hand_over_at(int dirfd, dev_t device, uid_t uid, gid_t gid, int depth) {
    if (depth > 256) return ELOOP;
    int first = 0;
    int walk = dup(dirfd);
    if (walk < 0) return errno;
    DIR *d = fdopendir(walk);
    if (d == NULL) { int e = errno; close(walk); return e; }
    struct dirent *entry;
    while ((entry = readdir(d)) != NULL) {
        const char *name = entry->d_name;
        if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0) continue;
        struct stat st;
        if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
            if (errno != ENOENT && first == 0) first = errno;
            continue;
        }
        if (st.st_dev != device) continue;
        if (S_ISDIR(st.st_mode)) {
            int child = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (child < 0) {
                if (errno != ENOENT && first == 0) first = errno;
                continue;
            }
            struct stat again;
            if (fstat(child, &again) == 0 && again.st_dev == device && again.st_ino == st.st_ino) {
                int e = hand_over_at(child, device, uid, gid, depth + 1);
                if (e != 0 && first == 0) first = e;
                if (fchown(child, uid, gid) != 0 && first == 0) first = errno;
            }
            close(child);
        } else if (S_ISREG(st.st_mode) && st.st_nlink > 1) {
            continue;
        } else if (fchownat(dirfd, name, uid, gid, AT_SYMLINK_NOFOLLOW) != 0 && errno != ENOENT && first == 0) {
            first = errno;
        }
    }
    closedir(d);
    return first;
}

int grid_hand_over(const char *path, unsigned int uid, unsigned int gid) {
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return -1;
    struct stat st;
    int e = fstat(fd, &st) == 0 ? hand_over_at(fd, st.st_dev, (uid_t)uid, (gid_t)gid, 0) : errno;
    /* The folder itself last. */
    if (fchown(fd, (uid_t)uid, (gid_t)gid) != 0 && e == 0) e = errno;
    close(fd);
    if (e != 0) {
        errno = e;
        return -1;
    }
    return 0;
}

#define _GNU_SOURCE
#include "grid_spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <linux/close_range.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

static pid_t spawn(const char *path, char *const argv[], char *const envp[], const char *dir, int in_fd, int out_fd,
                   int err_fd, const grid_rlimit *limits, int nlimits, int new_session, const int *cgroup_fds,
                   int ncgroup_fds) {
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
        sigset_t all;
        sigemptyset(&all);
        sigprocmask(SIG_SETMASK, &all, NULL);
        for (int s = 1; s < 32; s++) {
            if (s != SIGKILL && s != SIGSTOP) signal(s, SIG_DFL);
        }
        /* Die with the worker: the signal follows the forking thread, which waits for the child for as long as it
         * runs. A worker that died before this line is caught by the parent check. */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) goto fail;
        if (getppid() != parent) _exit(127);
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
        if (dir != NULL && chdir(dir) != 0) goto fail;
        for (int i = 0; i < nlimits; i++) {
            struct rlimit rl = { (rlim_t)limits[i].value, (rlim_t)limits[i].value };
            if (setrlimit(limits[i].resource, &rl) != 0) goto fail;
        }
        execve(path, argv, envp);
    fail: {
            int e = errno;
            ssize_t ignored = write(report[1], &e, sizeof e);
            (void)ignored;
            _exit(127);
        }
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
                 const grid_rlimit *limits, int nlimits, int new_session, const int *cgroup_fds, int ncgroup_fds) {
    return spawn(path, argv, envp, dir, -1, out_fd, out_fd, limits, nlimits, new_session, cgroup_fds, ncgroup_fds);
}

pid_t grid_spawn_io(const char *path, char *const argv[], char *const envp[], const char *dir, int in_fd, int out_fd,
                    int new_session) {
    return spawn(path, argv, envp, dir, in_fd, out_fd, -1, NULL, 0, new_session, NULL, 0);
}

int grid_pipe_cloexec(int fds[2]) { return pipe2(fds, O_CLOEXEC); }

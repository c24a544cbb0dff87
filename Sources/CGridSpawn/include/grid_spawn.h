#ifndef GRID_SPAWN_H
#define GRID_SPAWN_H

#include <sys/types.h>

/// One resource limit to set in the child before exec (soft = hard = value).
typedef struct {
    int resource;
    unsigned long long value;
} grid_rlimit;

/// Starts `path` with `argv` and `envp` in directory `dir`, standard input from /dev/null, standard output and error
/// to `out_fd`, every other descriptor of the caller closed (close-on-exec), the given resource limits, and (when `new_session` is set) in a new session and process group.
/// When `ncgroup_fds` > 0 the child first writes "0" to each of `cgroup_fds` (open `cgroup.procs` files), joining those
/// cgroups before it runs anything. Everything between fork and exec is async-signal-safe. Returns the pid, or -1 with errno set (also when exec fails).
pid_t grid_spawn(const char *path, char *const argv[], char *const envp[], const char *dir, int out_fd,
                 const grid_rlimit *limits, int nlimits, int new_session, const int *cgroup_fds, int ncgroup_fds);


/// Starts `path` like `grid_spawn`, with standard input from `in_fd`, standard output to `out_fd` and standard error
/// to /dev/null, no limits and no cgroup (a long-lived helper such as a function-task interpreter).
pid_t grid_spawn_io(const char *path, char *const argv[], char *const envp[], const char *dir, int in_fd, int out_fd,
                    int new_session);

/// pipe2(fds, O_CLOEXEC): a pipe whose ends are closed on exec.
int grid_pipe_cloexec(int fds[2]);

#endif

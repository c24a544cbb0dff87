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
/// `inherit_fd` (-1: none) is the one descriptor of the caller the program keeps, at the same number (a sandbox's
/// user namespace, `grid_sandbox_userns`).
pid_t grid_spawn(const char *path, char *const argv[], char *const envp[], const char *dir, int out_fd,
                 const grid_rlimit *limits, int nlimits, int new_session, const int *cgroup_fds, int ncgroup_fds,
                 int inherit_fd);


/// Starts `path` like `grid_spawn`, with standard input from `in_fd`, standard output to `out_fd` and standard error
/// to /dev/null, no limits and no cgroup (a long-lived helper such as a function-task interpreter).
pid_t grid_spawn_io(const char *path, char *const argv[], char *const envp[], const char *dir, int in_fd, int out_fd,
                    int new_session, int inherit_fd);

/// Forks a child ahead of its job (a "standby"): it resets its signals, dies with the calling thread
/// (PR_SET_PDEATHSIG), closes every descriptor but the ones it needs, joins the cgroups of `cgroup_fds` (the slow part
/// on a busy kernel: a cgroup migration waits for an RCU grace period), and then waits for its exec request on a socket.
/// `grid_standby_go` sends the request; if the socket closes first, the child exits with status 0 having run nothing.
/// Returns once the child is ready (joined, holding nothing else), with its pid, with the caller's end of the request socket in `*request_fd` and the read end of the
/// report pipe (EOF once the child exec'd, an errno before that if it failed) in `*report_fd`; else -1 with errno set.
/// `out_fd` becomes the job's standard output and error. Everything between fork and exec is async-signal-safe: the
/// request is read into a buffer allocated before the fork.
/// `inherit_fd` (-1: none) is kept through the wait and the exec, at the same number, as `grid_spawn` keeps it.
pid_t grid_standby_fork(const int *cgroup_fds, int ncgroup_fds, int out_fd, int inherit_fd, int *request_fd, int *report_fd);

/// Sends a standby its exec request and waits for the exec: 0 when it exec'd, else -1 with errno set (the child's
/// errno when its exec failed). The request is, as NUL-terminated fields: the path, the directory, "1" or "0" for a new
/// session, the count of arguments, the arguments, the count of environment entries, the entries, the count of
/// resource limits, and a resource and a value for each. Closes `request_fd` and `report_fd`.
int grid_standby_go(int request_fd, int report_fd, const char *request, size_t length);

/// The most bytes a standby's exec request may have, and the most arguments plus environment entries.
#define GRID_STANDBY_MAX_REQUEST (1 << 20)
#define GRID_STANDBY_MAX_STRINGS 4096

/// A fresh user namespace for one sandbox that root starts (bubblewrap's `--userns`), as a close-on-exec descriptor:
/// uid and gid 0 are mapped to root (bubblewrap sets the sandbox up as root there, reading what root may), and `uid` and
/// `gid` to themselves (the sandbox's user, never root outside, which the job switches to before it runs anything);
/// nothing else. No user namespace can be made inside it (`user.max_user_namespaces` 0 there). Forks a short-lived
/// child that makes it. -1 with errno set when it could not.
int grid_sandbox_userns(unsigned int uid, unsigned int gid);

/// Gives `path` and everything under it to `uid`:`gid` (links themselves, never their targets; not past its file
/// system). 0, or -1 with the first errno.
int grid_hand_over(const char *path, unsigned int uid, unsigned int gid);

/// pipe2(fds, O_CLOEXEC): a pipe whose ends are closed on exec.
int grid_pipe_cloexec(int fds[2]);

/// pidfd_open(pid, 0): a descriptor that becomes readable when process `pid` ends (Linux 5.3+); -1 with errno set
/// (ESRCH: no such process).
int grid_pidfd_open(pid_t pid);

/// How many processes descend from `root` (its children, theirs, and so on, through every thread's
/// /proc/PID/task/TID/children), counting at most `limit`; zombies (ended, not yet waited for) are not counted.
int grid_count_descendants(pid_t root, int limit);

/// The disk a folder's tree takes: the blocks allocated to every file under `path` (st_blocks × 512, so a sparse file
/// counts what it holds), walked without following links or crossing into another filesystem. The walk stops once
/// the bytes pass `stop_bytes` or the entries pass `stop_entries` (what it counted so far is returned). `entries`
/// receives how many entries were seen; `hidden` is set to 1 when a folder could not be read or an entry not looked
/// at for want of permission (what is below it is not counted), else 0. -1 when the walk failed, with errno set
/// (ENAMETOOLONG: a tree too deep to name; ENOENT: a folder vanished while the walk went on).
long long grid_disk_usage(const char *path, long long stop_bytes, long long stop_entries, long long *entries, int *hidden);

/// Makes the tree under `path` removable by its owner: every folder in it (the top one too) gets mode 0700 (a job
/// that made a folder unreadable, or unwritable, left it where its worker could not delete it). Links are not
/// followed. Best effort; returns how many folders it could not open.
int grid_make_removable(const char *path);

/// setfsuid(2): the calling thread's file-system uid (the tests measure a folder as a worker that is not root would,
/// on one thread). Returns the previous one.
int grid_setfsuid(unsigned int uid);

#endif

public import GridSandbox

/// A long-running child of the bench (a manager, a worker, redis-server, nginx): the project's one supervisor,
/// `ChildProcess` (standard output read line by line, standard error's last 64 KiB kept, stopped by its pid).
public typealias ServerProcess = ChildProcess

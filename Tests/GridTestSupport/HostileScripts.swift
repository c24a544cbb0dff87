/// Hostile job scripts shared by the sandbox tests. Each is bounded in count and in time even when the limit it tests
/// does not hold, so that a broken sandbox fails its test instead of taking the machine down with it.
public enum HostileScripts {
    /// A fork bomb: every process keeps forking while it can, but none forks more than 10 times in all (at most 1,024
    /// processes, four times the default limit of 256) and all of them stop after 60 s.
    public static let forkBomb = """
        import os, time
        end = time.time() + 60
        made = 0
        while time.time() < end:
            if made < 10:
                try:
                    os.fork()
                    made += 1
                except OSError:
                    time.sleep(0.01)
            else:
                time.sleep(0.05)

        """
}

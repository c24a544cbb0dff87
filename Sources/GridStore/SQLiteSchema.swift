import GRDB

/// The SQLite schema, as GRDB migrations. PostgreSQL's (`PostgresSchema`) is the same tables in its types.
enum SQLiteSchema {
    /// Migrations, in order. Never edit one that has shipped: add a new one.
    static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("v1") { db in
            try db.execute(
                sql: """
                    CREATE TABLE users (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        username TEXT NOT NULL UNIQUE COLLATE NOCASE,
                        password_hash TEXT NOT NULL,
                        created_at REAL NOT NULL
                    );
                    CREATE TABLE tokens (
                        hash TEXT PRIMARY KEY,
                        user_id INTEGER NOT NULL REFERENCES users(id),
                        kind TEXT NOT NULL,
                        created_at REAL NOT NULL
                    );
                    CREATE TABLE ledger (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        at REAL NOT NULL,
                        debit TEXT NOT NULL,
                        credit TEXT NOT NULL,
                        amount INTEGER NOT NULL CHECK (amount > 0),
                        reason TEXT NOT NULL,
                        job_id INTEGER
                    );
                    CREATE INDEX ledger_debit ON ledger(debit);
                    CREATE INDEX ledger_credit ON ledger(credit);
                    CREATE TABLE jobs (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        owner_id INTEGER NOT NULL REFERENCES users(id),
                        spec TEXT NOT NULL,
                        script_name TEXT NOT NULL,
                        state TEXT NOT NULL,
                        attempt INTEGER NOT NULL DEFAULT 0,
                        worker_id TEXT,
                        hold INTEGER NOT NULL,
                        paid INTEGER,
                        exit_code INTEGER,
                        runtime_ms INTEGER,
                        peak_memory_kb INTEGER,
                        cpu_seconds REAL,
                        reason TEXT,
                        pending_reason TEXT,
                        cancel_requested INTEGER NOT NULL DEFAULT 0,
                        log_total INTEGER NOT NULL DEFAULT 0,
                        log_attempt_base INTEGER NOT NULL DEFAULT 0,
                        submitted_at REAL NOT NULL,
                        started_at REAL,
                        finished_at REAL
                    );
                    CREATE INDEX jobs_state ON jobs(state);
                    CREATE INDEX jobs_owner ON jobs(owner_id);
                    CREATE TABLE job_events (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        job_id INTEGER NOT NULL REFERENCES jobs(id),
                        at REAL NOT NULL,
                        state TEXT NOT NULL,
                        detail TEXT
                    );
                    CREATE INDEX job_events_job ON job_events(job_id);
                    CREATE TABLE job_files (
                        job_id INTEGER NOT NULL REFERENCES jobs(id),
                        kind TEXT NOT NULL,
                        name TEXT NOT NULL,
                        data BLOB NOT NULL,
                        PRIMARY KEY (job_id, kind, name)
                    );
                    CREATE TABLE job_logs (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        job_id INTEGER NOT NULL REFERENCES jobs(id),
                        pos INTEGER NOT NULL,
                        data BLOB NOT NULL
                    );
                    CREATE INDEX job_logs_job ON job_logs(job_id, pos);
                    CREATE TABLE workers (
                        id TEXT PRIMARY KEY,
                        name TEXT NOT NULL,
                        owner_id INTEGER NOT NULL REFERENCES users(id),
                        resources TEXT NOT NULL,
                        gpu_names TEXT NOT NULL DEFAULT '[]',
                        tier TEXT NOT NULL,
                        slots INTEGER NOT NULL,
                        host TEXT,
                        port INTEGER,
                        web_port INTEGER,
                        online INTEGER NOT NULL DEFAULT 0,
                        load REAL NOT NULL DEFAULT 0,
                        first_seen REAL NOT NULL,
                        last_seen REAL NOT NULL,
                        online_since REAL,
                        cpu_seconds_given REAL NOT NULL DEFAULT 0,
                        jobs_done INTEGER NOT NULL DEFAULT 0
                    );
                    """)
        }
        m.registerMigration("v2-job-tier") { db in
            // The sandbox tier each job's latest attempt ran in.
            try db.execute(sql: "ALTER TABLE jobs ADD COLUMN tier TEXT")
        }
        m.registerMigration("v3-job-interruptions") { db in
            // Every interrupted run (a lost worker, a rejection, a report whose log never arrived), for the retry
            // policy (LossPolicy) and for `status`.
            try db.execute(
                sql: """
                    CREATE TABLE job_interruptions (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        job_id INTEGER NOT NULL REFERENCES jobs(id),
                        attempt INTEGER NOT NULL,
                        worker_id TEXT NOT NULL,
                        at REAL NOT NULL,
                        kind TEXT NOT NULL,
                        blamed INTEGER NOT NULL,
                        reason TEXT NOT NULL
                    );
                    CREATE INDEX job_interruptions_job ON job_interruptions(job_id);
                    CREATE INDEX job_interruptions_worker ON job_interruptions(worker_id, at);
                    """)
        }
        m.registerMigration("v4-verification") { db in
            // Verification (adaptive replication): a check run is a job row of its own (`check_of` = the job it checks),
            // placed away from the owners in `avoid_owners`; each run under check keeps its `digest`; the checked job
            // keeps its verification state. Each decided check is a row of `worker_checks` (reputation).
            try db.execute(
                sql: """
                    ALTER TABLE jobs ADD COLUMN check_of INTEGER REFERENCES jobs(id);
                    ALTER TABLE jobs ADD COLUMN avoid_owners TEXT;
                    ALTER TABLE jobs ADD COLUMN verification TEXT;
                    ALTER TABLE jobs ADD COLUMN verification_reason TEXT;
                    ALTER TABLE jobs ADD COLUMN verified_by TEXT;
                    ALTER TABLE jobs ADD COLUMN rerun_on TEXT;
                    ALTER TABLE jobs ADD COLUMN digest TEXT;
                    CREATE INDEX jobs_check_of ON jobs(check_of);
                    ALTER TABLE workers ADD COLUMN quarantined INTEGER NOT NULL DEFAULT 0;
                    ALTER TABLE workers ADD COLUMN quarantine_reason TEXT;
                    ALTER TABLE workers ADD COLUMN quarantine_lifted_at REAL;
                    CREATE TABLE worker_checks (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        worker_id TEXT NOT NULL,
                        job_id INTEGER NOT NULL,
                        at REAL NOT NULL,
                        outcome TEXT NOT NULL
                    );
                    CREATE INDEX worker_checks_worker ON worker_checks(worker_id, id);
                    """)
        }
        m.registerMigration("v5-leader-lease") { db in
            // Which manager leads the grid (issue 16): one row, its epoch fencing the leader's writes.
            try db.execute(sql: SQLiteSchema.leaderLease)
        }
        m.registerMigration("v6-submit-keys") { db in
            // Idempotent submission (SubmitKey): the client's key, unique per owner, and the digest of what it asked for.
            try db.execute(
                sql: """
                    ALTER TABLE jobs ADD COLUMN submit_key TEXT;
                    ALTER TABLE jobs ADD COLUMN submit_digest TEXT;
                    CREATE UNIQUE INDEX jobs_submit_key ON jobs(owner_id, submit_key) WHERE submit_key IS NOT NULL;
                    """)
        }
        m.registerMigration("v7-queue-changes") { db in
            // The queue's change log (issue 17): every job that enters, leaves or changes in the pending queue appends its
            // id, so the leader brings its copy of the queue up to date by reading what changed since its last pass
            // (`GridDatabase.queueSync`). Written by triggers, so no write path can forget it. `queue_changes_pruned`
            // says how far the log was cut: a reader that was further behind reads the whole queue again.
            try db.execute(
                sql: """
                    CREATE TABLE queue_changes (seq INTEGER PRIMARY KEY AUTOINCREMENT, job_id INTEGER NOT NULL);
                    CREATE TABLE queue_changes_pruned (id INTEGER PRIMARY KEY CHECK (id = 1), upto INTEGER NOT NULL);
                    INSERT INTO queue_changes_pruned (id, upto) VALUES (1, 0);
                    CREATE TRIGGER jobs_queue_insert AFTER INSERT ON jobs WHEN NEW.state = 'pending'
                    BEGIN INSERT INTO queue_changes (job_id) VALUES (NEW.id); END;
                    CREATE TRIGGER jobs_queue_update AFTER UPDATE OF state, owner_id, spec, submitted_at, avoid_owners, cancel_requested ON jobs
                    WHEN OLD.state = 'pending' OR NEW.state = 'pending'
                    BEGIN INSERT INTO queue_changes (job_id) VALUES (NEW.id); END;
                    CREATE TRIGGER jobs_queue_delete AFTER DELETE ON jobs WHEN OLD.state = 'pending'
                    BEGIN INSERT INTO queue_changes (job_id) VALUES (OLD.id); END;
                    -- Fair share reads the last day''s starts on every pass.
                    CREATE INDEX jobs_started ON jobs(started_at);
                    """)
        }
        m.registerMigration("v8-scheduling-columns") { db in
            // A job's scheduling fields beside its spec (`SchedulingColumns`), so that reading the whole queue (a new
            // leader's first pass) decodes no JSON. NULL: a row from before, whose spec is decoded instead.
            try db.execute(
                sql: """
                    ALTER TABLE jobs ADD COLUMN sched_cpus INTEGER;
                    ALTER TABLE jobs ADD COLUMN sched_ram_gb INTEGER;
                    ALTER TABLE jobs ADD COLUMN sched_gpus INTEGER;
                    ALTER TABLE jobs ADD COLUMN sched_priority INTEGER;
                    ALTER TABLE jobs ADD COLUMN sched_min_tier TEXT;
                    ALTER TABLE jobs ADD COLUMN sched_env TEXT;
                    ALTER TABLE jobs ADD COLUMN sched_requires_python TEXT;
                    """)
        }
        m.registerMigration("v9-peer-bars") { db in
            // What a revoked join token or a quarantine bars from the peers outlives the manager that decided it
            // (`ManagerCore.bar`): the bars, and which join token each worker's newest peer credential was given under.
            try db.execute(
                sql: """
                    CREATE TABLE peer_bars (worker_id TEXT PRIMARY KEY, refused_before INTEGER NOT NULL);
                    ALTER TABLE workers ADD COLUMN credential_token TEXT;
                    ALTER TABLE workers ADD COLUMN credential_expires INTEGER;
                    """)
        }
        m.registerMigration("v10-scheduling-disk") { db in
            // A job's scratch-disk limit (`JobSpec.diskGb`), read by every pass. NULL: the job asked for none, or a row
            // from before, whose spec has none either.
            try db.execute(sql: "ALTER TABLE jobs ADD COLUMN sched_disk_gb INTEGER")
        }
        m.registerMigration("v11-worker-accepts-others") { db in
            // Whether a worker took other users' jobs when it last registered: a manager started again knows from it
            // which owners could check a probation run. NULL: a row from before (its tier decides).
            try db.execute(sql: "ALTER TABLE workers ADD COLUMN accepts_others INTEGER")
        }
        m.registerMigration("v12-job-cancel-requested-at") { db in
            // When a running job's submitter first asked to cancel it: its run is billed no later than a lease period
            // after, by whichever manager settles it (the time was kept in memory only: after a restart or a failover,
            // a slow report of a cancelled run was billed to its arrival). NULL: never, or a row from before.
            try db.execute(sql: "ALTER TABLE jobs ADD COLUMN cancel_requested_at REAL")
        }
        return m
    }

    static let leaderLease = """
        CREATE TABLE leader_lease (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            holder TEXT NOT NULL,
            epoch INTEGER NOT NULL,
            expires_at REAL NOT NULL,
            worker_address TEXT NOT NULL,
            api_url TEXT NOT NULL
        )
        """
}

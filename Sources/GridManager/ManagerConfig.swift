import GridCore
import GridHTTP
public import GridProtocol
public import GridScheduler

/// Everything the manager can be told, with documented defaults. Parsed only by the executable.
public struct ManagerConfig: Sendable {
    /// Address both listeners bind (`MANAGER_HOST`).
    public var host: String = "0.0.0.0"
    /// Grid protocol port for workers (`MANAGER_PORT`); 0 picks a free one.
    public var gridPort: Int = 9999
    /// HTTP port for the dashboard, API and metrics (`DASHBOARD_PORT`); 0 picks a free one.
    public var httpPort: Int = 5000
    /// Folder for the SQLite database and everything else the manager keeps.
    public var dataDirectory: String
    /// The store (issue 16): a `postgres://` URL (several managers may share it) or a SQLite file path; nil keeps
    /// `grid.sqlite` in `dataDirectory`. May carry a password: never logged (see `GridStore.PostgresURL`).
    public var database: String?
    /// Credits a new account starts with (`STARTING_CREDITS`).
    public var startingCredits: Int = CreditRules.defaultStartingCredits
    /// How often workers send `LOAD_UPDATE`.
    public var heartbeatSeconds: Double = 1
    /// How long a running job stays with a silent worker before it is given to another.
    public var leaseSeconds: Double = 10
    /// When an interrupted job is given up (refunded): see `LossPolicy`.
    public var lossLimits = LossPolicy.Limits()
    /// How long a `JOB_DONE` waits for the rest of its run's log before the run counts as interrupted (`SettleRule`).
    public var settleWaitSeconds: Double = 30
    /// Output bytes of one owner's workers' reports held while their logs arrive: a report beyond it is refused until
    /// the log is in (a worker holding many jobs could pin gigabytes of outputs in the manager's memory).
    public var maxHeldReportBytes: Int = 256 << 20
    /// What the manager may have queued for one worker that does not read it (`WorkerSendQueue`): past it, that
    /// worker's connection is closed.
    public var workerSendQueueBytes: Int = 256 << 20
    /// How long one write to a worker may take before the next message queued for it gives its connection up.
    public var workerSendStallSeconds: Double = 120
    /// How long past its minutes a run may still be reported running before the manager stops it itself (`timed_out`,
    /// paid its minutes) and no longer believes the worker about it. The worker's own limit fires first.
    public var timeLimitGraceSeconds: Double = 60
    /// Verification (adaptive replication): spot-check rate (default 5%, `--spot-check-rate`), probation (5 agreeing
    /// results, `--probation-results`), the fund's share of every payment (5%, `--fund-share`), and a random seed for
    /// the spot-check draw, picked at start-up so no worker can tell which of its runs will be checked.
    public var verification = Verification.Policy(seed: UInt64.random(in: 0...UInt64.max))
    /// How long a check run may wait in the queue for a worker that can run it (`manager --check-wait-hours`, a day):
    /// then it ends without a result and its job's verification is inconclusive (`Verification.waitedOut`).
    public var checkWaitSeconds: Double = Verification.defaultCheckWaitSeconds
    /// How long a job that declares Python packages may wait for its environment before it starts: its time limit
    /// counts from its start (`JOB_STARTED`), and until then the manager allows this much more (workers stop a build
    /// after 10 minutes by default).
    public var environmentGraceSeconds: Double = 1_800
    /// The longest log a run may claim to have, and the most the manager stores of a job's log, all its runs together
    /// (more is dropped, with a note). A worker keeps 16 MiB of a run's log; a hostile one sent up to 1 GiB a run.
    public var maxLogBytes: Int64 = 64 << 20
    /// Logins (failed or not) allowed per username and client address within `loginWindowSeconds`; more are refused
    /// with 429.
    public var loginAttempts: Int = 10
    /// Logins allowed from one client address (an IPv6 /64 counts as one), whatever the usernames, within
    /// `loginWindowSeconds` (a class behind one address logs in at once): one address tried ten passwords a minute on
    /// every account there is.
    public var loginAttemptsPerAddress: Int = 100
    /// Failed logins allowed per account, from anywhere, within an hour: guesses spread over many addresses stop
    /// there (the account's sessions and tokens keep working meanwhile).
    public var loginFailuresPerAccount: Int = 100
    /// Tokens of each kind a user may hold: a login (or `token create --api`) past this many drops the user's oldest API
    /// token; a worker token past it is refused (a running worker's token is never taken away).
    public var maxTokensPerKind: Int = 100
    /// Workers an owner may have on record (each new identity is a row kept for good); a new one past this is refused.
    public var maxWorkersPerOwner: Int = 256
    /// Connections to the HTTP port per client address and in all, and how long one may stay idle
    /// (`HTTPConnectionCap`).
    public var httpConnections = HTTPConnectionCap.limits
    public var httpIdleSeconds = HTTPConnectionCap.defaultIdleSeconds
    /// Live page streams (`/live`) open at once per client address, and in all (`StreamQuota`).
    public var liveStreamsPerClient: Int = 32
    public var liveStreamsTotal: Int = 512
    public var loginWindowSeconds: Double = 60
    /// Sign-ups allowed from one client address at once (`/api/v1/register` and the dashboard's form together); more
    /// are refused with 429 and `Retry-After` until the address has earned them back at `registrationsPerMinute`.
    public var registrationBurst: Int = 10
    /// The steady rate of sign-ups per client address, per minute (`manager --registrations-per-minute`).
    public var registrationsPerMinute: Double = 10
    /// Pages that read whole tables (and the leaderboard, `GET /api/v1/workers`) an address asks for without signing
    /// in, or a person signed in: at once, then per minute (`APIController.admitAnonymousRead`, `admitSignedInRead`).
    public var tableReadBurst: Int = 120
    public var tableReadsPerMinute: Double = 600
    /// Usernames that may use the admin routes besides the first account registered (`manager --admin USER`).
    public var admins: [String] = []
    /// bcrypt cost for passwords.
    public var bcryptCost: UInt8 = 10
    /// Frame limits of the grid protocol. A job's script and inputs may take up to ¾ of the bulk limit.
    public var maxLineBytes: Int = 1 << 20
    public var maxBulkBytes: Int = 64 << 20

    /// How long a worker's connection may stay busy with its frames (one being read, or read and waiting to be
    /// handled) and still count as heard from (`BusySpells`): the deadline of the largest frame it may send (64 MiB:
    /// about 18 minutes), past which the frame is refused anyway.
    public var busyHoldSeconds: Double {
        FrameLimits(maxLineBytes: maxLineBytes, maxBulkBytes: maxBulkBytes).frameDeadlineSeconds(bulk: maxBulkBytes)
    }
    /// What a grid-port connection may do before `HELLO_OK`: deadline, line length, per-address caps
    /// (`manager --hello-deadline`).
    public var strangers = StrangerLimits()
    /// Speak TLS on the grid and HTTP ports even on loopback (`manager --tls`); beyond loopback TLS is the default.
    public var tlsAsked = false
    /// Plain text beyond loopback, by the operator's explicit choice (`--insecure-plaintext`); logged at every start.
    public var insecurePlaintext = false
    /// An operator's certificate chain and key (PEM) instead of the manager's own CA (`--tls-cert`, `--tls-key`).
    public var tlsCertificateFile: String?
    public var tlsKeyFile: String?
    /// More names or addresses for the server certificate (`--tls-name`), e.g. a DNS alias workers use.
    public var tlsNames: [String] = []

    /// Set by `Manager.run` when TLS is on: the CA fingerprint that join strings carry, and the CA certificate.
    public var caFingerprint: String?
    public var caPEM: String?
    /// Set by `Manager.run` when TLS is on: the peer CA's certificate (`GET /api/v1/peer-ca`).
    public var peerCAPEM: String?

    /// Plain text or TLS for this manager's listeners (`TransportChoice`).
    public var transport: TransportChoice {
        TransportChoice.decide(bindHost: host, tlsAsked: tlsAsked || tlsCertificateFile != nil, insecurePlaintext: insecurePlaintext)
    }

    /// Seconds a leader's lease row lasts without renewal (renewed three times a lease): a follower takes over this long
    /// after the leader stops renewing.
    public var leaderLeaseSeconds: Double = 3
    /// The host name or address the other managers, workers and clients reach this manager at (nil: the bind address,
    /// or this machine's host name when bound to every address). Written into the lease row when it leads.
    public var advertiseHost: String?

    public init(dataDirectory: String) {
        self.dataDirectory = dataDirectory
    }
}

/// A config written into a log (ServiceLifecycle prints its services, and so their configs, at debug level) never
/// shows the store's URL, which may carry a password: only whether one is set.
extension ManagerConfig: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public var description: String {
        "ManagerConfig(host: \(host), gridPort: \(gridPort), httpPort: \(httpPort), dataDirectory: \(dataDirectory), database: \(database == nil ? "default" : "set, not shown"))"
    }
    public var debugDescription: String { description }
    public var customMirror: Mirror { Mirror(self, children: ["description": description]) }
}

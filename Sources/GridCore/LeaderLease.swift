/// The row that says which manager leads the grid (issue 16). One row per grid database.
///
/// `epoch` grows by one with every new leadership; a leader's writes are fenced by it.
public struct LeaderLease: Sendable, Equatable, Codable {
    /// The leading manager's instance id (random per process start).
    public var holder: String
    /// Strictly increasing, one per leadership.
    public var epoch: Int64
    /// Unix seconds after which another manager may take the lease.
    public var expiresAt: Double
    /// "host:port" of the leader's worker-protocol listener.
    public var workerAddress: String
    /// Base URL of the leader's REST API and dashboard, e.g. "https://127.0.0.1:8443".
    public var apiURL: String

    public init(holder: String, epoch: Int64, expiresAt: Double, workerAddress: String, apiURL: String) {
        self.holder = holder
        self.epoch = epoch
        self.expiresAt = expiresAt
        self.workerAddress = workerAddress
        self.apiURL = apiURL
    }
}

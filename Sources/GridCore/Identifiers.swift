/// A user account's id (a row id in the manager's store).
public typealias UserID = Int64
/// A job's id (a row id in the manager's store); shown to users as a plain number.
public typealias JobID = Int64
/// A worker's id: chosen by the manager at first registration and kept by the worker in its data directory.
public typealias WorkerID = String

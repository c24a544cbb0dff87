public import GridCore

/// Whether a worker's word that a job's Python environment could not be built ends the job, or sends it to a worker
/// of another owner first. Pure.
///
/// Such a report (`JOB_DONE failed` with `refund`) ends the job failed, refunded, unchecked: nothing ran, so there is
/// nothing to compare. Before, one worker's word was enough, so any stranger's worker could end every job that declares
/// packages it was given, at no cost to itself (money review). Now the job ends so only when that is the word of
/// workers of two owners, or of the submitter's own worker, or when no worker of another owner online could run it
/// (a grid of one contributor: nobody else to ask). Otherwise the run counts as one the worker could not start: the
/// job keeps away from that owner's workers a while and runs elsewhere (each such run is an interruption, so
/// `LossPolicy` still bounds the tries).
public enum EnvironmentFailure {
    /// `reporter`: the owner of the worker that reports it; `submitter`: the job's; `earlier`: the owners whose workers
    /// reported it for this job before; `couldRun`: the owners with a worker online that could run the job
    /// (`Placement.checkOwners`).
    public static func endsJob(reporter: UserID, submitter: UserID, earlier: Set<UserID>, couldRun: Set<UserID>) -> Bool {
        if reporter == submitter { return true }
        if !earlier.subtracting([reporter]).isEmpty { return true }
        return couldRun.subtracting(earlier.union([reporter])).isEmpty
    }
}

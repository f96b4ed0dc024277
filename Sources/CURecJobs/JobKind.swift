import Foundation

/// A kind of job the daemon can run.
///
/// Adding a kind is one step: implement this protocol and pass an instance to
/// ``JobManager`` (see docs/jobs.md). `run` is called on a worker thread and may block; it
/// reports progress through the context, checks `context.isCancelled` between steps, and
/// keeps resumable state in `context.checkpointDirectory`, which survives restarts.
public protocol JobKind: Sendable {
    /// The name clients submit, e.g. "train".
    var name: String { get }
    /// A one-line description of the parameters, for error messages and docs.
    var parameterSummary: String { get }
    /// Checks parameters before the job is queued.
    func validate(_ parameters: [String: String]) throws(JobError)
    /// Runs the job; returns its outcome or throws (the message becomes the job's error).
    func run(_ context: JobContext) throws -> JobOutcome
}

/// What a finished job leaves behind.
public struct JobOutcome: Sendable {
    public var metrics: [String: Double]
    public var artifact: String

    public init(metrics: [String: Double] = [:], artifact: String = "") {
        self.metrics = metrics
        self.artifact = artifact
    }
}

/// Thrown from `run` when the job noticed cancellation.
public struct JobCancelled: Error, Sendable {
    public init() {}
}

/// The job's view of itself while it runs.
public final class JobContext: Sendable {
    public let id: String
    public let parameters: [String: String]
    /// 1 on the first run, higher when a restart resumed the job.
    public let attempt: Int
    /// A directory kept across restarts for this job's checkpoints (created on demand).
    public let checkpointDirectory: String
    private let manager: JobManager

    init(record: JobRecord, checkpointDirectory: String, manager: JobManager) {
        id = record.id
        parameters = record.parameters
        attempt = record.attempts
        self.checkpointDirectory = checkpointDirectory
        self.manager = manager
    }

    /// Reports progress within a stage.
    public func progress(stage: String, step: UInt64, total: UInt64, metrics: [String: Double] = [:]) {
        manager.progress(id: id, stage: stage, step: step, total: total, metrics: metrics)
    }

    /// Records a log line.
    public func log(_ line: String) {
        manager.log(id: id, line: line)
    }

    /// True once a client cancelled the job (or the daemon is shutting down).
    public var isCancelled: Bool { manager.isCancelled(id: id) }
}

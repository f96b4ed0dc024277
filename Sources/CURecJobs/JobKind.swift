import Foundation

/// A kind of job the daemon can run.
///
/// Adding a kind: declare its parameters (a ``JobParameterSchema``), implement this protocol
/// and pass an instance to ``JobManager`` (see docs/jobs.md). `run` is called on a worker thread and may block; it
/// reports progress through the context, checks `context.isCancelled` between steps, and
/// keeps resumable state in `context.checkpointDirectory`, which survives restarts.
public protocol JobKind: Sendable {
    /// The name clients submit, e.g. "train".
    var name: String { get }
    /// The parameters it takes, declared once. ``JobManager`` checks every submission against
    /// them (names, types, ranges, required ones) before ``validate(_:)``.
    var parameters: JobParameterSchema { get }
    /// Checks what the declarations cannot before the job is queued: that what the parameters
    /// name exists, relations between parameters, resources the daemon needs.
    func validate(_ values: JobParameterValues) throws(JobError)
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
    /// The parameters as submitted.
    public let parameters: [String: String]
    /// The parameters read against the kind's declarations.
    public let values: JobParameterValues
    /// 1 on the first run, higher when a restart resumed the job.
    public let attempt: Int
    /// A directory kept across restarts for this job's checkpoints (created on demand).
    public let checkpointDirectory: String
    private let manager: JobManager

    init(record: JobRecord, values: JobParameterValues, checkpointDirectory: String, manager: JobManager) {
        id = record.id
        parameters = record.parameters
        self.values = values
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

    /// Blocks until ``isCancelled`` is true, for a job that waits on something else's
    /// progress rather than stepping.
    public func waitUntilCancelled() { manager.waitUntilCancelled(id: id) }
}

import Foundation

/// Where a job is in its life.
public enum JobState: String, Sendable, Codable, CaseIterable {
    case queued, running, succeeded, failed, cancelled

    /// Whether the job has ended (no further changes).
    public var isFinal: Bool { self == .succeeded || self == .failed || self == .cancelled }
}

/// One job as stored and reported.
public struct JobRecord: Sendable, Hashable {
    public var id: String
    public var kind: String
    public var parameters: [String: String]
    public var state: JobState
    public var stage: String = ""
    public var step: UInt64 = 0
    public var total: UInt64 = 0
    public var metrics: [String: Double] = [:]
    public var error: String = ""
    public var createdMS: Int64
    public var startedMS: Int64 = 0
    public var finishedMS: Int64 = 0
    /// Times the job was started; above 1 after a restart resumed it.
    public var attempts: Int = 0
    /// The artifact the job produced (e.g. `models/bpr/v3`).
    public var artifact: String = ""
    /// A client asked to cancel it while it ran; stored, so a restart does not resume it.
    public var cancelRequested = false
    /// Times the daemon died while this job ran (a graceful stop does not count).
    public var crashes: Int = 0

    public init(id: String, kind: String, parameters: [String: String], state: JobState, createdMS: Int64) {
        self.id = id
        self.kind = kind
        self.parameters = parameters
        self.state = state
        self.createdMS = createdMS
    }
}

/// One progress event of a job.
public struct JobEvent: Sendable, Hashable {
    public var jobID: String
    public var state: JobState
    public var stage: String
    public var step: UInt64
    public var total: UInt64
    public var metrics: [String: Double]
    public var logLine: String
    public var timeMS: Int64
    public var error: String
    /// A client has asked to cancel the job (the daemon running it stops it at its next step).
    public var cancelRequested: Bool
    /// The last event: the job ended.
    public var isFinal: Bool { state.isFinal }

    /// The event describing `record` as it is now, with an optional log line.
    public init(record: JobRecord, logLine: String = "") {
        jobID = record.id
        state = record.state
        stage = record.stage
        step = record.step
        total = record.total
        metrics = record.metrics
        self.logLine = logLine
        timeMS = Clock.nowMS()
        error = record.error
        cancelRequested = record.cancelRequested
    }
}

/// Why a job request was refused. (The daemon maps each case to a gRPC status in one place.)
public enum JobError: Error, CustomStringConvertible, Sendable {
    case unknownKind(String, known: [String])
    case invalidParameter(String)
    case queueFull(limit: Int)
    case notFound(String)
    case alreadyEnded(id: String, state: JobState)
    case storage(String)
    /// The parameters are larger than the daemon accepts.
    case parametersTooLarge(limit: Int)
    /// A List page token that this daemon did not hand out.
    case invalidPageToken
    /// The job store's address (`job_store_url`) is malformed; the message says how.
    case invalidStoreURL(String)
    /// The job store's database cannot be reached (at start).
    case storeUnavailable(String)

    public var description: String {
        switch self {
        case .unknownKind(let kind, let known):
            return "unknown job kind '\(kind)'; known kinds: \(known.joined(separator: ", "))"
        case .invalidParameter(let message): return message
        case .queueFull(let limit):
            return "the job queue is full (\(limit) jobs waiting); retry after some finish or cancel queued ones"
        case .notFound(let id): return "no job with id \(ParameterProblem.quoted(id))"
        case .alreadyEnded(let id, let state): return "job \(id) has already ended (\(state.rawValue)); nothing to cancel"
        case .parametersTooLarge(let limit):
            return "the job's parameters are larger than \(limit) bytes (names and values together); pass large inputs as uploaded datasets"
        case .invalidPageToken: return "page_token is not one this daemon returned; start again with an empty page_token"
        case .storage(let message): return "job storage failed: \(message)"
        case .invalidStoreURL(let message): return message
        case .storeUnavailable(let message): return "the job store is unavailable: \(message)"
        }
    }
}

enum Clock {
    static func nowMS() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }
}

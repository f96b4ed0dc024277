import CURecPluginABI
import Foundation

/// What a plugin instance does.
public enum PluginKind: String, Sendable {
    case recommender = "recommender"
    case rewardModel = "reward_model"
}

/// A plugin's self-description (from `curec_plugin_describe`).
public struct PluginDescription: Sendable, Hashable {
    public var pluginName: String
    public var pluginVersion: String
    public var kind: PluginKind
    public var itemFeatureDimension: Int
    public var userFeatureDimension: Int
    public var reasonEmbeddingDimension: Int
    public var isTrained: Bool
    /// Recommenders with a batched entry point (ABI 1.2): the most requests one batched call
    /// takes; 0 when the instance is scored one request at a time.
    public var maxBatchSize: Int = 0
}

/// One user's recommender scoring request, as the batch queue holds it.
public struct RecommenderRequest: Sendable, Hashable {
    public var user: UInt32
    /// Oldest first; may be empty (the plugin then uses what it knows of the user).
    public var history: [UInt32]
    public var candidates: [UInt32]

    public init(user: UInt32, history: [UInt32], candidates: [UInt32]) {
        self.user = user
        self.history = history
        self.candidates = candidates
    }
}


/// Training data handed to a plugin, owned by the caller (arrays are copied into the view).
public struct PluginTrainingData: Sendable {
    public var userCount: Int
    public var itemCount: Int
    /// Interactions sorted by user, then time.
    public var users: [UInt32]
    public var items: [UInt32]
    public var ratings: [Float]
    public var timestamps: [Int64]
    /// Row-major `[itemCount x itemFeatureDimension]`, or empty.
    public var itemFeatures: [Float]
    public var itemFeatureDimension: Int
    /// Row-major `[userCount x userFeatureDimension]`, or empty.
    public var userFeatures: [Float]
    public var userFeatureDimension: Int
    public var validationUsers: [UInt32]
    public var validationItems: [UInt32]

    /// Training data; feature matrices are optional (empty with dimension 0).
    public init(userCount: Int, itemCount: Int, users: [UInt32], items: [UInt32], ratings: [Float], timestamps: [Int64],
                itemFeatures: [Float] = [], itemFeatureDimension: Int = 0,
                userFeatures: [Float] = [], userFeatureDimension: Int = 0,
                validationUsers: [UInt32] = [], validationItems: [UInt32] = []) {
        self.userCount = userCount
        self.itemCount = itemCount
        self.users = users
        self.items = items
        self.ratings = ratings
        self.timestamps = timestamps
        self.itemFeatures = itemFeatures
        self.itemFeatureDimension = itemFeatureDimension
        self.userFeatures = userFeatures
        self.userFeatureDimension = userFeatureDimension
        self.validationUsers = validationUsers
        self.validationItems = validationItems
    }
}

/// Where a plugin instance runs.
public enum PluginIsolation: Sendable, Hashable {
    /// In the daemon's process, called directly through the C ABI (trusted, fastest plugins).
    case inProcess
    /// In its own supervised worker process, which loads the library through the same ABI.
    case process(WorkerLimits)

    /// The name used in configuration and status: `in_process` or `process`.
    public var name: String {
        switch self {
        case .inProcess: return "in_process"
        case .process: return "process"
        }
    }
}

/// Whether an instance can take calls now.
public enum PluginReadiness: Sendable, Hashable {
    /// Calls are served.
    case serving
    /// Its worker is down and being restarted; calls fail fast with UNAVAILABLE meanwhile.
    case restarting(reason: String)
    /// Its worker kept crashing and is not restarted again; reload or unload the instance.
    case failed(reason: String)

    public var isServing: Bool { self == .serving }
}

/// The calls a plugin instance answers, wherever the plugin runs: in this process through
/// the C ABI (``InProcessPlugin``) or in a supervised worker process (``IsolatedPlugin``).
/// ``PluginInstance`` forwards to one of them, so everything above it (the services, jobs,
/// batching) calls one seam whatever the isolation.
protocol PluginBackend: AnyObject, Sendable {
    /// What the instance described itself as when it was created.
    var kind: PluginKind { get }
    /// The plugin's own version when it was created.
    var pluginVersion: String { get }
    var readiness: PluginReadiness { get }
    func describe() -> PluginDescription
    func scoreRecommender(user: UInt32, history: [UInt32], candidates: UnsafeBufferPointer<UInt32>,
                          scores: UnsafeMutableBufferPointer<Float>) throws(PluginHostError)
    func scoreReward(_ inputs: [PluginInstance.RewardInput]) throws(PluginHostError) -> [Float]
    /// Recommenders with a batched entry point (plugin ABI 1.2): the most requests one
    /// batched call takes; 0 when requests are scored one at a time.
    var maxBatchSize: Int { get }
    /// Scores at most ``maxBatchSize`` requests in one call: one result per request, in order.
    func scoreRecommenderBatch(_ requests: ArraySlice<RecommenderRequest>) -> [Result<[Float], PluginHostError>]
    func train(_ data: PluginTrainingData, checkpointDirectory: String?,
               progress: @escaping (UInt64, UInt64, String) -> Void,
               isCancelled: @escaping () -> Bool) throws(PluginHostError)
    func save(to directory: String) throws(PluginHostError)
    func load(from directory: String) throws(PluginHostError)
    /// Whether a call waits on another process (an isolated worker), so callers on an I/O
    /// loop must use the suspending entry points.
    var callsWaitOnAnotherProcess: Bool { get }
    /// The description without asking the plugin again when that would wait on a worker.
    var knownDescription: PluginDescription { get }
    /// Scores `request` without blocking the calling thread while another process computes:
    /// `completion` runs once, on whichever thread has the result.
    func scoreRecommender(_ request: RecommenderRequest,
                          completion: @escaping @Sendable (Result<[Float], PluginHostError>) -> Void)
    /// Rewards `inputs` without blocking the calling thread while another process computes.
    func scoreReward(_ inputs: [PluginInstance.RewardInput],
                     completion: @escaping @Sendable (Result<[Float], PluginHostError>) -> Void)
}

extension PluginBackend {
    /// No batched entry point: requests are scored one at a time.
    var maxBatchSize: Int { 0 }

    /// In this process a call never waits on another one.
    var callsWaitOnAnotherProcess: Bool { false }

    var knownDescription: PluginDescription { describe() }

    /// In this process scoring is fast: it runs on the calling thread, which completes.
    func scoreRecommender(_ request: RecommenderRequest,
                          completion: @escaping @Sendable (Result<[Float], PluginHostError>) -> Void) {
        completion(Result { () throws(PluginHostError) -> [Float] in
            var scores = [Float](repeating: 0, count: request.candidates.count)
            try request.candidates.withUnsafeBufferPointer { candidates throws(PluginHostError) in
                try scores.withUnsafeMutableBufferPointer { output throws(PluginHostError) in
                    try scoreRecommender(user: request.user, history: request.history, candidates: candidates, scores: output)
                }
            }
            return scores
        })
    }

    func scoreReward(_ inputs: [PluginInstance.RewardInput],
                     completion: @escaping @Sendable (Result<[Float], PluginHostError>) -> Void) {
        completion(Result { () throws(PluginHostError) -> [Float] in try scoreReward(inputs) })
    }

    func scoreRecommenderBatch(_ requests: ArraySlice<RecommenderRequest>) -> [Result<[Float], PluginHostError>] {
        requests.map { request in
            Result { () throws(PluginHostError) -> [Float] in
                var scores = [Float](repeating: 0, count: request.candidates.count)
                try request.candidates.withUnsafeBufferPointer { candidates throws(PluginHostError) in
                    try scores.withUnsafeMutableBufferPointer { output throws(PluginHostError) in
                        try scoreRecommender(user: request.user, history: request.history, candidates: candidates, scores: output)
                    }
                }
                return scores
            }
        }
    }
}

/// One live plugin instance. Scoring is thread-safe; train/load must not overlap other calls
/// (the host guarantees this by training instances before they serve).
///
/// The instance is the calling surface of a plugin whatever its isolation: it checks what
/// does not depend on where the plugin runs (the kind of a call, feature sizes) and forwards
/// to its backend.
public final class PluginInstance: Sendable {
    /// The instance name in the daemon.
    public let name: String
    /// Increases by one per reload of `name`.
    public let generation: UInt64
    /// The library it came from.
    public let libraryPath: String
    /// Where the plugin runs.
    public let isolation: PluginIsolation
    let backend: any PluginBackend

    init(name: String, generation: UInt64, libraryPath: String, isolation: PluginIsolation,
         backend: any PluginBackend, batching: DynamicBatchingConfiguration? = nil) throws(PluginHostError) {
        self.name = name
        self.generation = generation
        self.libraryPath = libraryPath
        self.isolation = isolation
        self.backend = backend
        self.kind = backend.kind
        self.servedBy = "\(name)@\(backend.pluginVersion)#\(generation)"
        let declared = backend.kind == .recommender ? backend.maxBatchSize : 0
        self.maxBatchSize = declared
        self.requestedBatching = batching
        guard let batching else {
            self.batcher = nil
            return
        }
        guard declared > 0 else { throw .batchingUnsupported(instance: name) }
        let resolved = try batching.validated(pluginMaximum: declared)
        // The batch thread holds the instance weakly: callers waiting in the queue hold it.
        let box = WeakInstance()
        self.batcher = DynamicBatcher(instance: name, configuration: resolved) { requests in
            guard let instance = box.instance else {
                return requests.map { _ in .failure(.host("plugin '\(name)' was retired while the request waited; retry it")) }
            }
            return instance.scoreRecommenderBatch(requests)
        }
        box.instance = self
    }

    /// The most requests one batched call takes (from describe); 0 when not batched.
    public let maxBatchSize: Int

    /// The queue in front of the batched entry point, when the instance was loaded with
    /// dynamic batching; nil means every request is its own call.
    public let batcher: DynamicBatcher<RecommenderRequest, [Float]>?

    /// The dynamic batching the instance was asked for (as given; a reload asks the same).
    public let requestedBatching: DynamicBatchingConfiguration?

    /// The dynamic batching the instance serves with (resolved), or nil.
    public var batching: DynamicBatchingConfiguration? { batcher?.configuration }

    private final class WeakInstance: @unchecked Sendable {
        weak var instance: PluginInstance?
    }

    /// What the instance described itself as when it was created; it decides which scoring
    /// entry point the host calls (a library may export both, as Swift plugins do).
    public let kind: PluginKind

    /// "name@version#generation": which instance answered, for responses and logs.
    public let servedBy: String

    /// Whether calls are served now (always for an in-process instance).
    public var readiness: PluginReadiness { backend.readiness }

    /// The plugin's current self-description (the last known one while a worker is down).
    public func describe() -> PluginDescription {
        var description = backend.describe()
        description.maxBatchSize = maxBatchSize
        return description
    }

    /// Scores many users' requests in one call of the batched entry point (ABI 1.2): one
    /// result per request, in order; a request's failure leaves the others' scores intact.
    /// Without the entry point each request is scored on its own.
    public func scoreRecommenderBatch(_ requests: [RecommenderRequest]) -> [Result<[Float], PluginHostError>] {
        guard kind == .recommender else {
            return requests.map { _ in .failure(.wrongKind(instance: name, expected: "recommender", actual: "reward model")) }
        }
        guard maxBatchSize > 0 else { return backend.scoreRecommenderBatch(requests[...]) }
        var results: [Result<[Float], PluginHostError>] = []
        results.reserveCapacity(requests.count)
        var start = 0
        // Chunks of at most maxBatchSize (the batcher never sends more; direct callers may).
        while start < requests.count {
            let end = min(start + maxBatchSize, requests.count)
            results += backend.scoreRecommenderBatch(requests[start..<end])
            start = end
        }
        return results
    }

    /// Whether a call to this instance waits on its worker process. Callers on an I/O loop
    /// then use ``scoreSuspending(_:)`` and ``scoreRewardSuspending(_:)``, which leave the
    /// thread free while the worker computes; in process, calls are fast enough to make inline.
    public var callsWaitOnAnotherProcess: Bool { backend.callsWaitOnAnotherProcess }

    /// The description as last known: for an isolated instance, without asking its worker
    /// (which a hanging plugin would hold up); in process the same as ``describe()``.
    public var knownDescription: PluginDescription {
        var description = backend.knownDescription
        description.maxBatchSize = maxBatchSize
        return description
    }

    /// Scores one request without blocking the calling thread while an isolated instance's
    /// worker computes: `completion` gets the scores (one per candidate) or the error once,
    /// from the worker's reply thread (in process: on the calling thread, before returning).
    public func score(_ request: RecommenderRequest,
                      completion: @escaping @Sendable (Result<[Float], PluginHostError>) -> Void) {
        guard kind == .recommender else {
            completion(.failure(.wrongKind(instance: name, expected: "recommender", actual: "reward model")))
            return
        }
        backend.scoreRecommender(request, completion: completion)
    }

    /// ``score(_:completion:)`` for a task: suspends instead of blocking its thread.
    public func scoreSuspending(_ request: RecommenderRequest) async throws(PluginHostError) -> [Float] {
        guard callsWaitOnAnotherProcess else { return try score(request) }
        let result = await withCheckedContinuation { (continuation: CheckedContinuation<Result<[Float], PluginHostError>, Never>) in
            score(request) { continuation.resume(returning: $0) }
        }
        return try result.get()
    }

    /// Scores reasons without blocking the calling task while an isolated instance's worker
    /// computes; one reward per input.
    public func scoreRewardSuspending(_ inputs: [RewardInput]) async throws(PluginHostError) -> [Float] {
        guard kind == .rewardModel else {
            throw .wrongKind(instance: name, expected: "reward model", actual: "recommender")
        }
        guard callsWaitOnAnotherProcess else { return try backend.scoreReward(inputs) }
        let result = await withCheckedContinuation { (continuation: CheckedContinuation<Result<[Float], PluginHostError>, Never>) in
            backend.scoreReward(inputs) { continuation.resume(returning: $0) }
        }
        return try result.get()
    }

    /// Scores one request directly (no queue).
    public func score(_ request: RecommenderRequest) throws(PluginHostError) -> [Float] {
        var scores = [Float](repeating: 0, count: request.candidates.count)
        try request.candidates.withUnsafeBufferPointer { candidates throws(PluginHostError) in
            try scores.withUnsafeMutableBufferPointer { output throws(PluginHostError) in
                try scoreRecommender(user: request.user, history: request.history, candidates: candidates, scores: output)
            }
        }
        return scores
    }

    /// Scores `request` through the batch queue when the instance has one, else directly
    /// (as a batch of one). `deadline` is in ``DynamicBatcher`` monotonic nanoseconds;
    /// cancelling the task takes a queued request out of the queue.
    public func scoreQueued(_ request: RecommenderRequest, deadline: UInt64? = nil,
                            observer: (any BatchExecutionObserver)? = nil) async throws(PluginHostError) -> BatchedOutcome<[Float]> {
        if let batcher {
            return try await batcher.submit(request, deadline: deadline, observer: observer)
        }
        let start = DynamicBatcher<RecommenderRequest, [Float]>.now()
        let scores = try score(request)
        observer?.executed(inferences: 1, computeNanoseconds: DynamicBatcher<RecommenderRequest, [Float]>.now() &- start)
        return BatchedOutcome(value: scores, queueNanoseconds: 0, batchSize: 1)
    }

    /// Scores `candidates` for `user`, writing into `scores` (same count as candidates).
    public func scoreRecommender(user: UInt32, history: [UInt32], candidates: UnsafeBufferPointer<UInt32>,
                                 scores: UnsafeMutableBufferPointer<Float>) throws(PluginHostError) {
        guard kind == .recommender else {
            throw .wrongKind(instance: name, expected: "recommender", actual: "reward model")
        }
        guard scores.count >= candidates.count else {
            throw .host("the score buffer holds \(scores.count) values for \(candidates.count) candidates")
        }
        try backend.scoreRecommender(user: user, history: history, candidates: candidates, scores: scores)
    }

    /// One reward input.
    public struct RewardInput: Sendable {
        public var user: UInt32
        public var item: UInt32
        public var embedding: [Float]
        public init(user: UInt32, item: UInt32, embedding: [Float]) {
            self.user = user
            self.item = item
            self.embedding = embedding
        }
    }

    /// Scores reasons; returns one reward per input.
    public func scoreReward(_ inputs: [RewardInput]) throws(PluginHostError) -> [Float] {
        guard kind == .rewardModel else {
            throw .wrongKind(instance: name, expected: "reward model", actual: "recommender")
        }
        return try backend.scoreReward(inputs)
    }

    /// Trains on `data`. `progress` gets (step, total, metrics JSON); `isCancelled` is polled;
    /// a plugin that supports it checkpoints into (and resumes from) `checkpointDirectory`.
    /// Feature matrices whose size is not count x dimension are refused before the plugin
    /// sees them (it would read past their end).
    public func train(_ data: PluginTrainingData, checkpointDirectory: String? = nil,
                      progress: @escaping (UInt64, UInt64, String) -> Void = { _, _, _ in },
                      isCancelled: @escaping () -> Bool = { false }) throws(PluginHostError) {
        try Self.checkFeatures(data.itemFeatures, rows: data.itemCount, dimension: data.itemFeatureDimension, what: "item")
        try Self.checkFeatures(data.userFeatures, rows: data.userCount, dimension: data.userFeatureDimension, what: "user")
        try backend.train(data, checkpointDirectory: checkpointDirectory, progress: progress, isCancelled: isCancelled)
    }

    /// A feature matrix must hold `rows x dimension` values (empty with dimension 0) and its
    /// dimension must fit the view's 32-bit field.
    static func checkFeatures(_ values: [Float], rows: Int, dimension: Int, what: String) throws(PluginHostError) {
        guard dimension >= 0, dimension <= Int(UInt32.max) else {
            throw .host("the \(what) feature dimension \(dimension) is out of range")
        }
        let (expected, overflow) = rows.multipliedReportingOverflow(by: dimension)
        guard !overflow, values.count == expected else {
            throw .host("the \(what) features hold \(values.count) values, expected \(what) count x dimension = \(rows) x \(dimension)")
        }
    }

    /// Saves the trained state into `directory` (created if needed).
    public func save(to directory: String) throws(PluginHostError) {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw .host("cannot create \(directory): \(error.localizedDescription)")
        }
        try backend.save(to: directory)
    }

    /// Loads state saved by `save(to:)`.
    public func load(from directory: String) throws(PluginHostError) {
        try backend.load(from: directory)
    }
}

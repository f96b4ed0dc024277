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

/// One live plugin instance. Scoring is thread-safe; train/load must not overlap other calls
/// (the host guarantees this by training instances before they serve).
public final class PluginInstance: @unchecked Sendable {
    /// The instance name in the daemon.
    public let name: String
    /// Increases by one per reload of `name`.
    public let generation: UInt64
    /// The library it came from.
    public var libraryPath: String { library.path }
    let library: PluginLibrary
    private let pointer: OpaquePointer

    init(name: String, generation: UInt64, library: PluginLibrary, config: [UInt8],
         batching: DynamicBatchingConfiguration? = nil) throws(PluginHostError) {
        self.name = name
        self.generation = generation
        self.library = library
        var error = CURecError()
        var created: OpaquePointer? = nil
        let status = config.withUnsafeBufferPointer { buffer in
            library.create(buffer.baseAddress, buffer.count, &created, &error)
        }
        guard status == 0, let created else {
            throw .plugin(code: status == 0 ? 13 : status,
                          message: status == 0 ? "create returned no instance" : Self.message(error),
                          function: "create", instance: name)
        }
        self.pointer = created
        var info = CURecPluginInfo()
        info.struct_size = UInt32(MemoryLayout<CURecPluginInfo>.size)
        _ = library.describe(created, &info)
        let version = info.version.map { String(cString: $0) } ?? ""
        self.servedBy = "\(name)@\(version)#\(generation)"
        self.kind = info.kind == Int32(CUREC_PLUGIN_KIND_REWARD_MODEL.rawValue) ? .rewardModel : .recommender
        let declared = library.scoreRecommenderBatch == nil || kind != .recommender ? 0 : Int(info.max_batch_size)
        self.maxBatchSize = declared
        self.requestedBatching = batching
        guard let batching else {
            self.batcher = nil
            return
        }
        guard declared > 0 else {
            library.destroy(created)
            throw .batchingUnsupported(instance: name)
        }
        let resolved: DynamicBatchingConfiguration
        do throws(PluginHostError) {
            resolved = try batching.validated(pluginMaximum: declared)
        } catch {
            library.destroy(created)
            throw error
        }
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

    deinit {
        library.destroy(pointer)
    }

    static func message(_ error: CURecError) -> String {
        withUnsafeBytes(of: error.message) { raw in
            let bytes = raw.prefix { $0 != 0 }
            return String(decoding: bytes, as: UTF8.self)
        }
    }

    private func check(_ status: Int32, _ error: CURecError, _ function: String) throws(PluginHostError) {
        guard status == 0 else {
            throw .plugin(code: status, message: Self.message(error), function: function, instance: name)
        }
    }

    /// The plugin's current self-description.
    public func describe() -> PluginDescription {
        var info = CURecPluginInfo()
        info.struct_size = UInt32(MemoryLayout<CURecPluginInfo>.size)
        _ = library.describe(pointer, &info)
        return PluginDescription(
            pluginName: info.name.map { String(cString: $0) } ?? "",
            pluginVersion: info.version.map { String(cString: $0) } ?? "",
            kind: info.kind == Int32(CUREC_PLUGIN_KIND_REWARD_MODEL.rawValue) ? .rewardModel : .recommender,
            itemFeatureDimension: Int(info.item_feature_dim),
            userFeatureDimension: Int(info.user_feature_dim),
            reasonEmbeddingDimension: Int(info.reason_embedding_dim),
            isTrained: info.is_trained != 0, maxBatchSize: maxBatchSize)
    }

    /// Scores many users' requests in one call of the batched entry point (ABI 1.2): one
    /// result per request, in order; a request's failure leaves the others' scores intact.
    /// Without the entry point each request is scored on its own.
    public func scoreRecommenderBatch(_ requests: [RecommenderRequest]) -> [Result<[Float], PluginHostError>] {
        guard kind == .recommender else {
            return requests.map { _ in .failure(.wrongKind(instance: name, expected: "recommender", actual: "reward model")) }
        }
        guard let scoreBatch = library.scoreRecommenderBatch, maxBatchSize > 0 else {
            return requests.map { request in
                Result { () throws(PluginHostError) -> [Float] in try score(request) }
            }
        }
        var results: [Result<[Float], PluginHostError>] = []
        results.reserveCapacity(requests.count)
        var start = 0
        // Chunks of at most maxBatchSize (the batcher never sends more; direct callers may).
        while start < requests.count {
            let end = min(start + maxBatchSize, requests.count)
            results += scoreChunk(requests[start..<end], scoreBatch)
            start = end
        }
        return results
    }

    /// One call of the batched entry point for `requests` (at most ``maxBatchSize``): every
    /// request's scores go into one buffer, at its own offset.
    private func scoreChunk(_ requests: ArraySlice<RecommenderRequest>,
                            _ scoreBatch: PluginLibrary.ScoreRecommenderBatch) -> [Result<[Float], PluginHostError>] {
        var offsets: [Int] = [], total = 0
        for request in requests {
            offsets.append(total)
            total += request.candidates.count
        }
        var flat = [Float](repeating: 0, count: total)
        var outcomes = [CURecError](repeating: CURecError(), count: requests.count)
        var error = CURecError()
        let status: Int32 = Self.withRequestViews(requests) { views in
            flat.withUnsafeMutableBufferPointer { buffer in
                let pointers: [UnsafeMutablePointer<Float>?] = offsets.map { offset in buffer.baseAddress.map { $0 + offset } }
                return pointers.withUnsafeBufferPointer { pointers in
                    outcomes.withUnsafeMutableBufferPointer { outcomes in
                        scoreBatch(pointer, views.baseAddress, views.count, pointers.baseAddress, outcomes.baseAddress, &error)
                    }
                }
            }
        }
        guard status == 0 else {
            let failure = PluginHostError.plugin(code: status, message: Self.message(error), function: "score_batch", instance: name)
            return requests.map { _ in .failure(failure) }
        }
        return requests.indices.enumerated().map { position, index in
            let code = outcomes[position].code
            guard code == 0 else {
                return .failure(.plugin(code: code, message: Self.message(outcomes[position]), function: "score", instance: name))
            }
            return .success(Array(flat[offsets[position]..<(offsets[position] + requests[index].candidates.count)]))
        }
    }

    /// Calls `body` with C request views of `requests`, whose arrays stay alive meanwhile.
    private static func withRequestViews<R>(_ requests: ArraySlice<RecommenderRequest>,
                                            _ body: (UnsafeBufferPointer<CURecRecommendRequest>) -> R) -> R {
        var views: [CURecRecommendRequest] = []
        views.reserveCapacity(requests.count)
        func nest(_ index: Int) -> R {
            guard index < requests.endIndex else { return views.withUnsafeBufferPointer(body) }
            let request = requests[index]
            return request.history.withUnsafeBufferPointer { history in
                request.candidates.withUnsafeBufferPointer { candidates in
                    views.append(CURecRecommendRequest(
                        struct_size: UInt32(MemoryLayout<CURecRecommendRequest>.size), user: request.user,
                        history: history.baseAddress, history_count: UInt32(history.count),
                        candidates: candidates.baseAddress, candidate_count: UInt32(candidates.count)))
                    return nest(index + 1)
                }
            }
        }
        return nest(requests.startIndex)
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
        guard let score = library.scoreRecommender else {
            throw .missingSymbol(path: library.path, symbol: "curec_plugin_score_recommender")
        }
        var error = CURecError()
        let status = history.withUnsafeBufferPointer { historyBuffer in
            var request = CURecRecommendRequest(
                struct_size: UInt32(MemoryLayout<CURecRecommendRequest>.size), user: user,
                history: historyBuffer.baseAddress, history_count: UInt32(historyBuffer.count),
                candidates: candidates.baseAddress, candidate_count: UInt32(candidates.count))
            return score(pointer, &request, scores.baseAddress, &error)
        }
        try check(status, error, "score")
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
        guard let score = library.scoreReward else {
            throw .missingSymbol(path: library.path, symbol: "curec_plugin_score_reward")
        }
        var rewards = [Float](repeating: 0, count: inputs.count)
        var error = CURecError()
        // Keep every embedding alive while the triples point into them.
        let flat = inputs.flatMap(\.embedding)
        let status = flat.withUnsafeBufferPointer { embeddings -> Int32 in
            var offset = 0
            var triples: [CURecRewardTriple] = []
            triples.reserveCapacity(inputs.count)
            for input in inputs {
                triples.append(CURecRewardTriple(
                    user: input.user, item: input.item,
                    reason_embedding: embeddings.baseAddress.map { $0 + offset }, dim: UInt32(input.embedding.count)))
                offset += input.embedding.count
            }
            return triples.withUnsafeBufferPointer { tripleBuffer in
                rewards.withUnsafeMutableBufferPointer { output in
                    score(pointer, tripleBuffer.baseAddress, tripleBuffer.count, output.baseAddress, &error)
                }
            }
        }
        try check(status, error, "score")
        return rewards
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
        final class Hooks {
            let progress: (UInt64, UInt64, String) -> Void
            let isCancelled: () -> Bool
            init(progress: @escaping (UInt64, UInt64, String) -> Void, isCancelled: @escaping () -> Bool) {
                self.progress = progress
                self.isCancelled = isCancelled
            }
        }
        let hooks = Hooks(progress: progress, isCancelled: isCancelled)
        var error = CURecError()
        let status: Int32 = withExtendedLifetime(hooks) {
            data.users.withUnsafeBufferPointer { users in
            data.items.withUnsafeBufferPointer { items in
            data.ratings.withUnsafeBufferPointer { ratings in
            data.timestamps.withUnsafeBufferPointer { timestamps in
            data.itemFeatures.withUnsafeBufferPointer { features in
            data.userFeatures.withUnsafeBufferPointer { userFeatures in
            data.validationUsers.withUnsafeBufferPointer { validationUsers in
            data.validationItems.withUnsafeBufferPointer { validationItems in
                var view = CURecDatasetView()
                view.struct_size = UInt32(MemoryLayout<CURecDatasetView>.size)
                view.user_count = UInt32(data.userCount)
                view.item_count = UInt32(data.itemCount)
                view.interaction_count = UInt64(users.count)
                view.users = users.baseAddress
                view.items = items.baseAddress
                view.ratings = ratings.baseAddress
                view.timestamps = timestamps.baseAddress
                view.item_features = data.itemFeatureDimension > 0 ? features.baseAddress : nil
                view.item_feature_dim = UInt32(data.itemFeatureDimension)
                view.user_features = data.userFeatureDimension > 0 ? userFeatures.baseAddress : nil
                view.user_feature_dim = UInt32(data.userFeatureDimension)
                view.validation_count = UInt64(validationUsers.count)
                view.validation_users = validationUsers.baseAddress
                view.validation_items = validationItems.baseAddress
                var callbacks = CURecTrainCallbacks()
                callbacks.struct_size = UInt32(MemoryLayout<CURecTrainCallbacks>.size)
                callbacks.context = Unmanaged.passUnretained(hooks).toOpaque()
                callbacks.progress = { context, step, total, metrics in
                    guard let context else { return }
                    let hooks = Unmanaged<Hooks>.fromOpaque(context).takeUnretainedValue()
                    hooks.progress(step, total, metrics.map { String(cString: $0) } ?? "{}")
                }
                callbacks.is_cancelled = { context in
                    guard let context else { return 0 }
                    return Unmanaged<Hooks>.fromOpaque(context).takeUnretainedValue().isCancelled() ? 1 : 0
                }
                guard let checkpointDirectory else { return library.train(pointer, &view, &callbacks, &error) }
                return checkpointDirectory.withCString { directory in
                    callbacks.checkpoint_directory = directory
                    return library.train(pointer, &view, &callbacks, &error)
                }
            }}}}}}}}
        }
        try check(status, error, "train")
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
        var error = CURecError()
        let status = library.save(pointer, directory, &error)
        try check(status, error, "save")
    }

    /// Loads state saved by `save(to:)`.
    public func load(from directory: String) throws(PluginHostError) {
        var error = CURecError()
        let status = library.load(pointer, directory, &error)
        try check(status, error, "load")
    }
}

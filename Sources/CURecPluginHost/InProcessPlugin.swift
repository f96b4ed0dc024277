import CURecPluginABI
import Foundation

/// A plugin instance in this process, called through the C ABI of its library: the
/// fastest backend, with no protection from a plugin that crashes, hangs or leaks.
/// Used by the daemon for `isolation: in_process` instances and by the worker process for
/// the one instance it runs.
final class InProcessPlugin: PluginBackend, @unchecked Sendable {
    /// The instance name in the daemon (for error messages).
    let name: String
    let library: PluginLibrary
    private let pointer: OpaquePointer

    init(name: String, library: PluginLibrary, config: [UInt8]) throws(PluginHostError) {
        self.name = name
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
        self.pluginVersion = info.version.map { String(cString: $0) } ?? ""
        let kind: PluginKind = info.kind == Int32(CUREC_PLUGIN_KIND_REWARD_MODEL.rawValue) ? .rewardModel : .recommender
        self.kind = kind
        self.maxBatchSize = library.scoreRecommenderBatch == nil || kind != .recommender ? 0 : Int(info.max_batch_size)
    }

    let kind: PluginKind
    let maxBatchSize: Int
    let pluginVersion: String
    var readiness: PluginReadiness { .serving }

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

    func describe() -> PluginDescription {
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
            isTrained: info.is_trained != 0)
    }

    func scoreRecommender(user: UInt32, history: [UInt32], candidates: UnsafeBufferPointer<UInt32>,
                          scores: UnsafeMutableBufferPointer<Float>) throws(PluginHostError) {
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

    func scoreReward(_ inputs: [PluginInstance.RewardInput]) throws(PluginHostError) -> [Float] {
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

    func train(_ data: PluginTrainingData, checkpointDirectory: String?,
               progress: @escaping (UInt64, UInt64, String) -> Void,
               isCancelled: @escaping () -> Bool) throws(PluginHostError) {
        try PluginInstance.checkFeatures(data.itemFeatures, rows: data.itemCount, dimension: data.itemFeatureDimension, what: "item")
        try PluginInstance.checkFeatures(data.userFeatures, rows: data.userCount, dimension: data.userFeatureDimension, what: "user")
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

    func save(to directory: String) throws(PluginHostError) {
        var error = CURecError()
        let status = library.save(pointer, directory, &error)
        try check(status, error, "save")
    }

    func load(from directory: String) throws(PluginHostError) {
        var error = CURecError()
        let status = library.load(pointer, directory, &error)
        try check(status, error, "load")
    }

    /// One call of the batched entry point for `requests` (at most ``maxBatchSize``): every
    /// request's scores go into one buffer, at its own offset.
    func scoreRecommenderBatch(_ requests: ArraySlice<RecommenderRequest>) -> [Result<[Float], PluginHostError>] {
        guard let scoreBatch = library.scoreRecommenderBatch else {
            let missing = PluginHostError.missingSymbol(path: library.path, symbol: "curec_plugin_score_recommender_batch")
            return requests.map { _ in .failure(missing) }
        }
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
}

import CURecModels
import CURecPluginABI
import CURecPluginKit
import CURecTensor
import Foundation

/// The plugin this library serves: CURecPluginKit exports the C entry points for it.
@_silgen_name("curec_swift_plugin_type")
public func servedPluginType() -> any SwiftPlugin.Type { SASRecPlugin.self }

/// SASRec, the self-attentive sequential recommender (Kang & McAuley, 2018), optionally with
/// item features (content features, or embeddings of recommendation reasons) projected and
/// added to the item ID embeddings, and with user features projected and added to every
/// input position of the user's sequence. See `Sources/CURecModels/SASRec/`.
///
/// Config (JSON, every field optional): `max_length` (50), `width` (64), `blocks` (2),
/// `heads` (1), `hidden` (feed-forward width, = width), `epochs` (200, an upper bound),
/// `learning_rate` (0.001), `batch_size` (128), `patience` (10 epochs without a better
/// validation NDCG@10), `loss` ("bce": one sampled negative per position, as in the paper; or
/// "softmax": full cross-entropy), `weight_decay` (0), `seed` (42), `use_item_features`
/// (false; true requires the dataset's item features), `use_user_features` (false; true
/// requires the dataset's user features), `version_label` ("1.0.0"), `checkpoint_every`
/// (5 epochs; 0 disables checkpoints). Size fields are bounded (``Bounds``: at most 100000
/// epochs, max_length 1024, width 1024, blocks 16, heads 16, hidden 4096, batch_size 4096,
/// and 2^28 activation values per training step); a config beyond them is INVALID_ARGUMENT.
///
/// Scoring reads the request's history (oldest first; its last `max_length` items), or the
/// user's training history when the request has none. With user features it also reads the
/// request's user (NOT_FOUND when the user index is not one the model was trained on).
///
/// Batched scoring (ABI 1.2, up to ``maxBatchSize`` users per call) runs one forward pass
/// over every user of the batch; the daemon's dynamic batching feeds it.
///
/// Artifact: the model files of `SASRecFiles` (with user features, `user_table.f32` holds the
/// projected user features, so scoring needs no feature matrix), `histories.json`, and
/// `plugin.json` (``Meta``).
final class SASRecPlugin: SwiftPlugin, @unchecked Sendable {
    typealias Config = SASRecPluginConfig

    /// What an artifact holds besides the model files.
    struct Meta: Codable {
        var users: Int
        var items: Int
        var itemFeatureDimension: Int
        /// Absent in artifacts written before user features existed (read as 0).
        var userFeatureDimension: Int?
        var bestEpoch: Int
        var bestValidationNDCG10: Double
    }

    let maxLength: Int
    let width: Int
    let blocks: Int
    let heads: Int
    let hidden: Int
    let options: SASRecTrainingOptions
    let useItemFeatures: Bool
    let useUserFeatures: Bool
    let version: String
    let checkpointEvery: Int

    // Trained state (written only by train/load, which the host never overlaps with scoring).
    private var model: SASRecModel?
    private var histories: [[Int32]] = []
    private var bestEpoch = 0
    private var bestValidationNDCG: Double = -1

    /// Upper bounds of the config's size fields. A client chooses the config, so each bounds
    /// what one train job may hold and how long it may run: together they keep a job's
    /// activations within ``maximumActivations`` values and its epochs like BPR's.
    enum Bounds {
        static let epochs = 0...100_000
        static let patience = 0...100_000
        static let checkpointEvery = 0...100_000
        static let maxLength = 1...1024
        static let width = 1...1024
        static let blocks = 1...16
        static let heads = 1...16
        static let hidden = 1...4096
        static let batchSize = 1...4096
        /// Values one training step keeps for the backward pass, at most (1 GiB of Float):
        /// `blocks x batch_size x max_length x (heads x max_length + hidden + 4 x width)`.
        static let maximumActivations = 1 << 28
    }

    /// Refuses a config whose size fields are out of ``Bounds``, naming the field.
    static func checkBounds(maxLength: Int, width: Int, blocks: Int, heads: Int, hidden: Int,
                            options: SASRecTrainingOptions, checkpointEvery: Int) throws(PluginFailure) {
        let fields: [(String, Int, ClosedRange<Int>)] = [
            ("epochs", options.epochs, Bounds.epochs), ("patience", options.patience, Bounds.patience),
            ("checkpoint_every", checkpointEvery, Bounds.checkpointEvery),
            ("max_length", maxLength, Bounds.maxLength), ("width", width, Bounds.width),
            ("blocks", blocks, Bounds.blocks), ("heads", heads, Bounds.heads), ("hidden", hidden, Bounds.hidden),
            ("batch_size", options.batchSize, Bounds.batchSize),
        ]
        for (name, value, range) in fields where !range.contains(value) {
            throw PluginFailure(CUREC_STATUS_INVALID_ARGUMENT,
                                "sasrec config: \(name) must be \(range.lowerBound)...\(range.upperBound), got \(value)")
        }
        // Each factor is bounded above, so the product cannot overflow.
        let activations = blocks * options.batchSize * maxLength * (heads * maxLength + hidden + 4 * width)
        guard activations <= Bounds.maximumActivations else {
            throw PluginFailure(CUREC_STATUS_INVALID_ARGUMENT,
                                "sasrec config: blocks x batch_size x max_length x (heads x max_length + hidden + 4 x width) "
                                + "is \(activations) values per training step; at most \(Bounds.maximumActivations) "
                                + "(lower batch_size, max_length or blocks)")
        }
    }

    init(config: [UInt8]) throws(PluginFailure) {
        let parsed = try decodeJSONConfig(Config.self, from: config, plugin: "sasrec")
        maxLength = parsed.maxLength ?? 50
        width = parsed.width ?? 64
        blocks = parsed.blocks ?? 2
        heads = parsed.heads ?? 1
        hidden = parsed.hidden ?? width
        var options = SASRecTrainingOptions()
        options.epochs = parsed.epochs ?? 200
        options.learningRate = parsed.learningRate ?? 1e-3
        options.batchSize = parsed.batchSize ?? 128
        options.patience = parsed.patience ?? 10
        options.weightDecay = parsed.weightDecay ?? 0
        options.seed = parsed.seed ?? 42
        switch parsed.loss ?? "bce" {
        case "bce": options.objective = .bce
        case "softmax": options.objective = .softmax
        case let other:
            throw PluginFailure(CUREC_STATUS_INVALID_ARGUMENT, "sasrec config: loss must be \"bce\" or \"softmax\", got \"\(other)\"")
        }
        self.options = options
        useItemFeatures = parsed.useItemFeatures ?? false
        useUserFeatures = parsed.useUserFeatures ?? false
        version = parsed.versionLabel ?? "1.0.0"
        checkpointEvery = parsed.checkpointEvery ?? 5
        try Self.checkBounds(maxLength: maxLength, width: width, blocks: blocks, heads: heads, hidden: hidden,
                             options: options, checkpointEvery: checkpointEvery)
        do {
            // Shapes and options checked now, with a placeholder item count.
            try SASRecConfig(itemCount: 2, maxLength: maxLength, width: width, blocks: blocks, heads: heads,
                             hidden: hidden).validate()
            try options.validate()
        } catch {
            throw PluginFailure(CUREC_STATUS_INVALID_ARGUMENT, "sasrec config: \(error.description)")
        }
    }

    var facts: PluginFacts {
        var facts = PluginFacts(name: "sasrec", version: version, kind: CUREC_PLUGIN_KIND_RECOMMENDER)
        facts.isTrained = model != nil
        facts.maxBatchSize = Self.maxBatchSize
        facts.itemFeatureDimension = model?.config.featureDimension ?? 0
        facts.userFeatureDimension = model?.config.userFeatureDimension ?? 0
        return facts
    }

    static func failure(_ error: SASRecError) -> PluginFailure {
        switch error {
        case .cancelled: return PluginFailure(CUREC_STATUS_CANCELLED, "sasrec training was cancelled")
        case .nonFinite, .storage: return PluginFailure(CUREC_STATUS_INTERNAL, "sasrec: \(error.description)")
        default: return PluginFailure(CUREC_STATUS_INVALID_ARGUMENT, "sasrec: \(error.description)")
        }
    }

    func train(_ view: TrainingView, hooks: TrainingHooks) throws(PluginFailure) {
        guard view.users.count > 0, view.userCount > 0, view.itemCount > 1 else {
            throw PluginFailure(CUREC_STATUS_INVALID_ARGUMENT, "sasrec needs at least one interaction and two items")
        }
        let featureDimension = useItemFeatures ? view.itemFeatureDimension : 0
        if useItemFeatures && featureDimension == 0 {
            throw PluginFailure(CUREC_STATUS_FAILED_PRECONDITION,
                                "sasrec config has use_item_features: true but the dataset has no item features")
        }
        let userFeatureDimension = useUserFeatures ? view.userFeatureDimension : 0
        if useUserFeatures && userFeatureDimension == 0 {
            throw PluginFailure(CUREC_STATUS_FAILED_PRECONDITION,
                                "sasrec config has use_user_features: true but the dataset has no user features")
        }
        let trainer: SASRecTrainer
        do {
            let data = try SASRecData(
                userCount: view.userCount, itemCount: view.itemCount, users: view.users, items: view.items,
                validationUsers: view.validationUsers, validationItems: view.validationItems,
                features: featureDimension > 0 ? Array(view.itemFeatures) : [], featureDimension: featureDimension,
                userFeatures: userFeatureDimension > 0 ? Array(view.userFeatures) : [],
                userFeatureDimension: userFeatureDimension)
            let config = SASRecConfig(itemCount: view.itemCount, maxLength: maxLength, width: width, blocks: blocks,
                                      heads: heads, hidden: hidden, featureDimension: featureDimension,
                                      userCount: userFeatureDimension > 0 ? view.userCount : 0,
                                      userFeatureDimension: userFeatureDimension)
            trainer = try SASRecTrainer(config: config, options: options, data: data)
        } catch {
            throw Self.failure(error)
        }
        let checkpointDirectory = checkpointEvery > 0 ? hooks.checkpointDirectory : nil
        if let checkpointDirectory, let epoch = Self.resume(trainer, from: checkpointDirectory) {
            hooks.progress(step: epoch, total: options.epochs, metrics: ["resumed_from_epoch": Double(epoch)])
        }
        let trained: SASRecModel
        do {
            trained = try trainer.train(
                progress: { report in
                    var metrics = ["epoch": Double(report.epoch), "loss": report.loss,
                                   "best_valid_ndcg@10": report.bestNDCG, "best_epoch": Double(report.bestEpoch)]
                    if let ndcg = report.validationNDCG { metrics["valid_ndcg@10"] = ndcg }
                    if report.stopping { metrics["early_stopped"] = 1 }
                    hooks.progress(step: report.epoch, total: report.epochs, metrics: metrics)
                },
                isCancelled: { hooks.isCancelled },
                afterEpoch: { (trainer: SASRecTrainer) throws(SASRecError) in
                    guard let checkpointDirectory else { return }
                    let state = trainer.state
                    if state.epoch % self.checkpointEvery == 0, state.epoch < self.options.epochs, !state.stopped {
                        try Self.writeCheckpoint(trainer, in: checkpointDirectory)
                    }
                })
        } catch {
            throw Self.failure(error)
        }
        histories = trainer.data.sequences
        bestEpoch = trainer.state.bestEpoch
        bestValidationNDCG = trainer.state.bestNDCG
        model = trained
    }

    /// Writes `epoch-N/` under a temporary name, renames it into place, then removes older
    /// checkpoints: a crash at any moment leaves a complete newest checkpoint.
    static func writeCheckpoint(_ trainer: SASRecTrainer, in directory: String) throws(SASRecError) {
        let name = "epoch-\(trainer.state.epoch)"
        let final = directory + "/" + name, staging = final + ".tmp"
        let files = FileManager.default
        try? files.removeItem(atPath: staging)
        try trainer.writeCheckpoint(to: staging)
        try? files.removeItem(atPath: final)
        guard rename(staging, final) == 0 else { throw .storage("cannot move checkpoint \(staging) into place") }
        for entry in (try? files.contentsOfDirectory(atPath: directory)) ?? [] where entry.hasPrefix("epoch-") && entry != name {
            try? files.removeItem(atPath: directory + "/" + entry)
        }
    }

    /// Restores the newest complete checkpoint made for the same config and data; its epoch.
    static func resume(_ trainer: SASRecTrainer, from directory: String) -> Int? {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        let epochs = entries.compactMap { entry -> Int? in
            guard entry.hasPrefix("epoch-"), !entry.hasSuffix(".tmp") else { return nil }
            return Int(entry.dropFirst("epoch-".count))
        }.sorted(by: >)
        for epoch in epochs {
            do {
                try trainer.restoreCheckpoint(from: directory + "/epoch-\(epoch)")
                return trainer.state.epoch
            } catch {
                continue
            }
        }
        return nil
    }

    /// The most users one batched call scores (one forward pass over all of them).
    static let maxBatchSize = 256

    /// The window the model reads for a request: its history (last `max_length` items), or
    /// the user's training history when it has none. Checks the user and every item.
    func sequence(user: UInt32, history: UnsafeBufferPointer<UInt32>, candidates: UnsafeBufferPointer<UInt32>,
                  model: SASRecModel) throws(PluginFailure) -> [Int32] {
        let items = model.config.itemCount
        if model.config.userFeatureDimension > 0 && Int(user) >= model.config.userCount {
            throw PluginFailure(CUREC_STATUS_NOT_FOUND,
                                "user index \(user) is not in the trained model (\(model.config.userCount) users with features)")
        }
        var sequence: [Int32]
        if history.isEmpty {
            guard Int(user) < histories.count else {
                throw PluginFailure(CUREC_STATUS_NOT_FOUND,
                                    "user index \(user) is not in the trained model (\(histories.count) users) and the request has no history")
            }
            sequence = histories[Int(user)]
        } else {
            sequence = []
            sequence.reserveCapacity(min(history.count, model.config.maxLength))
            for item in history.suffix(model.config.maxLength) {
                guard Int(item) < items else {
                    throw PluginFailure(CUREC_STATUS_NOT_FOUND, "history item index \(item) is not in the trained model (\(items) items)")
                }
                sequence.append(Int32(item))
            }
        }
        if let bad = candidates.first(where: { Int($0) >= items }) {
            throw PluginFailure(CUREC_STATUS_NOT_FOUND, "item index \(bad) is not in the trained model (\(items) items)")
        }
        return sequence
    }

    func scoreRecommender(user: UInt32, history: UnsafeBufferPointer<UInt32>, candidates: UnsafeBufferPointer<UInt32>,
                          scores: UnsafeMutableBufferPointer<Float>) throws(PluginFailure) {
        guard let model else { throw PluginFailure(CUREC_STATUS_FAILED_PRECONDITION, "sasrec is not trained yet") }
        let sequence = try self.sequence(user: user, history: history, candidates: candidates, model: model)
        do {
            let withUsers = model.config.userFeatureDimension > 0
            let hidden = try model.hiddenStates(sequences: [sequence], users: withUsers ? [Int32(user)] : nil)
            try hidden.withUnsafeBufferPointer { h throws(SASRecError) in
                try model.scores(hidden: h.baseAddress!, candidates: candidates, into: scores)
            }
        } catch {
            throw Self.failure(error)
        }
    }

    /// Many users at once: one transformer forward over every valid request's window
    /// (``SASRecModel/hiddenStates(sequences:users:)``, `[B, T]` rows), then the requests that
    /// score the whole catalogue in item order in one matrix product `[B', C] x [C, n]`, the
    /// others by dot products with their candidates. A request that fails its checks fails
    /// alone.
    func scoreRecommenderBatch(_ requests: [RecommenderBatchRequest], scores: [UnsafeMutableBufferPointer<Float>])
        -> [PluginFailure?]
    {
        guard let model else {
            return requests.map { _ in PluginFailure(CUREC_STATUS_FAILED_PRECONDITION, "sasrec is not trained yet") }
        }
        var outcomes = [PluginFailure?](repeating: nil, count: requests.count)
        var sequences: [[Int32]] = [], users: [Int32] = [], rows: [Int] = []
        for (index, request) in requests.enumerated() {
            do throws(PluginFailure) {
                sequences.append(try sequence(user: request.user, history: request.history, candidates: request.candidates, model: model))
                users.append(Int32(request.user))
                rows.append(index)
            } catch {
                outcomes[index] = error
            }
        }
        guard !rows.isEmpty else { return outcomes }
        let C = model.config.width, n = model.config.itemCount
        do {
            // [B, C]: the last position's hidden state of each window.
            let hidden = try model.hiddenStates(sequences: sequences, users: model.config.userFeatureDimension > 0 ? users : nil)
            var catalogueRows: [Int] = []
            try hidden.withUnsafeBufferPointer { h throws(SASRecError) in
                for (row, index) in rows.enumerated() {
                    // One matrix product pays off for several users; one user keeps the dot products.
                    if rows.count >= Self.minimumProductRows, Self.isWholeCatalogue(requests[index].candidates, itemCount: n) {
                        catalogueRows.append(row)
                    } else {
                        try model.scores(hidden: h.baseAddress! + row * C, candidates: requests[index].candidates, into: scores[index])
                    }
                }
            }
            if !catalogueRows.isEmpty {
                var gathered = [Float](repeating: 0, count: catalogueRows.count * C)
                for (k, row) in catalogueRows.enumerated() {
                    for i in 0..<C { gathered[k * C + i] = hidden[row * C + i] }
                }
                // [B', n] = [B', C] x E^T
                let all = model.allScores(hidden: gathered, users: catalogueRows.count)
                all.withUnsafeBufferPointer { all in
                    for (k, row) in catalogueRows.enumerated() {
                        let output = scores[rows[row]]
                        output.baseAddress!.update(from: all.baseAddress! + k * n, count: n)
                    }
                }
            }
        } catch {
            let failure = Self.failure(error)
            for index in rows { outcomes[index] = failure }
        }
        return outcomes
    }

    /// Users from which the whole-catalogue requests of a batch are scored by one matrix product.
    static let minimumProductRows = 4

    /// Whether `candidates` is every item in index order (Recommend's request).
    static func isWholeCatalogue(_ candidates: UnsafeBufferPointer<UInt32>, itemCount: Int) -> Bool {
        guard candidates.count == itemCount else { return false }
        for (index, item) in candidates.enumerated() where Int(item) != index { return false }
        return true
    }

    func save(directory: String) throws(PluginFailure) {
        guard let model else { throw PluginFailure(CUREC_STATUS_FAILED_PRECONDITION, "sasrec is not trained; nothing to save") }
        do {
            try SASRecFiles.save(model, to: directory)
        } catch {
            throw Self.failure(error)
        }
        let meta = Meta(users: histories.count, items: model.config.itemCount,
                        itemFeatureDimension: model.config.featureDimension,
                        userFeatureDimension: model.config.userFeatureDimension, bestEpoch: bestEpoch, bestValidationNDCG10: bestValidationNDCG)
        do {
            try JSONEncoder().encode(meta).write(to: URL(fileURLWithPath: directory + "/plugin.json"), options: .atomic)
            try JSONEncoder().encode(histories).write(to: URL(fileURLWithPath: directory + "/histories.json"), options: .atomic)
        } catch {
            throw PluginFailure(CUREC_STATUS_INTERNAL, "cannot write the sasrec artifact in \(directory): \(error.localizedDescription)")
        }
    }

    func load(directory: String) throws(PluginFailure) {
        guard FileManager.default.fileExists(atPath: directory + "/sasrec.json") else {
            throw PluginFailure(CUREC_STATUS_NOT_FOUND, "\(directory)/sasrec.json is missing: not a sasrec artifact")
        }
        let loaded: SASRecModel
        do {
            loaded = try SASRecFiles.load(from: directory)
        } catch {
            throw PluginFailure(CUREC_STATUS_INVALID_ARGUMENT, "sasrec: \(error.description)")
        }
        let c = loaded.config
        guard c.maxLength == maxLength, c.width == width, c.blocks == blocks, c.heads == heads, c.hidden == hidden,
              (c.featureDimension > 0) == useItemFeatures, (c.userFeatureDimension > 0) == useUserFeatures else {
            throw PluginFailure(CUREC_STATUS_INVALID_ARGUMENT,
                                "the artifact is \(c) but this instance is configured for max_length \(maxLength), width \(width), blocks \(blocks), heads \(heads), hidden \(hidden), use_item_features \(useItemFeatures), use_user_features \(useUserFeatures)")
        }
        guard let bytes = FileManager.default.contents(atPath: directory + "/histories.json"),
              let saved = try? JSONDecoder().decode([[Int32]].self, from: bytes),
              saved.allSatisfy({ $0.allSatisfy { $0 >= 0 && Int($0) < c.itemCount } }) else {
            throw PluginFailure(CUREC_STATUS_INVALID_ARGUMENT, "\(directory)/histories.json is missing or malformed")
        }
        let meta = FileManager.default.contents(atPath: directory + "/plugin.json").flatMap { try? JSONDecoder().decode(Meta.self, from: $0) }
        if let saved = meta?.userFeatureDimension, saved != c.userFeatureDimension {
            throw PluginFailure(CUREC_STATUS_INVALID_ARGUMENT,
                                "\(directory)/plugin.json records \(saved) user feature dimensions but the model has \(c.userFeatureDimension)")
        }
        histories = saved
        bestEpoch = meta?.bestEpoch ?? 0
        bestValidationNDCG = meta?.bestValidationNDCG10 ?? -1
        model = loaded
    }
}

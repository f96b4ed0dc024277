import CURecTensor
import Foundation

/// Training options of ``SASRecTrainer``.
public struct SASRecTrainingOptions: Sendable, Equatable, Codable {
    /// Upper bound on epochs (early stopping usually ends sooner).
    public var epochs: Int = 200
    public var learningRate: Float = 1e-3
    /// Sequences per step.
    public var batchSize: Int = 128
    /// Evaluations without a better validation NDCG@10 before training stops (0: never stop early).
    public var patience: Int = 10
    /// Evaluate on the validation pairs every this many epochs.
    public var evaluateEvery: Int = 1
    public var seed: UInt64 = 42
    public var objective: SASRecObjective = .bce
    /// AdamW decoupled weight decay on matrices and embeddings.
    public var weightDecay: Float = 0
    /// Global gradient-norm clipping (0: none).
    public var clip: Float = 5

    public init() {}

    public func validate() throws(SASRecError) {
        guard epochs >= 0 else { throw .invalidOption("epochs must be >= 0, got \(epochs)") }
        guard learningRate > 0, learningRate.isFinite else {
            throw .invalidOption("learning rate must be positive, got \(learningRate)")
        }
        guard (1...65536).contains(batchSize) else { throw .invalidOption("batch size must be 1...65536, got \(batchSize)") }
        guard patience >= 0 else { throw .invalidOption("patience must be >= 0, got \(patience)") }
        guard evaluateEvery >= 1 else { throw .invalidOption("evaluateEvery must be >= 1, got \(evaluateEvery)") }
        guard weightDecay >= 0, clip >= 0 else { throw .invalidOption("weight decay and clip must be >= 0") }
    }
}

/// What SASRec trains on: each user's items in time order, validation pairs, item and user
/// features.
public struct SASRecData: Sendable {
    public let itemCount: Int
    /// Per user, training items oldest first.
    public let sequences: [[Int32]]
    /// Held-out next items for early stopping: user index and item.
    public let validationUsers: [Int]
    public let validationItems: [Int32]
    /// Row-major `[itemCount x featureDimension]`, empty when `featureDimension == 0`.
    public let features: [Float]
    public let featureDimension: Int
    /// Row-major `[userCount x userFeatureDimension]`, empty when `userFeatureDimension == 0`.
    public let userFeatures: [Float]
    public let userFeatureDimension: Int

    /// Groups interactions (sorted by user, then time) into per-user sequences.
    public init(userCount: Int, itemCount: Int, users: UnsafeBufferPointer<UInt32>, items: UnsafeBufferPointer<UInt32>,
                validationUsers: UnsafeBufferPointer<UInt32>, validationItems: UnsafeBufferPointer<UInt32>,
                features: [Float] = [], featureDimension: Int = 0,
                userFeatures: [Float] = [], userFeatureDimension: Int = 0) throws(SASRecError) {
        guard users.count == items.count else {
            throw .invalidInput("\(users.count) users but \(items.count) items in the interactions")
        }
        guard validationUsers.count == validationItems.count else {
            throw .invalidInput("\(validationUsers.count) validation users but \(validationItems.count) validation items")
        }
        guard userCount > 0, itemCount >= 2 else {
            throw .noTrainingData("need at least one user and two items, got \(userCount) users and \(itemCount) items")
        }
        guard featureDimension >= 0, features.count == itemCount * featureDimension else {
            throw .featureShapeMismatch(expected: itemCount * max(featureDimension, 0), got: features.count)
        }
        guard userFeatureDimension >= 0, userFeatures.count == userCount * userFeatureDimension else {
            throw .userFeatureShapeMismatch(expected: userCount * max(userFeatureDimension, 0), got: userFeatures.count)
        }
        var sequences = [[Int32]](repeating: [], count: userCount)
        var previousUser = -1
        for index in 0..<users.count {
            let u = Int(users[index]), i = Int(items[index])
            guard u < userCount else { throw .invalidInput("interaction \(index) has user \(u), outside 0..<\(userCount)") }
            guard i < itemCount else { throw .itemOutOfRange(item: i, itemCount: itemCount) }
            guard u >= previousUser else {
                throw .invalidInput("interactions must be sorted by user, then time; interaction \(index) has user \(u) after \(previousUser)")
            }
            previousUser = u
            sequences[u].append(Int32(i))
        }
        guard sequences.contains(where: { $0.count >= 2 }) else {
            throw .noTrainingData("no user has two or more interactions")
        }
        var vu: [Int] = [], vi: [Int32] = []
        for index in 0..<validationUsers.count {
            let u = Int(validationUsers[index]), i = Int(validationItems[index])
            guard u < userCount, i < itemCount else {
                throw .invalidInput("validation pair \(index) (user \(u), item \(i)) is out of range")
            }
            vu.append(u)
            vi.append(Int32(i))
        }
        self.itemCount = itemCount
        self.sequences = sequences
        self.validationUsers = vu
        self.validationItems = vi
        self.features = features
        self.featureDimension = featureDimension
        self.userFeatures = userFeatures
        self.userFeatureDimension = userFeatureDimension
    }

    /// Convenience for arrays.
    public init(userCount: Int, itemCount: Int, users: [UInt32], items: [UInt32],
                validationUsers: [UInt32] = [], validationItems: [UInt32] = [],
                features: [Float] = [], featureDimension: Int = 0,
                userFeatures: [Float] = [], userFeatureDimension: Int = 0) throws(SASRecError) {
        var result: SASRecData?
        var failure: SASRecError?
        users.withUnsafeBufferPointer { u in items.withUnsafeBufferPointer { i in
        validationUsers.withUnsafeBufferPointer { vu in validationItems.withUnsafeBufferPointer { vi in
            do throws(SASRecError) {
                result = try SASRecData(userCount: userCount, itemCount: itemCount, users: u, items: i,
                                        validationUsers: vu, validationItems: vi,
                                        features: features, featureDimension: featureDimension,
                                        userFeatures: userFeatures, userFeatureDimension: userFeatureDimension)
            } catch { failure = error }
        }}}}
        if let failure { throw failure }
        self = result!
    }

    /// A fingerprint of the data, stored in checkpoints so that one is only resumed on the same data.
    public var fingerprint: UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        func mix(_ x: UInt64) { h = (h ^ x) &* 0x100_0000_01b3 }
        mix(UInt64(itemCount)); mix(UInt64(sequences.count)); mix(UInt64(featureDimension))
        for s in sequences { mix(UInt64(s.count)); for i in s { mix(UInt64(UInt32(bitPattern: i))) } }
        for (u, i) in zip(validationUsers, validationItems) { mix(UInt64(u)); mix(UInt64(UInt32(bitPattern: i))) }
        for f in features { mix(UInt64(f.bitPattern)) }
        // Only with user features, so fingerprints (and checkpoints) of data without them are unchanged.
        if userFeatureDimension > 0 {
            mix(UInt64(userFeatureDimension))
            for f in userFeatures { mix(UInt64(f.bitPattern)) }
        }
        return h
    }
}

/// One epoch's report.
public struct SASRecEpochReport: Sendable, Equatable {
    public var epoch: Int
    public var epochs: Int
    /// Mean training loss of the epoch.
    public var loss: Double
    /// Validation NDCG@10 if evaluated this epoch.
    public var validationNDCG: Double?
    public var bestNDCG: Double
    public var bestEpoch: Int
    /// True when early stopping ends training after this epoch.
    public var stopping: Bool
}

/// Progress of a training run, saved in checkpoints.
public struct SASRecTrainingState: Sendable, Equatable, Codable {
    /// Epochs completed.
    public var epoch = 0
    /// Best validation NDCG@10 so far (-1: none yet) and the epoch that reached it.
    public var bestNDCG: Double = -1
    public var bestEpoch = 0
    /// Evaluations since the best one.
    public var badEvaluations = 0
    /// AdamW steps taken.
    public var optimizerStep = 0
    /// Early stopping has ended training.
    public var stopped = false
}

/// Trains a ``SASRecModel`` on per-user sequences with next-item targets at every position,
/// AdamW, and early stopping on validation NDCG@10 (full ranking, training items excluded).
///
/// Each user's sequence is cut, from its end backwards, into windows of at most `maxLength`
/// inputs (the inputs of a window are items `s_k … s_{k+m−1}`, its targets `s_{k+1} … s_{k+m}`),
/// so every training interaction is a target once per epoch. The epoch's shuffling and
/// negative sampling come from a generator seeded by `(seed, epoch)`, so training is
/// deterministic and a run resumed from a checkpoint ends with the same model.
public final class SASRecTrainer {
    public let config: SASRecConfig
    public let options: SASRecTrainingOptions
    public let data: SASRecData
    public let model: SASRecModel
    public let optimizer: AdamW
    public private(set) var state = SASRecTrainingState()
    /// Weights at the best validation NDCG so far.
    var best: [Float]?
    /// Each window: user, start offset, input count.
    let windows: [(user: Int, start: Int, count: Int)]
    let seen: [Set<Int32>]

    public init(config: SASRecConfig, options: SASRecTrainingOptions, data: SASRecData) throws(SASRecError) {
        try options.validate()
        guard config.itemCount == data.itemCount else {
            throw .invalidConfig("config has \(config.itemCount) items, the data \(data.itemCount)")
        }
        guard config.featureDimension == data.featureDimension else {
            throw .invalidConfig("config expects \(config.featureDimension) feature dimensions, the data has \(data.featureDimension)")
        }
        guard config.userFeatureDimension == data.userFeatureDimension else {
            throw .invalidConfig("config expects \(config.userFeatureDimension) user feature dimensions, the data has \(data.userFeatureDimension)")
        }
        guard config.userFeatureDimension == 0 || config.userCount == data.sequences.count else {
            throw .invalidConfig("config has \(config.userCount) users, the data \(data.sequences.count)")
        }
        self.config = config
        self.options = options
        self.data = data
        model = try SASRecModel(config: config, features: config.featureDimension > 0 ? data.features : nil,
                                userFeatures: config.userFeatureDimension > 0 ? data.userFeatures : nil,
                                seed: options.seed)
        optimizer = AdamW(parameterCount: model.layout.total, beta1: 0.9, beta2: 0.98, eps: 1e-8,
                          weightDecay: options.weightDecay)
        var windows: [(Int, Int, Int)] = []
        for (u, s) in data.sequences.enumerated() where s.count >= 2 {
            var end = s.count
            while end >= 2 {
                let start = max(0, end - 1 - config.maxLength)
                windows.append((u, start, end - 1 - start))
                end -= config.maxLength
            }
        }
        self.windows = windows
        seen = data.sequences.map { Set($0) }
    }

    /// Number of training windows per epoch.
    public var windowCount: Int { windows.count }

    static func epochGenerator(seed: UInt64, epoch: Int) -> Xoshiro256 {
        Xoshiro256(seed: seed ^ (UInt64(epoch + 1) &* 0x9E37_79B9_7F4A_7C15))
    }

    /// Runs one epoch of AdamW steps; returns the mean loss over its batches.
    public func runEpoch(isCancelled: () -> Bool = { false }) throws(SASRecError) -> Double {
        var rng = Self.epochGenerator(seed: options.seed, epoch: state.epoch)
        var order = Array(0..<windows.count)
        for i in stride(from: order.count - 1, to: 0, by: -1) {
            order.swapAt(i, Int(rng.next() % UInt64(i + 1)))
        }
        let T = config.maxLength, n = config.itemCount, bs = options.batchSize
        var lossSum: Double = 0, batches = 0
        var start = 0
        while start < order.count {
            if isCancelled() { throw .cancelled }
            let rows = order[start..<min(start + bs, order.count)]
            let B = rows.count
            var inputs = [Int32](repeating: 0, count: B * T)
            var targets = [Int32](repeating: -1, count: B * T)
            var negatives = [Int32](repeating: 0, count: B * T)
            var users = [Int32](repeating: 0, count: B)
            for (b, w) in rows.enumerated() {
                let (u, s0, m) = windows[w]
                let s = data.sequences[u]
                users[b] = Int32(u)
                for t in 0..<m {
                    inputs[b * T + t] = s[s0 + t]
                    targets[b * T + t] = s[s0 + t + 1]
                    var q = Int32(truncatingIfNeeded: rng.next() % UInt64(n))
                    var attempts = 0
                    while seen[u].contains(q) && attempts < 20 {
                        q = Int32(truncatingIfNeeded: rng.next() % UInt64(n))
                        attempts += 1
                    }
                    negatives[b * T + t] = q
                }
            }
            let batch = try SASRecBatch(B: B, T: T, inputs: inputs, targets: targets, negatives: negatives,
                                        users: users, config: config)
            lossSum += Double(try model.trainStep(batch, objective: options.objective, optimizer: optimizer,
                                                  learningRate: options.learningRate, clip: options.clip))
            batches += 1
            start += bs
        }
        state.optimizerStep = optimizer.step
        state.epoch += 1
        return lossSum / Double(max(batches, 1))
    }

    /// Validation NDCG@`k` of the current weights: for each validation pair, the held-out
    /// item's rank among all items except the user's training items (strictly higher scores
    /// count), given the user's last `maxLength` training items. -1 without validation pairs.
    public func validationNDCG(k: Int = 10) throws(SASRecError) -> Double {
        let pairs = zip(data.validationUsers, data.validationItems).filter { !data.sequences[$0.0].isEmpty }
        guard !pairs.isEmpty else { return -1 }
        let n = config.itemCount
        var sum: Double = 0
        var start = 0
        while start < pairs.count {
            let chunk = Array(pairs[start..<min(start + 512, pairs.count)])
            let hidden = try model.hiddenStates(sequences: chunk.map { data.sequences[$0.0] },
                                                users: chunk.map { Int32($0.0) })
            let scores = model.allScores(hidden: hidden, users: chunk.count)
            for (r, (u, target)) in chunk.enumerated() {
                let row = r * n, ts = scores[row + Int(target)]
                var rank = 0
                for i in 0..<n where scores[row + i] > ts && !seen[u].contains(Int32(i)) { rank += 1 }
                if rank < k { sum += 1 / log2(Double(rank) + 2) }
            }
            start += 512
        }
        return sum / Double(pairs.count)
    }

    /// Trains until `options.epochs` or early stopping, then leaves the best weights (by
    /// validation NDCG@10) in ``model``. `afterEpoch` runs after each epoch's bookkeeping
    /// (e.g. to write a checkpoint); `isCancelled` is polled between steps.
    @discardableResult
    public func train(progress: (SASRecEpochReport) -> Void = { _ in },
                      isCancelled: () -> Bool = { false },
                      afterEpoch: (SASRecTrainer) throws(SASRecError) -> Void = { _ throws(SASRecError) in })
        throws(SASRecError) -> SASRecModel {
        let hasValidation = !data.validationUsers.isEmpty
        while state.epoch < options.epochs && !state.stopped {
            let loss = try runEpoch(isCancelled: isCancelled)
            guard loss.isFinite else { throw .nonFinite("epoch \(state.epoch) mean loss is \(loss)") }
            var ndcg: Double?
            if hasValidation && (state.epoch % options.evaluateEvery == 0 || state.epoch == options.epochs) {
                let value = try validationNDCG()
                ndcg = value
                if value > state.bestNDCG {
                    state.bestNDCG = value
                    state.bestEpoch = state.epoch
                    state.badEvaluations = 0
                    best = model.parameters.values
                } else {
                    state.badEvaluations += 1
                    if options.patience > 0 && state.badEvaluations >= options.patience { state.stopped = true }
                }
            }
            progress(SASRecEpochReport(epoch: state.epoch, epochs: options.epochs, loss: loss, validationNDCG: ndcg,
                                       bestNDCG: state.bestNDCG, bestEpoch: state.bestEpoch, stopping: state.stopped))
            try afterEpoch(self)
        }
        if let best {
            best.withUnsafeBufferPointer { model.parameters.data.update(from: $0.baseAddress!, count: $0.count) }
            model.refreshItemTable()
        }
        model.releaseActivations()
        return model
    }

    // MARK: Checkpoints

    struct CheckpointHeader: Codable {
        var config: SASRecConfig
        var options: SASRecTrainingOptions
        var dataFingerprint: UInt64
        var state: SASRecTrainingState
        var hasBest: Bool
    }

    /// Writes the complete training state into `directory` (created if needed): header,
    /// weights, AdamW moments and the best weights so far.
    public func writeCheckpoint(to directory: String) throws(SASRecError) {
        let header = CheckpointHeader(config: config, options: options, dataFingerprint: data.fingerprint,
                                      state: state, hasBest: best != nil)
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            try JSONEncoder().encode(header).write(to: URL(fileURLWithPath: directory + "/trainer.json"), options: .atomic)
        } catch {
            throw .storage("cannot write a checkpoint in \(directory): \(error.localizedDescription)")
        }
        try SASRecFiles.write(model.parameters.values, to: directory + "/parameters.f32")
        try SASRecFiles.write(optimizer.m.values, to: directory + "/adam_m.f32")
        try SASRecFiles.write(optimizer.v.values, to: directory + "/adam_v.f32")
        if let best { try SASRecFiles.write(best, to: directory + "/best.f32") }
    }

    /// Restores a state written by ``writeCheckpoint(to:)``. Fails with
    /// ``SASRecError/storage(_:)`` (and changes nothing) when the checkpoint is unreadable
    /// or was made for another config, options or data.
    public func restoreCheckpoint(from directory: String) throws(SASRecError) {
        guard let bytes = FileManager.default.contents(atPath: directory + "/trainer.json") else {
            throw .storage("\(directory)/trainer.json is missing")
        }
        let header: CheckpointHeader
        do { header = try JSONDecoder().decode(CheckpointHeader.self, from: bytes) } catch {
            throw .storage("\(directory)/trainer.json is malformed: \(error)")
        }
        guard header.config == config, header.options == options, header.dataFingerprint == data.fingerprint else {
            throw .storage("the checkpoint in \(directory) was made for another config, options or dataset")
        }
        let total = model.layout.total
        let p = try SASRecFiles.read(directory + "/parameters.f32", count: total)
        let m = try SASRecFiles.read(directory + "/adam_m.f32", count: total)
        let v = try SASRecFiles.read(directory + "/adam_v.f32", count: total)
        let b = header.hasBest ? try SASRecFiles.read(directory + "/best.f32", count: total) : nil
        // AdamW exposes its step count read-only: advance it with zero-gradient, zero-rate
        // updates (which leave zero moments and the weights unchanged), then load the moments.
        guard optimizer.step <= header.state.optimizerStep else {
            throw .storage("cannot restore a checkpoint into a trainer that has already taken more steps")
        }
        let zeros = Tensor(uncheckedZeros: [total])
        optimizer.m.zero()
        optimizer.v.zero()
        while optimizer.step < header.state.optimizerStep {
            optimizer.update(params: zeros.data, grads: zeros.data, segments: [], lr: 0)
        }
        p.withUnsafeBufferPointer { model.parameters.data.update(from: $0.baseAddress!, count: total) }
        m.withUnsafeBufferPointer { optimizer.m.data.update(from: $0.baseAddress!, count: total) }
        v.withUnsafeBufferPointer { optimizer.v.data.update(from: $0.baseAddress!, count: total) }
        best = b
        state = header.state
        model.refreshItemTable()
    }
}

// MARK: Files

/// Artifact files of a trained SASRec model: `sasrec.json` (config), `parameters.f32`
/// (flat weights, ``SASRecLayout``), `item_table.f32` (the effective item embeddings, so
/// that scoring needs no feature matrix) and, for a model with user features,
/// `user_table.f32` (the projected user features `[userCount, width]`, so that scoring needs
/// no user feature matrix). Float files are raw little-endian float32.
public enum SASRecFiles {
    public static func write(_ values: [Float], to path: String) throws(SASRecError) {
        let bytes = values.withUnsafeBufferPointer { Data(buffer: $0) }
        do { try bytes.write(to: URL(fileURLWithPath: path), options: .atomic) } catch {
            throw .storage("cannot write \(path): \(error.localizedDescription)")
        }
    }

    public static func read(_ path: String, count: Int) throws(SASRecError) -> [Float] {
        guard let bytes = FileManager.default.contents(atPath: path) else { throw .storage("\(path) is missing") }
        guard bytes.count == count * 4 else {
            throw .storage("\(path) holds \(bytes.count / 4) floats, expected \(count)")
        }
        return bytes.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
    }

    /// Saves `model` into the existing directory `directory`.
    public static func save(_ model: SASRecModel, to directory: String) throws(SASRecError) {
        do {
            try JSONEncoder().encode(model.config).write(to: URL(fileURLWithPath: directory + "/sasrec.json"), options: .atomic)
        } catch {
            throw .storage("cannot write \(directory)/sasrec.json: \(error.localizedDescription)")
        }
        try write(model.parameters.values, to: directory + "/parameters.f32")
        try write(model.itemTable.values, to: directory + "/item_table.f32")
        if model.config.userFeatureDimension > 0 {
            try write(model.userTable.values, to: directory + "/user_table.f32")
        }
    }

    /// Loads a model saved by ``save(_:to:)`` (for scoring).
    public static func load(from directory: String) throws(SASRecError) -> SASRecModel {
        guard let bytes = FileManager.default.contents(atPath: directory + "/sasrec.json") else {
            throw .storage("\(directory)/sasrec.json is missing: not a SASRec artifact")
        }
        let config: SASRecConfig
        do { config = try JSONDecoder().decode(SASRecConfig.self, from: bytes) } catch {
            throw .storage("\(directory)/sasrec.json is malformed: \(error)")
        }
        try config.validate()
        let p = try read(directory + "/parameters.f32", count: SASRecLayout(config: config).total)
        let t = try read(directory + "/item_table.f32", count: config.itemCount * config.width)
        let u = config.userFeatureDimension > 0
            ? try read(directory + "/user_table.f32", count: config.userCount * config.width) : []
        return try SASRecModel(config: config, parameters: p, itemTable: t, userTable: u)
    }
}

import CURecPluginABI
import CURecPluginKit
import Foundation

/// The plugin this library serves: CURecPluginKit exports the C entry points for it.
@_silgen_name("curec_swift_plugin_type")
public func servedPluginType() -> any SwiftPlugin.Type { BPRPlugin.self }

/// Bayesian Personalized Ranking matrix factorisation (Rendle et al., 2009).
///
/// score(u, i) = p_u · q_i + b_i, trained by SGD on (user, positive, sampled negative)
/// triples to maximise ln σ(score(u, i) − score(u, j)) with L2 regularisation.
///
/// Config (JSON, every field optional): `factors` (64), `epochs` (40), `learning_rate`
/// (0.05), `regularization` (0.002), `seed` (42), `version_label` ("1.0.0"),
/// `checkpoint_every` (5 epochs; 0 disables checkpoints).
///
/// Training is resumable: when the host gives a checkpoint directory (ABI 1.1), the state
/// after every `checkpoint_every` epochs is written there as `epoch-N/`, and a later train
/// call with the same shapes continues after the newest complete one, with the same random
/// stream, so a resumed run ends with exactly the model an uninterrupted run would. A
/// cancelled run (a client's cancel, or a daemon draining on SIGTERM) first checkpoints the
/// epochs it finished since the last checkpoint, so a paused job loses no finished epoch.
final class BPRPlugin: SwiftPlugin, @unchecked Sendable {
    struct Config: Codable {
        var factors: Int?
        var epochs: Int?
        var learning_rate: Float?
        var regularization: Float?
        var seed: UInt64?
        var version_label: String?
        var checkpoint_every: Int?
    }

    struct Meta: Codable {
        var users: Int
        var items: Int
        var factors: Int
    }

    /// What a training checkpoint holds besides the factor files.
    struct Checkpoint: Codable {
        var epoch: Int
        var users: Int
        var items: Int
        var factors: Int
        var samples: Int
        var seed: UInt64
        var randomState: UInt64
    }

    let factors: Int
    let epochs: Int
    let learningRate: Float
    let regularization: Float
    let seed: UInt64
    let version: String
    let checkpointEvery: Int

    // Trained state (written only by train/load, which the host never overlaps with scoring).
    private var userCount = 0
    private var itemCount = 0
    private var userFactors: [Float] = []
    private var itemFactors: [Float] = []
    private var itemBias: [Float] = []
    private var trained = false

    init(config: [UInt8]) throws(PluginFailure) {
        let parsed = try decodeJSONConfig(Config.self, from: config, plugin: "bpr")
        factors = parsed.factors ?? 64
        epochs = parsed.epochs ?? 40
        learningRate = parsed.learning_rate ?? 0.05
        regularization = parsed.regularization ?? 0.002
        seed = parsed.seed ?? 42
        version = parsed.version_label ?? "1.0.0"
        checkpointEvery = parsed.checkpoint_every ?? 5
        guard (1...1024).contains(factors) else {
            throw PluginFailure(CUREC_STATUS_INVALID_ARGUMENT, "bpr config: factors must be 1...1024, got \(factors)")
        }
        guard (0...100_000).contains(epochs), learningRate > 0, regularization >= 0 else {
            throw PluginFailure(CUREC_STATUS_INVALID_ARGUMENT,
                                "bpr config: epochs must be 0...100000, learning_rate > 0 and regularization >= 0")
        }
    }

    var facts: PluginFacts {
        var facts = PluginFacts(name: "bpr", version: version, kind: CUREC_PLUGIN_KIND_RECOMMENDER)
        facts.isTrained = trained
        return facts
    }

    func train(_ data: TrainingView, hooks: TrainingHooks) throws(PluginFailure) {
        guard data.users.count > 0, data.userCount > 0, data.itemCount > 1 else {
            throw PluginFailure(CUREC_STATUS_INVALID_ARGUMENT, "bpr needs at least one interaction and two items")
        }
        let users = data.userCount, items = data.itemCount, k = factors
        var random = SplitMix64(seed: seed)
        var p = (0..<(users * k)).map { _ in random.nextGaussian() * 0.1 }
        var q = (0..<(items * k)).map { _ in random.nextGaussian() * 0.1 }
        var bias = [Float](repeating: 0, count: items)
        // Each user's positives, for negative sampling.
        var seen = [Set<UInt32>](repeating: [], count: users)
        for index in 0..<data.users.count {
            guard Int(data.users[index]) < users, Int(data.items[index]) < items else {
                throw PluginFailure(CUREC_STATUS_INVALID_ARGUMENT, "interaction \(index) has an out-of-range user or item")
            }
            seen[Int(data.users[index])].insert(data.items[index])
        }
        let samples = data.users.count
        let lr = learningRate, reg = regularization
        var firstEpoch = 0
        let checkpointDirectory = checkpointEvery > 0 ? hooks.checkpointDirectory : nil
        if let checkpointDirectory,
           let resumed = Self.latestCheckpoint(in: checkpointDirectory, users: users, items: items, factors: k,
                                               samples: samples, seed: seed) {
            p = resumed.p
            q = resumed.q
            bias = resumed.bias
            random = SplitMix64(state: resumed.checkpoint.randomState)
            firstEpoch = min(resumed.checkpoint.epoch, epochs)
            hooks.progress(step: firstEpoch, total: epochs, metrics: ["resumed_from_epoch": Double(firstEpoch)])
        }
        for epoch in firstEpoch..<epochs {
            if hooks.isCancelled {
                if let checkpointDirectory, epoch > firstEpoch, epoch % checkpointEvery != 0 {
                    try Self.writeCheckpoint(
                        Checkpoint(epoch: epoch, users: users, items: items, factors: k, samples: samples,
                                   seed: seed, randomState: random.state),
                        p: p, q: q, bias: bias, in: checkpointDirectory)
                }
                throw PluginFailure(CUREC_STATUS_CANCELLED, "bpr training was cancelled")
            }
            var lossSum: Double = 0
            p.withUnsafeMutableBufferPointer { p in
            q.withUnsafeMutableBufferPointer { q in
            bias.withUnsafeMutableBufferPointer { bias in
                for _ in 0..<samples {
                    let index = Int(random.next() % UInt64(samples))
                    let u = Int(data.users[index]), i = Int(data.items[index])
                    var j = Int(random.next() % UInt64(items))
                    var attempts = 0
                    while seen[u].contains(UInt32(j)) && attempts < 20 {
                        j = Int(random.next() % UInt64(items))
                        attempts += 1
                    }
                    let pu = u * k, qi = i * k, qj = j * k
                    var x = bias[i] - bias[j]
                    for f in 0..<k { x += p[pu + f] * (q[qi + f] - q[qj + f]) }
                    // d/dx ln σ(x) = σ(−x)
                    let g = 1 / (1 + exp(x))
                    lossSum += Double(log1p(exp(-x)))
                    bias[i] += lr * (g - reg * bias[i])
                    bias[j] += lr * (-g - reg * bias[j])
                    for f in 0..<k {
                        let pf = p[pu + f], qif = q[qi + f], qjf = q[qj + f]
                        p[pu + f] += lr * (g * (qif - qjf) - reg * pf)
                        q[qi + f] += lr * (g * pf - reg * qif)
                        q[qj + f] += lr * (-g * pf - reg * qjf)
                    }
                }
            }}}
            hooks.progress(step: epoch + 1, total: epochs, metrics: ["loss": lossSum / Double(samples)])
            if let checkpointDirectory, (epoch + 1) % checkpointEvery == 0, epoch + 1 < epochs {
                try Self.writeCheckpoint(
                    Checkpoint(epoch: epoch + 1, users: users, items: items, factors: k, samples: samples,
                               seed: seed, randomState: random.state),
                    p: p, q: q, bias: bias, in: checkpointDirectory)
            }
        }
        userCount = users
        itemCount = items
        userFactors = p
        itemFactors = q
        itemBias = bias
        trained = true
    }

    func scoreRecommender(user: UInt32, history: UnsafeBufferPointer<UInt32>, candidates: UnsafeBufferPointer<UInt32>,
                          scores: UnsafeMutableBufferPointer<Float>) throws(PluginFailure) {
        guard trained else { throw PluginFailure(CUREC_STATUS_FAILED_PRECONDITION, "bpr is not trained yet") }
        guard Int(user) < userCount else {
            throw PluginFailure(CUREC_STATUS_NOT_FOUND, "user index \(user) is not in the trained model (\(userCount) users)")
        }
        let k = factors, pu = Int(user) * k, items = itemCount
        userFactors.withUnsafeBufferPointer { p in
        itemFactors.withUnsafeBufferPointer { q in
        itemBias.withUnsafeBufferPointer { bias in
            let user = p.baseAddress! + pu
            for (slot, item) in candidates.enumerated() {
                guard Int(item) < items else { scores[slot] = -.infinity; continue }
                scores[slot] = bias[Int(item)] + Self.dot(user, q.baseAddress! + Int(item) * k, count: k)
            }
        }}}
        if let bad = candidates.first(where: { Int($0) >= itemCount }) {
            throw PluginFailure(CUREC_STATUS_NOT_FOUND, "item index \(bad) is not in the trained model (\(itemCount) items)")
        }
    }

    /// Writes `epoch-N/` completely under a temporary name, renames it into place, then
    /// removes older checkpoints: a crash at any moment leaves a complete newest checkpoint.
    static func writeCheckpoint(_ checkpoint: Checkpoint, p: [Float], q: [Float], bias: [Float],
                                in directory: String) throws(PluginFailure) {
        let final = directory + "/epoch-\(checkpoint.epoch)"
        let staging = final + ".tmp"
        let files = FileManager.default
        try? files.removeItem(atPath: staging)
        do {
            try files.createDirectory(atPath: staging, withIntermediateDirectories: true)
            try JSONEncoder().encode(checkpoint).write(to: URL(fileURLWithPath: staging + "/checkpoint.json"))
        } catch {
            throw PluginFailure(CUREC_STATUS_INTERNAL, "cannot write a checkpoint in \(staging): \(error.localizedDescription)")
        }
        try FloatArrayFile.write(p, to: staging + "/user_factors.f32")
        try FloatArrayFile.write(q, to: staging + "/item_factors.f32")
        try FloatArrayFile.write(bias, to: staging + "/item_bias.f32")
        try? files.removeItem(atPath: final)
        guard rename(staging, final) == 0 else {
            throw PluginFailure(CUREC_STATUS_INTERNAL, "cannot move checkpoint \(staging) into place")
        }
        for entry in (try? files.contentsOfDirectory(atPath: directory)) ?? []
        where entry.hasPrefix("epoch-") && entry != "epoch-\(checkpoint.epoch)" {
            try? files.removeItem(atPath: directory + "/" + entry)
        }
    }

    /// The newest complete checkpoint in `directory` made for the same shapes and seed.
    static func latestCheckpoint(in directory: String, users: Int, items: Int, factors: Int, samples: Int, seed: UInt64)
        -> (checkpoint: Checkpoint, p: [Float], q: [Float], bias: [Float])? {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        let epochs = entries.compactMap { entry -> Int? in
            guard entry.hasPrefix("epoch-"), !entry.hasSuffix(".tmp") else { return nil }
            return Int(entry.dropFirst("epoch-".count))
        }.sorted(by: >)
        for epoch in epochs {
            let path = directory + "/epoch-\(epoch)"
            guard let data = FileManager.default.contents(atPath: path + "/checkpoint.json"),
                  let checkpoint = try? JSONDecoder().decode(Checkpoint.self, from: data),
                  checkpoint.users == users, checkpoint.items == items, checkpoint.factors == factors,
                  checkpoint.samples == samples, checkpoint.seed == seed,
                  let p = try? FloatArrayFile.read(path + "/user_factors.f32", expectedCount: users * factors),
                  let q = try? FloatArrayFile.read(path + "/item_factors.f32", expectedCount: items * factors),
                  let bias = try? FloatArrayFile.read(path + "/item_bias.f32", expectedCount: items) else { continue }
            return (checkpoint, p, q, bias)
        }
        return nil
    }

    /// a · b over `count` floats, eight lanes at a time.
    @inline(__always)
    static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, count: Int) -> Float {
        var lanes = SIMD8<Float>()
        var index = 0
        while index + 8 <= count {
            let x = UnsafeRawPointer(a + index).loadUnaligned(as: SIMD8<Float>.self)
            let y = UnsafeRawPointer(b + index).loadUnaligned(as: SIMD8<Float>.self)
            lanes += x * y
            index += 8
        }
        var sum = lanes.sum()
        while index < count {
            sum += a[index] * b[index]
            index += 1
        }
        return sum
    }

    func save(directory: String) throws(PluginFailure) {
        guard trained else { throw PluginFailure(CUREC_STATUS_FAILED_PRECONDITION, "bpr is not trained; nothing to save") }
        try JSONArtifactFile.write(Meta(users: userCount, items: itemCount, factors: factors), to: directory + "/bpr.json")
        try FloatArrayFile.write(userFactors, to: directory + "/user_factors.f32")
        try FloatArrayFile.write(itemFactors, to: directory + "/item_factors.f32")
        try FloatArrayFile.write(itemBias, to: directory + "/item_bias.f32")
    }

    func load(directory: String) throws(PluginFailure) {
        let meta = try JSONArtifactFile.read(Meta.self, from: directory + "/bpr.json", what: "a bpr artifact")
        guard meta.factors == factors else {
            throw PluginFailure(CUREC_STATUS_INVALID_ARGUMENT,
                                "the artifact has \(meta.factors) factors but this instance is configured for \(factors)")
        }
        let p = try FloatArrayFile.read(directory + "/user_factors.f32", expectedCount: meta.users * meta.factors)
        let q = try FloatArrayFile.read(directory + "/item_factors.f32", expectedCount: meta.items * meta.factors)
        let b = try FloatArrayFile.read(directory + "/item_bias.f32", expectedCount: meta.items)
        userCount = meta.users
        itemCount = meta.items
        userFactors = p
        itemFactors = q
        itemBias = b
        trained = true
    }
}

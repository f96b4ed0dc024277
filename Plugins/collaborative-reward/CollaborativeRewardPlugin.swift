import CURecPluginABI
import CURecPluginKit
import Foundation

/// The plugin this library serves: CURecPluginKit exports the C entry points for it.
@_silgen_name("curec_swift_plugin_type")
public func servedPluginType() -> any SwiftPlugin.Type { CollaborativeRewardPlugin.self }

/// A collaborative reward model: it judges a reason by how well its embedding, used in place
/// of an item's content, predicts who consumes what.
///
/// It learns user vectors p_u ∈ R^k and a projection W ∈ R^{k×D} from interactions, with
/// items represented only by their content features f_i ∈ R^D (BPR objective on
/// p_u · W (f_i − f_j) for a consumed item i and a sampled item j). A reason embedding e
/// about (u, i) then gets reward σ(p_u · W (e − f̄)), f̄ the mean item feature: 0.5 for an
/// average description, near 1 when the reason points where the user's real consumption
/// points.
///
/// Config (JSON, optional fields): `factors` (32), `epochs` (25), `learning_rate` (0.05),
/// `regularization` (0.001), `seed` (7), `version_label` ("1.0.0").
final class CollaborativeRewardPlugin: SwiftPlugin, @unchecked Sendable {
    struct Config: Codable {
        var factors: Int?
        var epochs: Int?
        var learning_rate: Float?
        var regularization: Float?
        var seed: UInt64?
        var version_label: String?
    }

    struct Meta: Codable {
        var users: Int
        var items: Int
        var factors: Int
        var dimension: Int
    }

    let factors: Int
    let epochs: Int
    let learningRate: Float
    let regularization: Float
    let seed: UInt64
    let version: String

    private var userCount = 0
    private var itemCount = 0
    private var dimension = 0
    private var userVectors: [Float] = []   // [users x k]
    private var projection: [Float] = []    // [k x D]
    private var meanFeature: [Float] = []   // [D]
    private var trained = false

    init(config: [UInt8]) throws(PluginFailure) {
        let parsed = try decodeJSONConfig(Config.self, from: config, plugin: "collaborative-reward")
        factors = parsed.factors ?? 32
        epochs = parsed.epochs ?? 25
        learningRate = parsed.learning_rate ?? 0.05
        regularization = parsed.regularization ?? 0.001
        seed = parsed.seed ?? 7
        version = parsed.version_label ?? "1.0.0"
        guard (1...1024).contains(factors), (0...100_000).contains(epochs), learningRate > 0, regularization >= 0 else {
            throw PluginFailure(CUREC_STATUS_INVALID_ARGUMENT,
                                "collaborative-reward config: factors 1...1024, epochs 0...100000, learning_rate > 0, regularization >= 0")
        }
    }

    var facts: PluginFacts {
        var facts = PluginFacts(name: "collaborative-reward", version: version, kind: CUREC_PLUGIN_KIND_REWARD_MODEL)
        facts.itemFeatureDimension = dimension
        facts.reasonEmbeddingDimension = dimension
        facts.isTrained = trained
        return facts
    }

    func train(_ data: TrainingView, hooks: TrainingHooks) throws(PluginFailure) {
        let d = data.itemFeatureDimension
        guard d > 0 else {
            throw PluginFailure(CUREC_STATUS_FAILED_PRECONDITION,
                                "collaborative-reward needs item features (reason or content embeddings) in the dataset")
        }
        guard data.users.count > 0, data.itemCount > 1 else {
            throw PluginFailure(CUREC_STATUS_INVALID_ARGUMENT, "collaborative-reward needs interactions and at least two items")
        }
        let users = data.userCount, items = data.itemCount, k = factors
        var random = SplitMix64(seed: seed)
        var p = (0..<(users * k)).map { _ in random.nextGaussian() * 0.1 }
        var w = (0..<(k * d)).map { _ in random.nextGaussian() * (1 / Float(d).squareRoot()) }
        var mean = [Float](repeating: 0, count: d)
        for item in 0..<items { for c in 0..<d { mean[c] += data.itemFeatures[item * d + c] / Float(items) } }
        var seen = [Set<UInt32>](repeating: [], count: users)
        for index in 0..<data.users.count { seen[Int(data.users[index])].insert(data.items[index]) }
        var delta = [Float](repeating: 0, count: d)
        var projected = [Float](repeating: 0, count: k)
        let samples = data.users.count
        for epoch in 0..<epochs {
            if hooks.isCancelled { throw PluginFailure(CUREC_STATUS_CANCELLED, "collaborative-reward training was cancelled") }
            var lossSum: Double = 0
            for _ in 0..<samples {
                let index = Int(random.next() % UInt64(samples))
                let u = Int(data.users[index]), i = Int(data.items[index])
                var j = Int(random.next() % UInt64(items))
                var attempts = 0
                while seen[u].contains(UInt32(j)) && attempts < 20 { j = Int(random.next() % UInt64(items)); attempts += 1 }
                for c in 0..<d { delta[c] = data.itemFeatures[i * d + c] - data.itemFeatures[j * d + c] }
                // projected = W delta  [k]
                for r in 0..<k {
                    var sum: Float = 0
                    for c in 0..<d { sum += w[r * d + c] * delta[c] }
                    projected[r] = sum
                }
                var x: Float = 0
                for r in 0..<k { x += p[u * k + r] * projected[r] }
                let g = 1 / (1 + exp(x))
                lossSum += Double(log1p(exp(-x)))
                for r in 0..<k {
                    let pur = p[u * k + r]
                    p[u * k + r] += learningRate * (g * projected[r] - regularization * pur)
                    let scale = learningRate * g * pur
                    for c in 0..<d { w[r * d + c] += scale * delta[c] - learningRate * regularization * w[r * d + c] }
                }
            }
            hooks.progress(step: epoch + 1, total: epochs, metrics: ["loss": lossSum / Double(samples)])
        }
        userCount = users
        itemCount = items
        dimension = d
        userVectors = p
        projection = w
        meanFeature = mean
        trained = true
    }

    func scoreReward(_ triples: UnsafeBufferPointer<CURecRewardTriple>, rewards: UnsafeMutableBufferPointer<Float>) throws(PluginFailure) {
        guard trained else { throw PluginFailure(CUREC_STATUS_FAILED_PRECONDITION, "collaborative-reward is not trained yet") }
        let k = factors, d = dimension
        for (slot, triple) in triples.enumerated() {
            guard Int(triple.dim) == d, let embedding = triple.reason_embedding else {
                throw PluginFailure(CUREC_STATUS_INVALID_ARGUMENT,
                                    "triple \(slot): reason embedding has dimension \(triple.dim), expected \(d)")
            }
            guard Int(triple.user) < userCount else {
                throw PluginFailure(CUREC_STATUS_NOT_FOUND, "triple \(slot): user index \(triple.user) is not in the model")
            }
            guard Int(triple.item) < itemCount else {
                throw PluginFailure(CUREC_STATUS_NOT_FOUND, "triple \(slot): item index \(triple.item) is not in the model")
            }
            var x: Float = 0
            let u = Int(triple.user)
            for r in 0..<k {
                var sum: Float = 0
                for c in 0..<d { sum += projection[r * d + c] * (embedding[c] - meanFeature[c]) }
                x += userVectors[u * k + r] * sum
            }
            rewards[slot] = 1 / (1 + exp(-x))
        }
    }

    func save(directory: String) throws(PluginFailure) {
        guard trained else { throw PluginFailure(CUREC_STATUS_FAILED_PRECONDITION, "collaborative-reward is not trained; nothing to save") }
        try JSONArtifactFile.write(Meta(users: userCount, items: itemCount, factors: factors, dimension: dimension),
                                   to: directory + "/reward.json")
        try FloatArrayFile.write(userVectors, to: directory + "/user_vectors.f32")
        try FloatArrayFile.write(projection, to: directory + "/projection.f32")
        try FloatArrayFile.write(meanFeature, to: directory + "/mean_feature.f32")
    }

    func load(directory: String) throws(PluginFailure) {
        let meta = try JSONArtifactFile.read(Meta.self, from: directory + "/reward.json", what: "a collaborative-reward artifact")
        guard meta.factors == factors else {
            throw PluginFailure(CUREC_STATUS_INVALID_ARGUMENT, "the artifact has \(meta.factors) factors, this instance \(factors)")
        }
        let p = try FloatArrayFile.read(directory + "/user_vectors.f32", expectedCount: meta.users * meta.factors)
        let w = try FloatArrayFile.read(directory + "/projection.f32", expectedCount: meta.factors * meta.dimension)
        let m = try FloatArrayFile.read(directory + "/mean_feature.f32", expectedCount: meta.dimension)
        userCount = meta.users
        itemCount = meta.items
        dimension = meta.dimension
        userVectors = p
        projection = w
        meanFeature = m
        trained = true
    }
}

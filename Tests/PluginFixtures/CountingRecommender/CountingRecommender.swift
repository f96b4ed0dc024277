import CURecPluginABI
import CURecPluginKit
import Foundation

/// The plugin this library serves: CURecPluginKit exports the C entry points for it.
@_silgen_name("curec_swift_plugin_type")
public func servedPluginType() -> any SwiftPlugin.Type { CountingRecommender.self }

/// A recommender for the plugin host's tests (`libCURecTestRecommender.so`): an item scores
/// the number of training interactions it has, plus `offset`.
///
/// Config (JSON, all optional): `version` (reported by describe), `offset`, `refuse` (create
/// fails with INVALID_ARGUMENT), `destroyed_marker` (a file written when the instance is
/// destroyed, so a test can see exactly when the host lets go of it), `max_batch_size`
/// (declares the batched entry point of ABI 1.2 with that maximum; 0, the default, does not).
final class CountingRecommender: SwiftPlugin, @unchecked Sendable {
    struct Config: Decodable {
        var version = "1.0.0"
        var offset: Float = 0
        var refuse = false
        var destroyed_marker: String?
        var max_batch_size = 0

        enum CodingKeys: String, CodingKey { case version, offset, refuse, destroyed_marker, max_batch_size }

        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            version = try container.decodeIfPresent(String.self, forKey: .version) ?? version
            offset = try container.decodeIfPresent(Float.self, forKey: .offset) ?? offset
            refuse = try container.decodeIfPresent(Bool.self, forKey: .refuse) ?? refuse
            destroyed_marker = try container.decodeIfPresent(String.self, forKey: .destroyed_marker)
            max_batch_size = try container.decodeIfPresent(Int.self, forKey: .max_batch_size) ?? 0
        }
    }

    private let config: Config
    private var counts: [Float] = []

    init(config bytes: [UInt8]) throws(PluginFailure) {
        config = try decodeJSONConfig(Config.self, from: bytes, plugin: "counting")
        if config.refuse { throw PluginFailure(CUREC_STATUS_INVALID_ARGUMENT, "counting was asked to refuse its config") }
    }

    deinit {
        if let marker = config.destroyed_marker {
            FileManager.default.createFile(atPath: marker, contents: Data(config.version.utf8))
        }
    }

    var facts: PluginFacts {
        var facts = PluginFacts(name: "counting", version: config.version, kind: CUREC_PLUGIN_KIND_RECOMMENDER)
        facts.isTrained = !counts.isEmpty
        facts.maxBatchSize = config.max_batch_size
        return facts
    }

    func train(_ data: TrainingView, hooks: TrainingHooks) throws(PluginFailure) {
        var counts = [Float](repeating: 0, count: data.itemCount)
        for (step, item) in data.items.enumerated() {
            if hooks.isCancelled { throw PluginFailure(CUREC_STATUS_CANCELLED, "training was cancelled") }
            guard Int(item) < data.itemCount else {
                throw PluginFailure(CUREC_STATUS_INVALID_ARGUMENT, "item \(item) is out of range")
            }
            counts[Int(item)] += 1
            hooks.progress(step: step + 1, total: data.items.count, metrics: ["items": Double(item)])
        }
        self.counts = counts
    }

    func scoreRecommender(user: UInt32, history: UnsafeBufferPointer<UInt32>, candidates: UnsafeBufferPointer<UInt32>,
                          scores: UnsafeMutableBufferPointer<Float>) throws(PluginFailure) {
        guard !counts.isEmpty else { throw PluginFailure(CUREC_STATUS_FAILED_PRECONDITION, "counting is not trained") }
        for (index, candidate) in candidates.enumerated() {
            guard Int(candidate) < counts.count else {
                throw PluginFailure(CUREC_STATUS_INVALID_ARGUMENT, "item \(candidate) is out of range")
            }
            scores[index] = counts[Int(candidate)] + config.offset
        }
    }

    func save(directory: String) throws(PluginFailure) {
        try FloatArrayFile.write(counts, to: directory + "/counts.f32")
        try JSONArtifactFile.write(["items": counts.count], to: directory + "/counting.json")
    }

    func load(directory: String) throws(PluginFailure) {
        let meta = try JSONArtifactFile.read([String: Int].self, from: directory + "/counting.json", what: "a counting artifact")
        counts = try FloatArrayFile.read(directory + "/counts.f32", expectedCount: meta["items"] ?? 0)
    }
}

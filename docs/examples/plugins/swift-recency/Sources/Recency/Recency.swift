import CURecPluginABI
import CURecPluginKit

/// The plugin this library serves: CURecPluginKit exports the C entry points for it.
@_silgen_name("curec_swift_plugin_type")
public func servedPluginType() -> any SwiftPlugin.Type { Recency.self }

/// A recency recommender in Swift: an item scores the time of its newest interaction.
final class Recency: SwiftPlugin {
    private var lastSeen: [Float] = []

    init(config: [UInt8]) throws(PluginFailure) {}

    var facts: PluginFacts {
        var facts = PluginFacts(name: "recency-swift", version: "0.1.0", kind: CUREC_PLUGIN_KIND_RECOMMENDER)
        facts.isTrained = !lastSeen.isEmpty
        return facts
    }

    func train(_ data: TrainingView, hooks: TrainingHooks) throws(PluginFailure) {
        var lastSeen = [Float](repeating: 0, count: data.itemCount)
        for n in 0..<data.items.count {
            lastSeen[Int(data.items[n])] = max(lastSeen[Int(data.items[n])], Float(data.timestamps[n]))
        }
        self.lastSeen = lastSeen
        hooks.progress(step: 1, total: 1, metrics: [:])
    }

    func scoreRecommender(user: UInt32, history: UnsafeBufferPointer<UInt32>, candidates: UnsafeBufferPointer<UInt32>,
                          scores: UnsafeMutableBufferPointer<Float>) throws(PluginFailure) {
        guard !lastSeen.isEmpty else { throw PluginFailure(CUREC_STATUS_FAILED_PRECONDITION, "recency-swift is not trained") }
        for (slot, item) in candidates.enumerated() {
            guard Int(item) < lastSeen.count else { throw PluginFailure(CUREC_STATUS_NOT_FOUND, "unknown item \(item)") }
            scores[slot] = lastSeen[Int(item)]
        }
    }

    func save(directory: String) throws(PluginFailure) {
        try FloatArrayFile.write(lastSeen, to: directory + "/recency.f32")
    }

    func load(directory: String) throws(PluginFailure) {
        throw PluginFailure(CUREC_STATUS_UNIMPLEMENTED, "recency-swift retrains on start")
    }
}

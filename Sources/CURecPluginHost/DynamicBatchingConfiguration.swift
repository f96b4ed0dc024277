/// How an instance's scoring requests are queued and batched, like Triton's
/// `dynamic_batching` block: requests wait at most ``maxQueueDelayMicroseconds`` for others to
/// join them, a batch is sent at once when it reaches the largest of
/// ``preferredBatchSizes`` (or ``maxBatchSize``), and at most ``maxQueueSize`` requests wait.
///
/// Declared once here; the daemon's config file (`plugins[].dynamic_batching`) and
/// `PluginService.Load` both build one and ``validated(pluginMaximum:)`` checks it.
public struct DynamicBatchingConfiguration: Sendable, Hashable, Codable {
    /// Longest time the oldest queued request waits for a batch to fill, microseconds.
    public var maxQueueDelayMicroseconds: Int
    /// Batch sizes to prefer, ascending; empty: send whatever is queued once the delay passes
    /// or ``maxBatchSize`` requests wait.
    public var preferredBatchSizes: [Int]
    /// Most requests in one call; 0 takes the plugin's own maximum (its `max_batch_size`).
    public var maxBatchSize: Int
    /// Most requests waiting; a request beyond them fails with RESOURCE_EXHAUSTED.
    public var maxQueueSize: Int

    /// Bounds of each field; a value outside them is refused, naming the field.
    public enum Bounds {
        /// Up to one second: a longer wait is never a batching delay but a mistake.
        public static let maxQueueDelayMicroseconds = 0...1_000_000
        public static let batchSize = 1...4096
        public static let preferredCount = 0...16
        public static let maxQueueSize = 1...100_000
    }

    /// Defaults: 1 ms delay, no preferred sizes, the plugin's maximum, 1024 waiting.
    public init(maxQueueDelayMicroseconds: Int = 1000, preferredBatchSizes: [Int] = [], maxBatchSize: Int = 0,
                maxQueueSize: Int = 1024) {
        self.maxQueueDelayMicroseconds = maxQueueDelayMicroseconds
        self.preferredBatchSizes = preferredBatchSizes
        self.maxBatchSize = maxBatchSize
        self.maxQueueSize = maxQueueSize
    }

    enum CodingKeys: String, CodingKey {
        case maxQueueDelayMicroseconds = "max_queue_delay_microseconds"
        case preferredBatchSizes = "preferred_batch_size"
        case maxBatchSize = "max_batch_size"
        case maxQueueSize = "max_queue_size"
    }

    /// Every key optional (its default when absent); unknown keys are refused by the caller's
    /// decoder settings, not here.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let defaults = DynamicBatchingConfiguration()
        maxQueueDelayMicroseconds = try container.decodeIfPresent(Int.self, forKey: .maxQueueDelayMicroseconds)
            ?? defaults.maxQueueDelayMicroseconds
        preferredBatchSizes = try container.decodeIfPresent([Int].self, forKey: .preferredBatchSizes) ?? []
        maxBatchSize = try container.decodeIfPresent(Int.self, forKey: .maxBatchSize) ?? defaults.maxBatchSize
        maxQueueSize = try container.decodeIfPresent(Int.self, forKey: .maxQueueSize) ?? defaults.maxQueueSize
    }

    /// The configuration with ``maxBatchSize`` resolved against the plugin's own maximum,
    /// or the first problem found, as a sentence naming the field.
    public func validated(pluginMaximum: Int) throws(PluginHostError) -> DynamicBatchingConfiguration {
        func refuse(_ message: String) -> PluginHostError { .invalidBatching(message) }
        guard Bounds.maxQueueDelayMicroseconds.contains(maxQueueDelayMicroseconds) else {
            throw refuse("max_queue_delay_microseconds is \(maxQueueDelayMicroseconds); it must be 0...1000000 (at most one second)")
        }
        guard Bounds.maxQueueSize.contains(maxQueueSize) else {
            throw refuse("max_queue_size is \(maxQueueSize); it must be 1...\(Bounds.maxQueueSize.upperBound)")
        }
        guard maxBatchSize == 0 || Bounds.batchSize.contains(maxBatchSize) else {
            throw refuse("max_batch_size is \(maxBatchSize); it must be 0 (the plugin's maximum) or 1...\(Bounds.batchSize.upperBound)")
        }
        var resolved = self
        resolved.maxBatchSize = maxBatchSize == 0 ? pluginMaximum : maxBatchSize
        guard resolved.maxBatchSize <= pluginMaximum else {
            throw refuse("max_batch_size is \(maxBatchSize) but the plugin accepts at most \(pluginMaximum) requests per call")
        }
        guard Bounds.preferredCount.contains(preferredBatchSizes.count) else {
            throw refuse("preferred_batch_size lists \(preferredBatchSizes.count) sizes; at most \(Bounds.preferredCount.upperBound)")
        }
        for (index, size) in preferredBatchSizes.enumerated() {
            guard (1...resolved.maxBatchSize).contains(size) else {
                throw refuse("preferred_batch_size[\(index)] is \(size); it must be 1...\(resolved.maxBatchSize) (max_batch_size)")
            }
            guard index == 0 || preferredBatchSizes[index - 1] < size else {
                throw refuse("preferred_batch_size must be strictly ascending; [\(index)] is \(size) after \(preferredBatchSizes[index - 1])")
            }
        }
        return resolved
    }
}

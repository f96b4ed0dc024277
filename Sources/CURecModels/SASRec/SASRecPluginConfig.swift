import Foundation

/// The JSON config of the SASRec plugin (`CURecSASRec`), one type for the plugin that reads
/// it and the hosts that write it (the daemon's pipeline sets seed, features and label on it).
/// Every field is optional; the plugin's defaults apply to absent ones (see
/// `Plugins/sasrec/SASRecPlugin.swift`). Encodes with the JSON keys, absent fields left out.
public struct SASRecPluginConfig: Codable, Sendable, Equatable {
    public var maxLength: Int?
    public var width: Int?
    public var blocks: Int?
    public var heads: Int?
    /// Feed-forward width.
    public var hidden: Int?
    /// An upper bound; training stops early after `patience` epochs without a better NDCG@10.
    public var epochs: Int?
    public var learningRate: Float?
    public var batchSize: Int?
    public var patience: Int?
    /// `bce` (one sampled negative per position) or `softmax` (full cross-entropy).
    public var loss: String?
    public var weightDecay: Float?
    public var seed: UInt64?
    /// Train with the dataset's item features (required then).
    public var useItemFeatures: Bool?
    /// Train with the dataset's user features (required then).
    public var useUserFeatures: Bool?
    /// The version the plugin reports.
    public var versionLabel: String?
    /// Epochs between resumable checkpoints; 0 disables them.
    public var checkpointEvery: Int?

    public init() {}

    enum CodingKeys: String, CodingKey {
        case maxLength = "max_length", width, blocks, heads, hidden, epochs, learningRate = "learning_rate"
        case batchSize = "batch_size", patience, loss, weightDecay = "weight_decay", seed
        case useItemFeatures = "use_item_features", useUserFeatures = "use_user_features"
        case versionLabel = "version_label", checkpointEvery = "checkpoint_every"
    }
}

import CURecData
import CURecModels
import CURecTensor
import Foundation

/// A trained recommender the pipeline can evaluate: scores candidates for a user given the
/// history it should condition on (oldest first).
public protocol RecommenderScoring: Sendable {
    func score(user: UInt32, history: [UInt32], candidates: UnsafeBufferPointer<UInt32>,
               scores: UnsafeMutableBufferPointer<Float>) throws
}

/// One downstream training run: a SASRec variant with optional item and user features.
public struct RecommenderRun: Sendable {
    /// Variant key (e.g. `curec`).
    public var variant: String
    public var seed: UInt64
    /// Row-major `[itemCount x itemFeatureDimension]`, empty for none.
    public var itemFeatures: [Float]
    public var itemFeatureDimension: Int
    /// Row-major `[userCount x userFeatureDimension]`, empty for none.
    public var userFeatures: [Float]
    public var userFeatureDimension: Int
    /// Recommender config (JSON) without features or seed, which the environment adds.
    public var config: String
    /// Save this run's model as the reason-aware recommender the host serves once the
    /// pipeline has published its outputs.
    public var keep: Bool

    public init(variant: String, seed: UInt64, itemFeatures: [Float], itemFeatureDimension: Int,
                userFeatures: [Float], userFeatureDimension: Int, config: String, keep: Bool) {
        self.variant = variant
        self.seed = seed
        self.itemFeatures = itemFeatures
        self.itemFeatureDimension = itemFeatureDimension
        self.userFeatures = userFeatures
        self.userFeatureDimension = userFeatureDimension
        self.config = config
        self.keep = keep
    }
}

/// What the pipeline needs from its host: the sentence encoder and the two plugins (the
/// collaborative reward model and the SASRec recommender). The daemon provides them through
/// its plugin host; tests can provide small in-process ones.
public protocol PipelineEnvironment: Sendable {
    /// The dataset and its leave-one-out split (validation and test are read only to evaluate).
    var dataset: RecDataset { get }
    var split: LeaveOneOutSplit { get }

    /// The sentence encoder (MiniLM).
    func makeEmbedder() throws -> any ReasonEmbedder

    /// The GGUF file of the pretrained chat model (SmolLM2-135M-Instruct) that a
    /// ``PipelineLanguageModel/chat`` pipeline aligns; nil when there is none.
    var chatModelPath: String? { get }

    /// A fresh copy of the pretrained chat model with `weights` (float32 to train, quantized
    /// to decode) and its tokenizer. The default reads ``chatModelPath``.
    func loadChatModel(weights: LlamaWeightFormat) throws -> (model: LlamaModel, tokenizer: PretrainedTokenizer)

    /// Trains the collaborative reward model with `itemFeatures` (`[itemCount x dimension]`)
    /// as item content on the training split.
    func trainRewardModel(itemFeatures: [Float], dimension: Int, config: String,
                          progress: @escaping (Int, Int) -> Void,
                          isCancelled: @escaping () -> Bool) throws -> any CollaborativeScorer

    /// Trains one recommender run (early stopping on validation NDCG@10 happens inside).
    func trainRecommender(_ run: RecommenderRun, progress: @escaping (Int, Int, [String: Double]) -> Void,
                          isCancelled: @escaping () -> Bool) throws -> any RecommenderScoring
}

extension PipelineEnvironment {
    public var chatModelPath: String? { nil }

    public func loadChatModel(weights: LlamaWeightFormat) throws -> (model: LlamaModel, tokenizer: PretrainedTokenizer) {
        guard let file = chatModelPath, FileManager.default.fileExists(atPath: file) else {
            throw PipelineError.invalidConfig("the chat language model file is missing (\(chatModelPath ?? "none configured")); "
                                              + "scripts/fetch-lm fetches SmolLM2-135M-Instruct")
        }
        let gguf = try GGUFFile.read(path: file)
        return (try LlamaModel.load(gguf: gguf, weights: weights), try PretrainedTokenizer(gguf: gguf))
    }
}

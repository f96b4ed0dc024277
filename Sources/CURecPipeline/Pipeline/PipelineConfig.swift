import Foundation

/// The language model the pipeline aligns, tunes and writes reasons with.
public enum PipelineLanguageModel: String, Sendable, Codable, Equatable {
    /// A pretrained chat model (SmolLM2-135M-Instruct, from the environment's GGUF file),
    /// fine-tuned on the corpus in its chat format (LoRA by default).
    case chat
    /// The built-in GPT, trained from scratch on the corpus (``PretrainingConfig``).
    case gpt
}

/// Everything the CURec pipeline can be told. ``standard`` is sized for 90 minutes on a
/// 2-core machine on MovieLens-100K; ``quick`` runs every stage in under 15 minutes.
public struct PipelineConfig: Sendable, Codable, Equatable {
    /// Label written into the report ("standard", "quick").
    public var profile = "standard"
    /// The language model of stages 2 to 5.
    public var languageModel = PipelineLanguageModel.chat
    /// Stage 2 with the chat model: alignment fine-tuning.
    public var alignment: AlignmentFineTuningConfig = {
        var config = AlignmentFineTuningConfig()
        config.steps = 30
        config.batch = 4
        config.learningRate = 5e-4
        config.maxLength = 448
        config.heldOut = 32
        return config
    }()
    /// Decode with the chat model's 4-bit weights (LoRA adapters attached); training and
    /// log-probabilities always use float32. Full fine-tuning decodes in float32.
    public var decodeQuantized = true
    /// Users and items that get a reason in each table (0: all). Users are the first ones by
    /// index, items the most watched in training; the others get zero feature rows.
    public var reasonUsers = 64
    public var reasonItems = 96
    /// Stage 1: history titles shown in prompts (the corpus default is 20; 10 keeps a user
    /// prompt and its reasoning within the context).
    public var historyShown = 10
    /// Stage 2 with the built-in GPT. The context holds a whole user-preference example (prompt ~200 tokens,
    /// reasoning and reason ~250).
    public var pretraining: PretrainingConfig = {
        var config = PretrainingConfig()
        config.context = 512
        config.steps = 1500
        config.warmupSteps = 60
        return config
    }()
    /// Stage 3.
    public var reward = ReasonRewardConfig()
    /// Config (JSON) of the collaborative reward plugin.
    public var rewardModelConfig = #"{"factors": 32, "epochs": 10, "seed": 7}"#
    /// Stage 4.
    public var grpo: GRPOConfig = {
        var config = GRPOConfig()
        config.steps = 4
        config.promptsPerStep = 2
        config.groupSize = 4
        config.innerEpochs = 1
        // LoRA adapters need a LoRA-sized step: at the full-model default (5e-5) four steps
        // leave the policy where it started (KL below 1e-4).
        config.learningRate = 5e-4
        return config
    }()
    /// Users and items whose prompts GRPO trains on (a deterministic sample of each).
    public var grpoUsers = 32
    public var grpoItems = 32
    /// Stage 5.
    public var correction: CorrectionConfig = {
        var config = CorrectionConfig()
        config.candidates = 3
        return config
    }()
    /// Answer budget of the built-in GPT (reasoning steps plus reason), in tokens.
    public var maxTokens = 288
    /// Answer budget of the chat model (its answers keep at most
    /// `alignment.reasoningSteps` steps).
    public var chatMaxTokens = 160
    /// The answer budget of the language model in use.
    public var answerTokens: Int { languageModel == .chat ? chatMaxTokens : maxTokens }
    /// Rows per generation batch.
    public var generationBatch = 32
    /// Repetition penalty when writing the reason tables (GRPO samples the model's own
    /// distribution, without it).
    public var repetitionPenalty: Float = 1.15
    /// Stage 6: SASRec config (JSON) shared by every variant; features and seed are added.
    public var recommenderConfig = #"{"epochs": 100, "patience": 5}"#
    /// Stage 7: seeds of each downstream variant.
    public var seeds: [UInt64] = [42, 1, 2, 3, 4]
    /// Reason quality: (user, item) pairs drawn from what the served variant recommends
    /// (each user's top ``qualityListLength``), and the seed of the draw. 0 pairs: not measured.
    public var qualityPairs = 200
    public var qualityListLength = 10
    public var qualitySeed: UInt64 = 2024

    public init() {}

    /// The default configuration.
    public static var standard: PipelineConfig { PipelineConfig() }

    /// A small configuration that runs every stage in under 15 minutes on 2 cores (CI and
    /// first start): a short LoRA alignment, two GRPO steps, reasons for 16 users and the 24
    /// most watched items, short recommender training, one seed.
    public static var quick: PipelineConfig {
        var config = PipelineConfig()
        config.profile = "quick"
        config.alignment.steps = 24
        config.alignment.batch = 2
        config.alignment.maxLength = 320
        config.alignment.heldOut = 8
        config.alignment.examples = 48
        config.alignment.warmupSteps = 2
        config.alignment.checkpointEvery = 8
        config.alignment.learningRate = 1e-3
        config.alignment.reasoningSteps = 2
        config.chatMaxTokens = 96
        config.reasonUsers = 16
        config.reasonItems = 24
        config.pretraining.steps = 300
        config.pretraining.warmupSteps = 20
        config.pretraining.checkpointEvery = 50
        config.rewardModelConfig = #"{"factors": 16, "epochs": 3, "seed": 7}"#
        config.grpo.steps = 2
        config.grpo.promptsPerStep = 2
        config.grpo.groupSize = 4
        config.grpo.innerEpochs = 1
        config.grpo.learningRate = 1e-3
        config.grpoUsers = 8
        config.grpoItems = 8
        config.correction.candidates = 2
        config.correction.regenerationRounds = 0
        config.recommenderConfig = #"{"epochs": 6, "patience": 3, "width": 32}"#
        config.seeds = [42]
        config.qualityPairs = 16
        return config
    }

    /// Checks ranges; the message names the field.
    public func validate() throws(PipelineError) {
        func require(_ condition: Bool, _ message: String) throws(PipelineError) {
            if !condition { throw .invalidConfig(message) }
        }
        try require(!seeds.isEmpty && seeds.count <= 10, "seeds: 1 to 10 seeds")
        try require(Set(seeds).count == seeds.count, "seeds must be distinct")
        try require(maxTokens >= 8 && maxTokens <= pretraining.context - 16,
                    "maxTokens must be in 8...\(pretraining.context - 16) (the context minus 16 prompt tokens)")
        try require(chatMaxTokens >= 8 && chatMaxTokens <= 2048, "chatMaxTokens must be in 8...2048")
        try require(reasonUsers >= 0 && reasonItems >= 0, "reasonUsers and reasonItems must not be negative")
        try alignment.validate()
        try require(generationBatch >= 1 && generationBatch <= 256, "generationBatch: 1...256")
        try require(grpoUsers >= 0 && grpoItems >= 0 && grpoUsers + grpoItems > 0, "grpoUsers + grpoItems must be positive")
        try require(pretraining.steps >= 1, "pretraining.steps must be at least 1")
        try require(qualityPairs >= 0 && qualityPairs <= 2000, "qualityPairs: 0...2000")
        try require(qualityListLength >= 1 && qualityListLength <= 100, "qualityListLength: 1...100")
        try require(historyShown >= 1, "historyShown must be at least 1")
        try require(repetitionPenalty >= 1 && repetitionPenalty.isFinite, "repetitionPenalty must be finite and >= 1")
        try require(correction.candidates >= 1, "correction.candidates must be at least 1")
        try require(Self.isJSONObject(rewardModelConfig), "rewardModelConfig must be a JSON object")
        try require(Self.isJSONObject(recommenderConfig), "recommenderConfig must be a JSON object")
    }

    static func isJSONObject(_ text: String) -> Bool {
        (try? JSONSerialization.jsonObject(with: Data(text.utf8))) is [String: Any]
    }
}

/// Errors of the pipeline as a whole.
public enum PipelineError: Error, CustomStringConvertible, Sendable {
    case invalidConfig(String)
    case stage(String, String)
    case cancelled

    public var description: String {
        switch self {
        case .invalidConfig(let detail): return "invalid pipeline config: \(detail)"
        case .stage(let stage, let detail): return "stage \(stage) failed: \(detail)"
        case .cancelled: return "the pipeline was cancelled"
        }
    }
}

import Foundation
@testable import CURecData
@testable import CURecPipeline

/// A transparent sentence embedder for tests: counts genre words ("comedy", "sci-fi",
/// "thriller", "drama", "romance", "western") plus a bias dimension, L2-normalised.
struct KeywordEmbedder: ReasonEmbedder {
    static let keywords = [["comed", "funny", "laugh"], ["sci-fi", "science", "space"], ["thriller", "suspense"],
                           ["drama", "dramas"], ["romance", "romantic"], ["western"]]
    var dimension: Int { Self.keywords.count + 1 }

    func embed(_ texts: [String]) throws -> [[Float]] {
        texts.map { text in
            let lower = text.lowercased()
            var vector = Self.keywords.map { words in Float(words.reduce(0) { $0 + lower.components(separatedBy: $1).count - 1 }) }
            vector.append(0.1)
            let norm = vector.reduce(0) { $0 + $1 * $1 }.squareRoot()
            return vector.map { $0 / norm }
        }
    }
}

/// A collaborative scorer computed from training data: a user's profile is the mean
/// embedding of the content of the items they consumed in training; the score of an
/// embedding is σ(4 · profile · (e − mean item content)).
struct ProfileScorer: CollaborativeScorer {
    let profiles: [[Float]]
    let mean: [Float]

    init(dataset: RecDataset, split: LeaveOneOutSplit, content: [Float], dimension: Int) {
        var profiles = [[Float]](repeating: [Float](repeating: 0, count: dimension), count: dataset.userCount)
        for (user, items) in split.trainItemsByUser.enumerated() {
            for item in items {
                for d in 0..<dimension { profiles[user][d] += content[Int(item) * dimension + d] / Float(max(items.count, 1)) }
            }
        }
        var mean = [Float](repeating: 0, count: dimension)
        for item in 0..<dataset.itemCount {
            for d in 0..<dimension { mean[d] += content[item * dimension + d] / Float(dataset.itemCount) }
        }
        self.profiles = profiles
        self.mean = mean
    }

    func scores(_ queries: [CollaborativeQuery]) throws -> [Float] {
        queries.map { query in
            let profile = profiles[Int(query.user)]
            var x: Float = 0
            for d in 0..<profile.count { x += profile[d] * (query.embedding[d] - mean[d]) }
            return 1 / (1 + exp(-4 * x))
        }
    }
}

/// A recommender computed from features: score = history-mean item feature · item feature
/// (+ user feature · item feature when given), plus log popularity; ID-only runs use
/// popularity with a seed-dependent tie-break.
struct FeatureRecommender: RecommenderScoring {
    let itemFeatures: [Float]
    let userFeatures: [Float]
    let dimension: Int
    let userDimension: Int
    let popularity: [Float]

    func score(user: UInt32, history: [UInt32], candidates: UnsafeBufferPointer<UInt32>,
               scores: UnsafeMutableBufferPointer<Float>) throws {
        var profile = [Float](repeating: 0, count: dimension)
        if dimension > 0 {
            for item in history { for d in 0..<dimension { profile[d] += itemFeatures[Int(item) * dimension + d] } }
        }
        for (slot, item) in candidates.enumerated() {
            var score = popularity[Int(item)]
            for d in 0..<dimension { score += profile[d] * itemFeatures[Int(item) * dimension + d] }
            if userDimension == dimension, userDimension > 0 {
                for d in 0..<dimension { score += userFeatures[Int(user) * dimension + d] * itemFeatures[Int(item) * dimension + d] }
            }
            scores[slot] = score
        }
    }
}

/// The pipeline's host for tests: the keyword embedder, the profile scorer, the feature
/// recommender.
struct TestPipelineEnvironment: PipelineEnvironment {
    let dataset: RecDataset
    let split: LeaveOneOutSplit

    func makeEmbedder() throws -> any ReasonEmbedder { KeywordEmbedder() }

    func trainRewardModel(itemFeatures: [Float], dimension: Int, config: String,
                          progress: @escaping (Int, Int) -> Void, isCancelled: @escaping () -> Bool) throws -> any CollaborativeScorer {
        progress(1, 1)
        return ProfileScorer(dataset: dataset, split: split, content: itemFeatures, dimension: dimension)
    }

    func trainRecommender(_ run: RecommenderRun, progress: @escaping (Int, Int, [String: Double]) -> Void,
                          isCancelled: @escaping () -> Bool) throws -> any RecommenderScoring {
        var popularity = [Float](repeating: 0, count: dataset.itemCount)
        for items in split.trainItemsByUser { for item in items { popularity[Int(item)] += 1 } }
        var generator = SeededNoise(seed: run.seed)
        popularity = popularity.map { log(1 + $0) + 0.01 * generator.next() }
        progress(1, 1, [:])
        return FeatureRecommender(itemFeatures: run.itemFeatures, userFeatures: run.userFeatures,
                                  dimension: run.itemFeatureDimension, userDimension: run.userFeatureDimension,
                                  popularity: popularity)
    }
}

/// Small deterministic noise in [0, 1).
struct SeededNoise {
    var state: UInt64
    init(seed: UInt64) { state = seed &+ 0x9E37_79B9_7F4A_7C15 }
    mutating func next() -> Float {
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        return Float(state >> 40) / Float(1 << 24)
    }
}

/// A tiny pipeline configuration for the synthetic dataset.
func tinyPipelineConfig() -> PipelineConfig {
    var config = PipelineConfig.quick
    config.profile = "test"
    config.languageModel = .gpt
    config.reasonUsers = 0
    config.reasonItems = 0
    config.pretraining.vocabularySize = 400
    config.pretraining.layers = 1
    config.pretraining.heads = 2
    config.pretraining.width = 32
    config.pretraining.context = 96
    config.pretraining.batch = 4
    config.pretraining.steps = 30
    config.pretraining.warmupSteps = 3
    config.pretraining.maxLearningRate = 1e-2
    config.pretraining.checkpointEvery = 10
    config.maxTokens = 32
    config.generationBatch = 16
    config.grpo.steps = 2
    config.grpo.promptsPerStep = 2
    config.grpo.groupSize = 3
    config.grpoUsers = 4
    config.grpoItems = 4
    config.correction.candidates = 2
    config.seeds = [1, 2]
    return config
}

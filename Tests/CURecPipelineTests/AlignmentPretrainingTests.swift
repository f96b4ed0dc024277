import Foundation
import Testing
@testable import CURecPipeline

@Suite struct AlignmentPretrainingTests {
    /// A small structured corpus in the shape of the instruction examples.
    static let texts: [String] = (0..<60).map { index in
        let genres = ["Drama", "Comedy", "Thriller", "Romance"]
        let genre = genres[index % genres.count]
        return "### Instruction\nWhy would user \(index) like a \(genre) film?\n### Reason\nUser \(index) watches many \(genre) films.\n"
    }

    static func tinyConfig() -> PretrainingConfig {
        var config = PretrainingConfig()
        config.vocabularySize = 320
        config.layers = 1
        config.heads = 2
        config.width = 32
        config.context = 32
        config.batch = 4
        config.steps = 80
        config.warmupSteps = 5
        config.maxLearningRate = 1e-2
        config.minLearningRate = 1e-3
        config.checkpointEvery = 10
        return config
    }

    @Test func lossFallsAndHeldOutPerplexityIsReported() throws {
        var losses: [Double] = []
        let result = try AlignmentPretraining.run(texts: Self.texts, config: Self.tinyConfig()) { _, _, metrics in
            losses.append(metrics["loss"] ?? .nan)
        }
        #expect(losses.count == 80)
        #expect(result.trainLoss < losses[0] * 0.5, "loss did not fall: first \(losses[0]), last \(result.trainLoss)")
        #expect(result.heldOutPerplexity.isFinite)
        #expect(result.heldOutPerplexity < Double(result.tokenizer.vocabularySize) / 4)
        #expect(result.tokenizer.id(of: AlignmentPretraining.endOfText) != nil)
    }

    @Test func runsAreDeterministicForASeed() throws {
        var config = Self.tinyConfig()
        config.steps = 20
        let first = try AlignmentPretraining.run(texts: Self.texts, config: config)
        let second = try AlignmentPretraining.run(texts: Self.texts, config: config)
        #expect(first.trainLoss == second.trainLoss)
        #expect(first.heldOutLoss == second.heldOutLoss)
    }

    @Test func anInterruptedRunResumesFromItsCheckpoint() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("curec-pretrain-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var steps = 0
        #expect(throws: PretrainingError.self) {
            try AlignmentPretraining.run(texts: Self.texts, config: Self.tinyConfig(), checkpointDirectory: directory,
                                         progress: { step, _, _ in steps = step }, isCancelled: { steps >= 35 })
        }
        let resumed = try AlignmentPretraining.run(texts: Self.texts, config: Self.tinyConfig(), checkpointDirectory: directory)
        #expect(resumed.resumedFromStep == 30)
        #expect(resumed.stepsRun == 50)
    }

    @Test func anEmptyCorpusIsRefused() {
        #expect(throws: PretrainingError.self) { try AlignmentPretraining.run(texts: ["", ""], config: Self.tinyConfig()) }
    }
}

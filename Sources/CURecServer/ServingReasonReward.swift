import CURecModels
import CURecPipeline
import CURecPluginHost
import CURecRPC
import Foundation
import Synchronization

/// The pipeline's reason reward and its MiniLM sentence encoder, in the daemon: what
/// `RewardService.ScoreReasons` and `RewardService.Embed` use.
///
/// Set up on first use, off the I/O loop, once (concurrent first calls share the set-up):
/// the encoder is loaded from `minilm_dir`; the reward, as the pipeline's stage 3 builds it,
/// embeds every item's content ("title (year); genres") with MiniLM, trains the
/// `collaborative-reward` plugin on those embeddings (a private instance, with the quick
/// profile's settings) and calibrates the users. That takes seconds to a minute; later calls
/// reuse it.
final class ServingReasonReward: Sendable {
    let data: ServingData
    let corpus: CorpusBuilder
    let plugins: PluginHost
    let miniLMDirectory: String
    /// The collaborative-reward plugin's settings.
    let rewardModelConfig: String

    /// Library of the collaborative reward model.
    static let rewardLibrary = "CURecCollaborativeReward"
    /// Texts per Embed call.
    static let maxTexts = 256
    /// Reasons per ScoreReasons call.
    static let maxReasons = 64
    /// UTF-8 bytes per text (MiniLM reads at most its first 256 word pieces anyway).
    static let maxTextBytes = 4096

    private let encoderTask = Mutex<Task<MiniLMEncoder, any Error>?>(nil)
    private let rewarderTask = Mutex<Task<ReasonRewarder, any Error>?>(nil)

    init(data: ServingData, corpus: CorpusBuilder, plugins: PluginHost, miniLMDirectory: String,
         rewardModelConfig: String = PipelineConfig.quick.rewardModelConfig) {
        self.data = data
        self.corpus = corpus
        self.plugins = plugins
        self.miniLMDirectory = miniLMDirectory
        self.rewardModelConfig = rewardModelConfig
    }

    /// The shared result of `make`, started by the first caller; a failed set-up is forgotten so
    /// a later call can try again (e.g. after scripts/fetch-minilm).
    private func once<T: Sendable>(_ slot: borrowing Mutex<Task<T, any Error>?>, _ make: @escaping @Sendable () async throws -> T) async throws -> T {
        let task = slot.withLock { current -> Task<T, any Error> in
            if let current { return current }
            let created = Task { try await make() }
            current = created
            return created
        }
        do {
            return try await task.value
        } catch {
            slot.withLock { if $0 == task { $0 = nil } }
            throw error
        }
    }

    /// The MiniLM encoder, or FAILED_PRECONDITION when its files are missing.
    func encoder() async throws -> MiniLMEncoder {
        let directory = miniLMDirectory
        return try await once(encoderTask) {
            try await runBlocking {
                do {
                    return try MiniLMEncoder(directory: directory)
                } catch {
                    throw ServingError.failedPrecondition("the MiniLM sentence encoder cannot be loaded from minilm_dir (run scripts/fetch-minilm): \(error)")
                }
            }
        }
    }

    /// The pipeline's reward over the daemon's dataset.
    func rewarder() async throws -> ReasonRewarder {
        try await once(rewarderTask) { [self] in
            let encoder = try await encoder()
            return try await runBlocking { try self.makeRewarder(encoder) }
        }
    }

    private func makeRewarder(_ encoder: MiniLMEncoder) throws -> ReasonRewarder {
        let dataset = data.dataset
        let texts = (0..<dataset.itemCount).map { corpus.contentText(item: Int32($0)) }
        var content: [Float] = []
        content.reserveCapacity(texts.count * encoder.dimension)
        for row in encoder.encode(texts) { content += row }
        let instance: PluginInstance
        do {
            instance = try plugins.makeInstance(name: "serving-reason-reward", library: Self.rewardLibrary,
                                                config: Array(rewardModelConfig.utf8))
            var training = data.trainingData()
            training.itemFeatures = content
            training.itemFeatureDimension = encoder.dimension
            try instance.train(training, progress: { _, _, _ in }, isCancelled: { false })
        } catch {
            throw ServingError.failedPrecondition("the collaborative reward model could not be trained: \(error)")
        }
        return try ReasonRewarder(statistics: corpus.statistics, verifier: ReasonVerifier(dataset: dataset),
                                  embedder: encoder, scorer: PluginRewardScorer(instance: instance),
                                  config: ReasonRewardConfig())
            .calibrated(itemFeatures: content, dimension: encoder.dimension)
    }

    /// Checks a batch of texts: non-empty when `allowEmpty` is false, at most ``maxTextBytes``
    /// each. `field` names the repeated field for the error message.
    static func validate(_ texts: [String], field: (Int) -> String, allowEmpty: Bool) throws(ServingError) {
        for (index, text) in texts.enumerated() {
            if !allowEmpty && text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
                throw ServingError.invalidArgument("\(field(index)) is empty; give a non-empty text")
            }
            if text.utf8.count > maxTextBytes {
                throw ServingError.invalidArgument("\(field(index)) has \(text.utf8.count) bytes; at most \(maxTextBytes) bytes per text")
            }
        }
    }
}

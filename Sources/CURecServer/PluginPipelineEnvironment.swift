import CURecData
import CURecModels
import CURecPipeline
import CURecPluginHost
import Foundation

/// The pipeline's host services in the daemon: MiniLM from the configured directory, the
/// collaborative reward model and SASRec as plugin instances. The kept recommender is saved
/// as the artifact `servedName` (with its config in the metadata); the job serves it at the
/// end (``ReasonAwareRecommender``).
struct PluginPipelineEnvironment: PipelineEnvironment {
    let data: ServingData
    let plugins: PluginHost
    let artifacts: ArtifactStore
    let miniLMDirectory: String
    /// The GGUF file of the chat model the pipeline aligns.
    let chatModelPath: String?
    let rewardLibrary: String
    let recommenderLibrary: String
    /// Instance and artifact name of the reason-aware recommender the pipeline leaves serving.
    let servedName: String
    let jobID: String
    let log: @Sendable (String) -> Void

    var dataset: RecDataset { data.dataset }
    var split: LeaveOneOutSplit { data.split }

    func makeEmbedder() throws -> any ReasonEmbedder {
        do {
            return try MiniLMEncoder(directory: miniLMDirectory)
        } catch {
            throw PipelineError.stage("content", "cannot load the MiniLM sentence encoder from \(miniLMDirectory) (run scripts/fetch-minilm): \(error)")
        }
    }

    func trainRewardModel(itemFeatures: [Float], dimension: Int, config: String,
                          progress: @escaping (Int, Int) -> Void,
                          isCancelled: @escaping () -> Bool) throws -> any CollaborativeScorer {
        let instance = try plugins.makeInstance(name: "pipeline-reward", library: rewardLibrary, config: Array(config.utf8))
        var training = data.trainingData()
        training.itemFeatures = itemFeatures
        training.itemFeatureDimension = dimension
        try instance.train(training, progress: { step, total, _ in progress(Int(step), Int(total)) }, isCancelled: isCancelled)
        return PluginRewardScorer(instance: instance)
    }

    func trainRecommender(_ run: RecommenderRun, progress: @escaping (Int, Int, [String: Double]) -> Void,
                          isCancelled: @escaping () -> Bool) throws -> any RecommenderScoring {
        let configData = try Self.recommenderConfig(for: run)
        let config = Array(configData)
        let name = run.keep ? servedName : "pipeline-\(run.variant)-\(run.seed)"
        let instance = try plugins.makeInstance(name: name, library: recommenderLibrary, config: config)
        var training = data.trainingData()
        if run.itemFeatureDimension > 0 {
            training.itemFeatures = run.itemFeatures
            training.itemFeatureDimension = run.itemFeatureDimension
        } else {
            training.itemFeatures = []
            training.itemFeatureDimension = 0
        }
        training.userFeatures = run.userFeatures
        training.userFeatureDimension = run.userFeatureDimension
        try instance.train(
            training,
            progress: { step, total, metricsJSON in
                progress(Int(step), Int(total), PluginProgressMetrics.parse(metricsJSON))
            },
            isCancelled: isCancelled)
        if run.keep {
            let description = instance.describe()
            let configText = String(decoding: configData, as: UTF8.self)
            var manifest = ArtifactManifest.pluginState(description, library: recommenderLibrary,
                                                        configFingerprint: PluginPreparer.fingerprint(config),
                                                        dataset: data.dataset.name)
            manifest.config = configText
            manifest.job = jobID
            manifest.variant = run.variant
            // Recorded to be served once the job serves it itself (after the reasons and models it
            // goes with are published): ``ReasonAwareRecommender/serveLatest(name:plugins:artifacts:)``.
            let directory = try artifacts.addVersion(of: servedName, manifest: manifest) { staging in
                try instance.save(to: staging)
            }
            log("saved models/\(servedName)/\((directory as NSString).lastPathComponent) (SASRec with CURec reason features); it serves once the job has published everything")
        }
        return PluginRecommender(instance: instance)
    }
}

extension PluginPipelineEnvironment {
    /// The SASRec plugin config of a downstream run: the pipeline's shared config with the
    /// run's seed, features and label, and no checkpoints (a run is short and restarts whole).
    static func recommenderConfig(for run: RecommenderRun) throws -> Data {
        var recommender: SASRecPluginConfig
        do {
            recommender = try JSONDecoder().decode(SASRecPluginConfig.self, from: Data(run.config.utf8))
        } catch {
            throw PipelineError.stage("downstream", "the recommender config is not a SASRec config: \(error)")
        }
        recommender.seed = run.seed
        recommender.useItemFeatures = run.itemFeatureDimension > 0
        recommender.useUserFeatures = run.userFeatureDimension > 0
        recommender.versionLabel = "pipeline-\(run.variant)"
        recommender.checkpointEvery = 0
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return try encoder.encode(recommender)
    }
}

/// The reward plugin as the pipeline's collaborative scorer.
struct PluginRewardScorer: CollaborativeScorer {
    let instance: PluginInstance

    func scores(_ queries: [CollaborativeQuery]) throws -> [Float] {
        try instance.scoreReward(queries.map { PluginInstance.RewardInput(user: $0.user, item: $0.item, embedding: $0.embedding) })
    }
}

/// A recommender plugin instance as the pipeline's scorer.
struct PluginRecommender: RecommenderScoring {
    let instance: PluginInstance

    func score(user: UInt32, history: [UInt32], candidates: UnsafeBufferPointer<UInt32>,
               scores: UnsafeMutableBufferPointer<Float>) throws {
        try instance.scoreRecommender(user: user, history: history, candidates: candidates, scores: scores)
    }
}

/// Serving the reason-aware recommender: loads (or hot-reloads) instance `name` from the
/// newest `models/<name>` artifact, whose metadata holds the library and config it was
/// trained with. Used when the pipeline job ends and when the daemon starts.
enum ReasonAwareRecommender {
    /// Loads or reloads the newest version; returns its `models/<name>/vN`, or nil if none.
    @discardableResult
    static func serveLatest(name: String, plugins: PluginHost, artifacts: ArtifactStore) throws -> String? {
        guard let directory = artifacts.latest(of: name) else { return nil }
        let manifest = ArtifactStore.manifest(in: directory)
        guard let library = manifest?.library, let configText = manifest?.config else {
            throw PipelineError.stage("serve", "models/\(name)/\((directory as NSString).lastPathComponent) has no library or config in its metadata")
        }
        // The file name only: libraries load from the plugin directories (older manifests hold a path).
        try plugins.loadOrReload(name: name, library: (library as NSString).lastPathComponent, config: Array(configText.utf8)) { instance in
            try instance.load(from: directory)
        }
        return "models/\(name)/\((directory as NSString).lastPathComponent)"
    }
}

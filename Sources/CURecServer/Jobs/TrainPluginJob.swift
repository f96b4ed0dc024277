import CURecJobs
import CURecPluginHost
import Foundation

/// Job kind `train`: trains a plugin library with a config on the daemon's dataset and saves
/// the result as a new immutable artifact version `models/<name>/vN`; with `serve=true`
/// the serving instance `name` is then loaded or hot-reloaded from it, and the version is
/// recorded as one to serve, so every daemon following the model registry loads it too.
/// Parameters: ``Parameters``.
///
/// Resumable: the plugin checkpoints into the job's checkpoint directory (ABI 1.1), so a
/// job interrupted by a crash continues where its last checkpoint left it.
struct TrainPluginJob: JobKind {
    let plugins: PluginHost
    let data: ServingData?
    let artifacts: ArtifactStore
    let preparer: PluginPreparer

    /// The parameters of `train`.
    enum Parameters {
        static let library: JobParameter<String> = .required(
            "library", doc: "the plugin library: a file name in the plugin directories (`CURecBPR` or `libCURecBPR.so`), never a path")
        static let config: JobParameter<String> = .text(
            "config", default: "", doc: "the plugin config text (JSON for the bundled Swift plugins)")
        static let configBase64: JobParameter<String?> = .optionalText(
            "config_base64", rule: JobParameterTextRule("be base64", typeName: "base64") { Data(base64Encoded: $0) != nil },
            defaultText: "none", doc: "the plugin config as base64 bytes (a serialized protobuf for C plugins); instead of `config`")
        static let name: JobParameter<String?> = .optionalText(
            "name", rule: .publishableName(by: "train"), defaultText: "from the library (`CURecBPR`: `bpr`)",
            doc: "the model and instance name: the result is `models/<name>/vN`")
        static let serve: JobParameter<Bool> = .boolean(
            "serve", default: false, doc: "then load or hot-reload the serving instance `name` from the new version")
        static let isolation: JobParameter<String> = .choice(
            "isolation", ["in_process", "process"], default: "in_process",
            doc: "where the plugin trains and then serves: in the daemon, or in its own worker process (docs/isolation.md)")
        static let schema = JobParameterSchema(kind: TrainPluginJob.kindName, [library, config, configBase64, name, serve, isolation])
    }

    static let kindName = "train"
    var name: String { Self.kindName }
    var parameters: JobParameterSchema { Parameters.schema }

    /// The config bytes: `config_base64` decoded when given, else the `config` text.
    static func configBytes(_ values: JobParameterValues) -> [UInt8] {
        if let encoded = values[Parameters.configBase64], let bytes = Data(base64Encoded: encoded) { return [UInt8](bytes) }
        return Array(values[Parameters.config].utf8)
    }

    func validate(_ values: JobParameterValues) throws(JobError) {
        if values.isGiven(Parameters.configBase64), values.isGiven(Parameters.config) {
            throw .invalidParameter("train: give `config` or `config_base64`, not both")
        }
        do {
            _ = try plugins.resolve(library: values[Parameters.library])
        } catch {
            throw .invalidParameter("train: \(error)")
        }
        let model = Self.modelName(values)
        guard ResourceName.isValid(model), PublishedName.isAvailable(model, to: Self.kindName) else {
            throw .invalidParameter("train: the model name \(ResourceName.quoted(model)) taken from the library must "
                                    + "\(ResourceName.requirement), and not a name the daemon publishes; give `name`")
        }
        guard data != nil else {
            throw .invalidParameter("train: the daemon has no dataset loaded (run scripts/fetch-data and restart)")
        }
    }

    static func modelName(_ values: JobParameterValues) -> String {
        if let name = values[Parameters.name] { return name }
        var base = (values[Parameters.library] as NSString).lastPathComponent
        if base.hasPrefix("lib") { base.removeFirst(3) }
        if base.hasSuffix(".so") { base.removeLast(3) }
        if base.hasPrefix("CURec") { base.removeFirst(5) }
        return base.lowercased()
    }

    func run(_ context: JobContext) throws -> JobOutcome {
        guard let data else { throw JobError.invalidParameter("no dataset loaded") }
        let values = context.values
        let library = values[Parameters.library]
        let config = Self.configBytes(values)
        let name = Self.modelName(values)
        context.progress(stage: "load", step: 0, total: 1)
        let isolation: PluginIsolation = values[Parameters.isolation] == "process" ? .process(WorkerLimits()) : .inProcess
        let instance = try plugins.makeInstance(name: name, library: library, config: config, isolation: isolation)
        let description = instance.describe()
        context.log("training \(description.pluginName) \(description.pluginVersion) as '\(name)'")
        var lastMetrics: [String: Double] = [:]
        do {
            try instance.train(
                data.trainingData(), checkpointDirectory: context.checkpointDirectory,
                progress: { step, total, metricsJSON in
                    let metrics = PluginProgressMetrics.parse(metricsJSON)
                    lastMetrics.merge(metrics) { _, new in new }
                    context.progress(stage: "train", step: step, total: total, metrics: metrics)
                },
                isCancelled: { context.isCancelled })
        } catch {
            // The plugin returned CUREC_STATUS_CANCELLED because the job was cancelled.
            if error.isCancellation || context.isCancelled { throw JobCancelled() }
            throw error
        }
        context.progress(stage: "save", step: 0, total: 1)
        let fingerprint = PluginPreparer.fingerprint(config)
        var manifest = ArtifactManifest.pluginState(description, library: instance.libraryPath,
                                                    configFingerprint: fingerprint, dataset: data.dataset.name)
        manifest.job = context.id
        // With the config, any daemon can serve this version from its manifest alone.
        manifest.setConfig(config)
        let directory = try artifacts.addVersion(of: name, manifest: manifest, serve: values[Parameters.serve]) { staging in
            try instance.save(to: staging)
        }
        let relative = "models/\(name)/\((directory as NSString).lastPathComponent)"
        context.log("saved \(relative)")
        if values[Parameters.serve] {
            context.progress(stage: "serve", step: 0, total: 1)
            // The trained instance itself serves (a plugin need not be able to load its state).
            plugins.serve(instance, library: library, config: config)
            context.log("now serving '\(name)' from \(relative)")
        }
        try? FileManager.default.removeItem(atPath: context.checkpointDirectory)
        return JobOutcome(metrics: lastMetrics, artifact: relative)
    }
}

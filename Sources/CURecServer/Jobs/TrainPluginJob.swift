import CURecJobs
import CURecPluginHost
import Foundation

/// Job kind `train`: trains a plugin library with a config on the daemon's dataset and saves
/// the result as a new immutable artifact version `models/<name>/vN`; with `serve=true`
/// the serving instance `name` is then loaded or hot-reloaded from it.
///
/// Parameters: `library` (required: a library name or path), `config` (plugin config text,
/// default empty), `name` (model and instance name, default derived from the library),
/// `serve` (`true`/`false`, default false).
///
/// Resumable: the plugin checkpoints into the job's checkpoint directory (ABI 1.1), so a
/// job interrupted by a crash continues where its last checkpoint left it.
struct TrainPluginJob: JobKind {
    let plugins: PluginHost
    let data: ServingData?
    let artifacts: ArtifactStore
    let preparer: PluginPreparer

    var name: String { "train" }
    var parameterSummary: String { "library (required), config, name, serve=true|false" }

    func validate(_ parameters: [String: String]) throws(JobError) {
        let known: Set = ["library", "config", "name", "serve"]
        if let unknown = parameters.keys.first(where: { !known.contains($0) }) {
            throw .invalidParameter("train: unknown parameter '\(unknown)'; expected \(parameterSummary)")
        }
        guard let library = parameters["library"], !library.isEmpty else {
            throw .invalidParameter("train: parameter 'library' is required (e.g. CURecBPR); expected \(parameterSummary)")
        }
        do {
            _ = try plugins.resolve(library: library)
        } catch {
            throw .invalidParameter("train: \(error)")
        }
        if let serve = parameters["serve"], serve != "true", serve != "false" {
            throw .invalidParameter("train: parameter 'serve' must be true or false, not '\(serve)'")
        }
        if let name = parameters["name"], name.isEmpty || name.contains("/") || name.hasPrefix(".") {
            throw .invalidParameter("train: parameter 'name' must be a plain name (no '/', not starting with '.')")
        }
        guard data != nil else {
            throw .invalidParameter("train: the daemon has no dataset loaded (run scripts/fetch-data and restart)")
        }
    }

    static func modelName(_ parameters: [String: String]) -> String {
        if let name = parameters["name"], !name.isEmpty { return name }
        var base = ((parameters["library"] ?? "model") as NSString).lastPathComponent
        if base.hasPrefix("lib") { base.removeFirst(3) }
        if base.hasSuffix(".so") { base.removeLast(3) }
        if base.hasPrefix("CURec") { base.removeFirst(5) }
        return base.lowercased()
    }

    func run(_ context: JobContext) throws -> JobOutcome {
        guard let data else { throw JobError.invalidParameter("no dataset loaded") }
        let parameters = context.parameters
        let library = parameters["library"] ?? ""
        let config = Array((parameters["config"] ?? "").utf8)
        let name = Self.modelName(parameters)
        context.progress(stage: "load", step: 0, total: 1)
        let instance = try plugins.makeInstance(name: name, library: library, config: config)
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
        let directory = try artifacts.addVersion(of: name, metadata: [
            "plugin": description.pluginName, "plugin_version": description.pluginVersion,
            "config_fingerprint": fingerprint, "dataset": data.dataset.name, "library": instance.libraryPath,
            "job": context.id,
        ]) { staging in try instance.save(to: staging) }
        let relative = "models/\(name)/\((directory as NSString).lastPathComponent)"
        context.log("saved \(relative)")
        if parameters["serve"] == "true" {
            context.progress(stage: "serve", step: 0, total: 1)
            try plugins.loadOrReload(name: name, library: library, config: config) { instance in
                try instance.load(from: directory)
            }
            context.log("now serving '\(name)' from \(relative)")
        }
        try? FileManager.default.removeItem(atPath: context.checkpointDirectory)
        return JobOutcome(metrics: lastMetrics, artifact: relative)
    }
}

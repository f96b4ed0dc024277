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
        static let callTimeLimit: JobParameter<Int?> = .optionalInteger(
            "call_time_limit_ms", in: 1...3_600_000, defaultText: "10000",
            doc: "`isolation=process` only: a call of the served instance that takes longer kills and restarts its worker")
        static let memoryLimit: JobParameter<Int?> = .optionalInteger(
            "memory_limit_mb", in: 64...(1 << 22), defaultText: "none",
            doc: "`isolation=process` only: the worker's address-space limit (RLIMIT_AS) in MiB")
        static let cpuLimit: JobParameter<Int?> = .optionalInteger(
            "cpu_limit_seconds", in: 1...1_000_000_000, defaultText: "none",
            doc: "`isolation=process` only: the worker's CPU-time limit (RLIMIT_CPU) in seconds")
        static let schema = JobParameterSchema(kind: TrainPluginJob.kindName, [
            library, config, configBase64, name, serve, isolation, callTimeLimit, memoryLimit, cpuLimit,
        ])

        /// The parameters that ask for `isolation` with its worker's limits, so the instance
        /// a job makes runs as the Load request or config entry that asked for it.
        static func values(for isolation: PluginIsolation) -> [String: String] {
            var values = [Self.isolation.name: isolation.name]
            guard case .process(let limits) = isolation else { return values }
            let (seconds, attoseconds) = limits.callTimeLimit.components
            values[callTimeLimit.name] = String(max(1, seconds * 1000 + attoseconds / 1_000_000_000_000_000))
            if let bytes = limits.memoryBytes { values[memoryLimit.name] = String(max(64, bytes >> 20)) }
            if let cpuSeconds = limits.cpuSeconds { values[cpuLimit.name] = String(min(cpuSeconds, 1_000_000_000)) }
            return values
        }

        /// Where the job's instance runs, with the limits the parameters give.
        static func isolation(_ values: JobParameterValues) -> PluginIsolation {
            guard values[isolation] == "process" else { return .inProcess }
            var limits = WorkerLimits()
            if let milliseconds = values[callTimeLimit] { limits.callTimeLimit = .milliseconds(milliseconds) }
            if let megabytes = values[memoryLimit] { limits.memoryBytes = UInt64(megabytes) << 20 }
            if let seconds = values[cpuLimit] { limits.cpuSeconds = UInt64(seconds) }
            return .process(limits)
        }
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
        if values[Parameters.isolation] != "process",
           [Parameters.callTimeLimit, Parameters.memoryLimit, Parameters.cpuLimit].contains(where: { values.isGiven($0) }) {
            throw .invalidParameter("train: call_time_limit_ms, memory_limit_mb and cpu_limit_seconds need isolation=process")
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
        let isolation = Parameters.isolation(values)
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

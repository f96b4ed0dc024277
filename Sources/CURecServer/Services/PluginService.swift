import CURecJobs
import CURecPluginHost
import CURecProto
import CURecRPC
import Dispatch
import Foundation

/// `curec.v1.PluginService` on the wire: each method forwards to ``PluginOperations``.
struct PluginService: Curec_V1_PluginServiceHandler {
    let operations: PluginOperations

    func list(_ request: Curec_V1_ListPluginsRequest, context: ServerContext) throws -> Curec_V1_ListPluginsResponse {
        operations.list(request)
    }

    func load(_ request: Curec_V1_LoadPluginRequest, context: ServerContext) async throws -> Curec_V1_PluginStatus {
        try await operations.load(request)
    }

    func unload(_ request: Curec_V1_UnloadPluginRequest, context: ServerContext) async throws -> Curec_V1_UnloadPluginResponse {
        try operations.unload(request)
    }

    func reload(_ request: Curec_V1_ReloadPluginRequest, context: ServerContext) async throws -> Curec_V1_PluginStatus {
        try await operations.reload(request)
    }
}

/// List, load, unload and hot-reload plugin instances. Loading and reloading block (dlopen,
/// reading saved state): they run off the I/O loop and the cooperative pool. Training never
/// runs here: when no saved state matches, it is a `train` job, which the call waits for
/// and cancels when the caller goes.
struct PluginOperations: Sendable {
    let plugins: PluginHost
    let preparer: PluginPreparer
    let jobs: JobManager
    /// Loads versions other daemons publish (a shared registry): a `train` job may run on any.
    var follower: ModelFollower? = nil

    /// The loaded instances and the libraries that could be loaded.
    func list(_ request: Curec_V1_ListPluginsRequest) -> Curec_V1_ListPluginsResponse {
        var response = Curec_V1_ListPluginsResponse()
        response.plugins = plugins.list().map { Self.status($0) }
        response.availableLibraries = plugins.availableLibraries()
        return response
    }

    /// Checks an instance name a client gives for a new instance.
    static func checkNewName(_ name: String) throws(ServingError) {
        guard ResourceName.isValid(name) else {
            throw .invalidArgument("name \(ResourceName.quoted(name)) must \(ResourceName.requirement)")
        }
        guard PublishedName.isAvailable(name, to: nil) else {
            throw .invalidArgument("name '\(name)' is reserved: the daemon publishes it itself (reserved: \(PublishedName.list))")
        }
    }

    /// Checks a library name a client gives (the host checks it again when resolving).
    static func checkLibrary(_ library: String) throws(ServingError) {
        guard PluginLibraryName.isPlain(library) else {
            throw .invalidArgument(PluginHostError.invalidLibraryName(library).description)
        }
    }

    /// The checks of a load request that need no work.
    func checkLoad(_ request: Curec_V1_LoadPluginRequest) throws(ServingError) {
        guard !request.name.isEmpty else { throw .invalidArgument("name is empty; name the new plugin instance") }
        try Self.checkNewName(request.name)
        guard !request.library.isEmpty else {
            throw .invalidArgument("library is empty; give a library file name from PluginService.List")
        }
        try Self.checkLibrary(request.library)
        _ = try Self.isolation(of: request)
    }

    /// Where a Load request asks the instance to run. Unknown enum values and a time limit
    /// without process isolation are refused.
    static func isolation(of request: Curec_V1_LoadPluginRequest) throws(ServingError) -> PluginIsolation {
        switch request.isolation {
        case .unspecified, .inProcess:
            guard request.callTimeLimitMs == 0 else {
                throw .invalidArgument("call_time_limit_ms applies only with isolation PLUGIN_ISOLATION_PROCESS")
            }
            return .inProcess
        case .process:
            var limits = WorkerLimits()
            if request.callTimeLimitMs != 0 {
                guard request.callTimeLimitMs <= 3_600_000 else {
                    throw .invalidArgument("call_time_limit_ms \(request.callTimeLimitMs) is above the maximum of 3600000 (one hour)")
                }
                limits.callTimeLimit = .milliseconds(Int(request.callTimeLimitMs))
            }
            return .process(limits)
        case .UNRECOGNIZED(let value):
            throw .invalidArgument("isolation \(value) is not a PluginIsolation value; use PLUGIN_ISOLATION_IN_PROCESS or PLUGIN_ISOLATION_PROCESS")
        }
    }

    /// Loads a new instance from its saved state, or trains it as a job when `train` is set
    /// and no saved state matches (returning once the job serves it).
    func load(_ request: Curec_V1_LoadPluginRequest) async throws -> Curec_V1_PluginStatus {
        try checkLoad(request)
        let batching = request.hasDynamicBatching ? try Self.batching(request.dynamicBatching) : nil
        let config = [UInt8](request.config)
        let train = request.train && preparer.canTrain
        let isolation = try Self.isolation(of: request)
        let plugins = self.plugins, preparer = self.preparer, name = request.name, library = request.library
        let loaded: PluginInstance? = try await runBlocking {
            do {
                return try plugins.load(name: name, library: library, config: config, isolation: isolation,
                                        batching: batching) { instance in
                    if !preparer.loadSaved(instance, config: config), train { throw TrainingNeeded() }
                }
            } catch is TrainingNeeded {
                return nil
            }
        }
        if let loaded { return Self.status(loaded) }
        // The job's instance is made with the batching just checked.
        plugins.configureBatching(name: name, batching)
        return try await trainAsJob(name: name, library: library, config: config, isolation: isolation)
    }

    func unload(_ request: Curec_V1_UnloadPluginRequest) throws -> Curec_V1_UnloadPluginResponse {
        guard !request.name.isEmpty else { throw ServingError.invalidArgument("name is empty") }
        try plugins.unload(name: request.name)
        return Curec_V1_UnloadPluginResponse()
    }

    func checkReload(_ request: Curec_V1_ReloadPluginRequest) throws(ServingError) {
        guard !request.name.isEmpty else { throw .invalidArgument("name is empty") }
        guard ResourceName.isValid(request.name) else {
            throw .invalidArgument("name \(ResourceName.quoted(request.name)) must \(ResourceName.requirement)")
        }
        if !request.library.isEmpty { try Self.checkLibrary(request.library) }
    }

    /// Swaps an instance for a new one of the same or another library, loaded from its saved
    /// state; an instance that was trained and has no saved state for the new library or
    /// config is trained as a job first (the old one serves meanwhile).
    func reload(_ request: Curec_V1_ReloadPluginRequest) async throws -> Curec_V1_PluginStatus {
        try checkReload(request)
        let config: [UInt8]? = request.hasConfig ? [UInt8](request.config) : nil
        guard let current = plugins.instance(named: request.name) else {
            throw PluginHostError.instanceNotFound(request.name)
        }
        let train = current.describe().isTrained && preparer.canTrain
        let effectiveConfig = config ?? plugins.config(of: request.name) ?? []
        let library = request.library.isEmpty ? plugins.libraryName(of: request.name) : request.library
        let plugins = self.plugins, preparer = self.preparer, name = request.name
        let reloaded: PluginInstance? = try await runBlocking {
            do {
                return try plugins.reload(name: name, library: library, config: config) { instance in
                    if !preparer.loadSaved(instance, config: effectiveConfig), train { throw TrainingNeeded() }
                }
            } catch is TrainingNeeded {
                return nil
            }
        }
        if let reloaded { return Self.status(reloaded) }
        guard let library else { throw ServingError.internalFailure("the library of '\(name)' is not known; reload it naming one") }
        return try await trainAsJob(name: name, library: library, config: effectiveConfig, isolation: current.isolation)
    }

    /// Submits a `train` job that trains `library` with `config` and serves it as `name`,
    /// waits for it, and returns the served instance. The job is cancelled when the caller
    /// goes (cancellation, reset, deadline); it can also be cancelled through JobService.
    func trainAsJob(name: String, library: String, config: [UInt8],
                    isolation: PluginIsolation = .inProcess) async throws -> Curec_V1_PluginStatus {
        var parameters = [
            TrainPluginJob.Parameters.library.name: library,
            TrainPluginJob.Parameters.name.name: name, TrainPluginJob.Parameters.serve.name: "true",
        ]
        parameters.merge(TrainPluginJob.Parameters.values(for: isolation)) { _, limit in limit }
        if let text = String(validating: config, as: UTF8.self) {
            if !text.isEmpty { parameters[TrainPluginJob.Parameters.config.name] = text }
        } else {
            parameters[TrainPluginJob.Parameters.configBase64.name] = Data(config).base64EncodedString()
        }
        let record = try jobs.submit(kind: TrainPluginJob.kindName, parameters: parameters)
        let jobs = self.jobs
        let events = try jobs.watch(record.id)
        let final = await withTaskCancellationHandler {
            var last: CURecJobs.JobEvent? = nil
            for await event in events {
                last = event
                if event.isFinal { break }
            }
            return last
        } onCancel: {
            _ = try? jobs.cancel(record.id)
        }
        guard let final, final.isFinal else {
            _ = try? jobs.cancel(record.id)
            throw CancellationError()
        }
        switch final.state {
        case .succeeded:
            if let follower {
                // Another daemon may have run the job: serve what it published before answering.
                _ = try await runBlocking { follower.catchUp() }
            }
            guard let instance = plugins.instance(named: name) else {
                throw ServingError.internalFailure("training job \(record.id) succeeded but '\(name)' is not loaded")
            }
            var status = Self.status(instance)
            status.jobID = record.id
            return status
        case .cancelled:
            throw RPCError(.cancelled, "training job \(record.id) was cancelled")
        default:
            throw ServingError.failedPrecondition("training job \(record.id) failed: \(final.error)")
        }
    }

    /// A Load request's dynamic batching, checked against the bounds every plugin shares (the
    /// plugin's own maximum is checked when the instance is made).
    static func batching(_ message: Curec_V1_DynamicBatching) throws(PluginHostError) -> DynamicBatchingConfiguration {
        let batching = DynamicBatchingConfiguration(
            maxQueueDelayMicroseconds: Int(message.maxQueueDelayMicroseconds),
            preferredBatchSizes: message.preferredBatchSize.map { Int($0) },
            maxBatchSize: Int(message.maxBatchSize),
            maxQueueSize: message.maxQueueSize == 0 ? DynamicBatchingConfiguration().maxQueueSize : Int(message.maxQueueSize))
        _ = try batching.validated(pluginMaximum: DynamicBatchingConfiguration.Bounds.batchSize.upperBound)
        return batching
    }

    static func status(_ instance: PluginInstance) -> Curec_V1_PluginStatus {
        status(PluginHost.Status(name: instance.name, library: instance.libraryPath,
                                 generation: instance.generation, description: instance.describe(),
                                 isolation: instance.isolation, readiness: instance.readiness,
                                 batching: instance.batching))
    }

    /// The wire form of a (resolved) dynamic batching.
    static func message(_ batching: DynamicBatchingConfiguration) -> Curec_V1_DynamicBatching {
        .with {
            $0.maxQueueDelayMicroseconds = UInt32(batching.maxQueueDelayMicroseconds)
            $0.preferredBatchSize = batching.preferredBatchSizes.map { UInt32($0) }
            $0.maxBatchSize = UInt32(batching.maxBatchSize)
            $0.maxQueueSize = UInt32(batching.maxQueueSize)
        }
    }

    static func status(_ status: PluginHost.Status) -> Curec_V1_PluginStatus {
        .with {
            $0.name = status.name
            $0.pluginName = status.description.pluginName
            $0.pluginVersion = status.description.pluginVersion
            $0.kind = status.description.kind == .recommender ? .recommender : .rewardModel
            $0.library = status.library
            $0.trained = status.description.isTrained
            $0.generation = status.generation
            $0.itemFeatureDim = UInt32(status.description.itemFeatureDimension)
            $0.reasonEmbeddingDim = UInt32(status.description.reasonEmbeddingDimension)
            $0.isolation = status.isolation == .inProcess ? .inProcess : .process
            switch status.readiness {
            case .serving: $0.readiness = .serving
            case .restarting(let reason):
                $0.readiness = .restarting
                $0.readinessReason = reason
            case .failed(let reason):
                $0.readiness = .failed
                $0.readinessReason = reason
            }
            $0.maxBatchSize = UInt32(status.description.maxBatchSize)
            if let batching = status.batching { $0.dynamicBatching = Self.message(batching) }
        }
    }
}

/// Runs blocking work (training, dlopen, generation) on a Dispatch thread, off the
/// cooperative pool; its error is rethrown as ``ServingError/classified(_:)`` gives it.
func runBlocking<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        DispatchQueue.global().async {
            do {
                continuation.resume(returning: try work())
            } catch {
                continuation.resume(throwing: ServingError.classified(error))
            }
        }
    }
}

/// Thrown inside a load's preparation when the instance needs training, which runs as a job.
private struct TrainingNeeded: Error {}

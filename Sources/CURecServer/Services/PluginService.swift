import CURecPluginHost
import CURecProto
import CURecRPC
import Dispatch

/// `curec.v1.PluginService` on the wire: each method forwards to ``PluginOperations``.
struct PluginService: Curec_V1_PluginServiceHandler {
    let operations: PluginOperations

    func list(_ request: Curec_V1_ListPluginsRequest, context: ServerContext) throws -> Curec_V1_ListPluginsResponse {
        operations.list(request)
    }

    func load(_ request: Curec_V1_LoadPluginRequest, context: ServerContext) async throws -> Curec_V1_PluginStatus {
        try operations.checkLoad(request)
        return try await runBlocking { try operations.load(request) }
    }

    func unload(_ request: Curec_V1_UnloadPluginRequest, context: ServerContext) async throws -> Curec_V1_UnloadPluginResponse {
        try operations.unload(request)
    }

    func reload(_ request: Curec_V1_ReloadPluginRequest, context: ServerContext) async throws -> Curec_V1_PluginStatus {
        try operations.checkReload(request)
        return try await runBlocking { try operations.reload(request) }
    }
}

/// List, load, unload and hot-reload plugin instances. Loading and reloading block (dlopen,
/// training): run them off the I/O loop and the cooperative pool.
struct PluginOperations: Sendable {
    let plugins: PluginHost
    let preparer: PluginPreparer

    /// The loaded instances and the libraries that could be loaded.
    func list(_ request: Curec_V1_ListPluginsRequest) -> Curec_V1_ListPluginsResponse {
        var response = Curec_V1_ListPluginsResponse()
        response.plugins = plugins.list().map { Self.status($0) }
        response.availableLibraries = plugins.availableLibraries()
        return response
    }

    /// The checks of a load request that need no work.
    func checkLoad(_ request: Curec_V1_LoadPluginRequest) throws(ServingError) {
        guard !request.name.isEmpty else { throw .invalidArgument("name is empty; name the new plugin instance") }
        guard !request.library.isEmpty else {
            throw .invalidArgument("library is empty; give a library file name from PluginService.List or a path")
        }
    }

    /// Loads a new instance, loading its saved state or training it. Blocking.
    func load(_ request: Curec_V1_LoadPluginRequest) throws -> Curec_V1_PluginStatus {
        try checkLoad(request)
        let config = [UInt8](request.config)
        let instance = try plugins.load(name: request.name, library: request.library, config: config) { instance in
            try preparer.prepare(instance, config: config, train: request.train)
        }
        return Self.status(instance)
    }

    func unload(_ request: Curec_V1_UnloadPluginRequest) throws -> Curec_V1_UnloadPluginResponse {
        guard !request.name.isEmpty else { throw ServingError.invalidArgument("name is empty") }
        try plugins.unload(name: request.name)
        return Curec_V1_UnloadPluginResponse()
    }

    func checkReload(_ request: Curec_V1_ReloadPluginRequest) throws(ServingError) {
        guard !request.name.isEmpty else { throw .invalidArgument("name is empty") }
    }

    /// Swaps an instance for a new one of the same or another library, prepared as the old
    /// one was (trained if it was). Blocking.
    func reload(_ request: Curec_V1_ReloadPluginRequest) throws -> Curec_V1_PluginStatus {
        try checkReload(request)
        let config: [UInt8]? = request.hasConfig ? [UInt8](request.config) : nil
        guard let current = plugins.instance(named: request.name) else {
            throw PluginHostError.instanceNotFound(request.name)
        }
        let trained = current.describe().isTrained
        let effectiveConfig = config ?? plugins.config(of: request.name) ?? []
        let instance = try plugins.reload(name: request.name, library: request.library.isEmpty ? nil : request.library,
                                          config: config) { instance in
            try preparer.prepare(instance, config: effectiveConfig, train: trained)
        }
        return Self.status(instance)
    }

    static func status(_ instance: PluginInstance) -> Curec_V1_PluginStatus {
        status(PluginHost.Status(name: instance.name, library: instance.libraryPath,
                                 generation: instance.generation, description: instance.describe()))
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

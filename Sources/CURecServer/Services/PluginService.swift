import CURecPluginHost
import CURecProto
import CURecRPC
import Dispatch

/// `curec.v1.PluginService`: list, load, unload and hot-reload plugin instances.
struct PluginService: RPCService {
    let plugins: PluginHost
    let preparer: PluginPreparer

    func register(into router: inout RPCRouter) {
        router.registerInlineUnary(Curec_V1_PluginService.Method.list) { _, _ in
            var response = Curec_V1_ListPluginsResponse()
            response.plugins = plugins.list().map { Self.status($0) }
            response.availableLibraries = plugins.availableLibraries()
            return response
        }
        router.registerUnary(Curec_V1_PluginService.Method.load) { request, _ in
            guard !request.name.isEmpty else { throw RPCError(.invalidArgument, "name is empty; name the new plugin instance") }
            guard !request.library.isEmpty else {
                throw RPCError(.invalidArgument, "library is empty; give a library file name from PluginService.List or a path")
            }
            let config = [UInt8](request.config)
            let instance = try await runBlocking {
                try plugins.load(name: request.name, library: request.library, config: config) { instance in
                    try preparer.prepare(instance, config: config, train: request.train)
                }
            }
            return Self.status(instance)
        }
        router.registerUnary(Curec_V1_PluginService.Method.unload) { request, _ in
            guard !request.name.isEmpty else { throw RPCError(.invalidArgument, "name is empty") }
            do {
                try plugins.unload(name: request.name)
            } catch {
                throw RPCError.from(error)
            }
            return Curec_V1_UnloadPluginResponse()
        }
        router.registerUnary(Curec_V1_PluginService.Method.reload) { request, _ in
            guard !request.name.isEmpty else { throw RPCError(.invalidArgument, "name is empty") }
            let config: [UInt8]? = request.hasConfig ? [UInt8](request.config) : nil
            let instance = try await runBlocking {
                guard let current = plugins.instance(named: request.name) else {
                    throw PluginHostError.instanceNotFound(request.name)
                }
                let trained = current.describe().isTrained
                let effectiveConfig = config ?? plugins.config(of: request.name) ?? []
                return try plugins.reload(name: request.name, library: request.library.isEmpty ? nil : request.library,
                                          config: config) { instance in
                    try preparer.prepare(instance, config: effectiveConfig, train: trained)
                }
            }
            return Self.status(instance)
        }
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

/// Runs blocking work (training, dlopen) on a Dispatch thread, off the cooperative pool,
/// mapping failures to gRPC errors.
func runBlocking<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        DispatchQueue.global().async {
            do {
                continuation.resume(returning: try work())
            } catch {
                continuation.resume(throwing: RPCError.from(error))
            }
        }
    }
}

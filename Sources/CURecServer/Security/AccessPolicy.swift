import CURecProto
import CURecRPC

/// A permission a bearer token can carry.
public enum AccessScope: String, Sendable, Hashable, CaseIterable, Codable {
    /// Scoring and recommendation: RecommendService, RewardService; the inference protocol's
    /// ModelInfer and what a scoring client reads first (ServerMetadata, ModelReady, ModelMetadata).
    case score
    /// Text generation: GenerationService.
    case generate
    /// Reading jobs, models and datasets: JobService Get/List/Watch, ModelService, DatasetService.List;
    /// the inference protocol's RepositoryIndex and ModelStatistics.
    case jobs
    /// Changing what the daemon runs: PluginService, job submission and cancellation, dataset
    /// upload; the inference protocol's RepositoryModelLoad and RepositoryModelUnload.
    case admin
}

/// What a call needs before it may run.
public enum AccessRequirement: Sendable, Hashable, CustomStringConvertible {
    /// Nothing: open to every client (health checks, unless configured otherwise).
    case open
    /// Any valid token, whatever its scopes (reflection, interop testing).
    case anyToken
    /// A valid token carrying this scope.
    case scope(AccessScope)

    public var description: String {
        switch self {
        case .open: return "open"
        case .anyToken: return "any token"
        case .scope(let scope): return "scope \(scope.rawValue)"
        }
    }
}

/// Which requirement each method of the daemon has, stated once per service from the
/// generated service descriptions, with the few methods that differ from their service named
/// by their generated descriptors. A method not listed here needs `admin` (closed by default).
public struct AccessPolicy: Sendable {
    /// The requirement of every method of a service, by fully-qualified service name.
    public let services: [String: AccessRequirement]
    /// Methods whose requirement differs from their service's, by `:path`.
    public let methods: [String: AccessRequirement]

    /// The daemon's policy; `healthRequiresToken` closes the health service too.
    public static func daemon(healthRequiresToken: Bool = false) -> AccessPolicy {
        let services: [String: AccessRequirement] = [
            Grpc_Health_V1_Health.name: healthRequiresToken ? .anyToken : .open,
            Grpc_Testing_TestService.name: .anyToken,
            Curec_V1_RecommendService.name: .scope(.score),
            Curec_V1_RewardService.name: .scope(.score),
            Curec_V1_GenerationService.name: .scope(.generate),
            Curec_V1_JobService.name: .scope(.jobs),
            Curec_V1_ModelService.name: .scope(.jobs),
            Curec_V1_DatasetService.name: .scope(.jobs),
            Curec_V1_PluginService.name: .scope(.admin),
            // Closed by default; every method is stated below.
            Inference_GRPCInferenceService.name: .scope(.admin),
        ]
        // Liveness and readiness are open as health checks are.
        let probe: AccessRequirement = healthRequiresToken ? .anyToken : .open
        var methods: [RPCMethodDescriptor: AccessRequirement] = [
            Curec_V1_JobService.Method.submit.descriptor: .scope(.admin),
            Curec_V1_JobService.Method.cancel.descriptor: .scope(.admin),
            Curec_V1_DatasetService.Method.upload.descriptor: .scope(.admin),
            Inference_GRPCInferenceService.Method.serverLive.descriptor: probe,
            Inference_GRPCInferenceService.Method.serverReady.descriptor: probe,
            Inference_GRPCInferenceService.Method.serverMetadata.descriptor: .scope(.score),
            Inference_GRPCInferenceService.Method.modelReady.descriptor: .scope(.score),
            Inference_GRPCInferenceService.Method.modelMetadata.descriptor: .scope(.score),
            Inference_GRPCInferenceService.Method.modelInfer.descriptor: .scope(.score),
            Inference_GRPCInferenceService.Method.modelStatistics.descriptor: .scope(.jobs),
            Inference_GRPCInferenceService.Method.repositoryIndex.descriptor: .scope(.jobs),
            Inference_GRPCInferenceService.Method.repositoryModelLoad.descriptor: .scope(.admin),
            Inference_GRPCInferenceService.Method.repositoryModelUnload.descriptor: .scope(.admin),
        ]
        for reflection in ReflectionService.servedMethods { methods[reflection] = .anyToken }
        return AccessPolicy(services: services,
                            methods: Dictionary(uniqueKeysWithValues: methods.map { ($0.key.path, $0.value) }))
    }

    /// Creates a policy from explicit tables.
    public init(services: [String: AccessRequirement], methods: [String: AccessRequirement]) {
        self.services = services
        self.methods = methods
    }

    /// What `method` needs.
    public func requirement(for method: RPCMethodDescriptor) -> AccessRequirement {
        methods[method.path] ?? services[method.service] ?? .scope(.admin)
    }

    /// Whether the policy states `method`'s requirement rather than falling back to `admin`.
    public func covers(_ method: RPCMethodDescriptor) -> Bool {
        methods[method.path] != nil || services[method.service] != nil
    }
}

import CURecProto
import CURecRPC

/// `inference.GRPCInferenceService` (the Open Inference Protocol, with Triton's repository
/// and statistics extensions) on the wire: each method forwards to ``InferenceOperations``.
///
/// Everything but loading and unloading runs inline on the I/O loop, as Score does: it reads
/// state or scores with a plugin, which is required to be fast.
struct InferenceService: Inference_GRPCInferenceServiceHandler {
    let operations: InferenceOperations

    func serverLive(_ request: Inference_ServerLiveRequest, context: ServerContext) throws -> Inference_ServerLiveResponse {
        .with { $0.live = true }
    }

    func serverReady(_ request: Inference_ServerReadyRequest, context: ServerContext) throws -> Inference_ServerReadyResponse {
        .with { $0.ready = operations.serverReady() }
    }

    func modelReady(_ request: Inference_ModelReadyRequest, context: ServerContext) throws -> Inference_ModelReadyResponse {
        let ready = try operations.modelReady(request)
        return .with { $0.ready = ready }
    }

    func serverMetadata(_ request: Inference_ServerMetadataRequest, context: ServerContext) throws -> Inference_ServerMetadataResponse {
        operations.serverMetadata()
    }

    func modelMetadata(_ request: Inference_ModelMetadataRequest, context: ServerContext) throws -> Inference_ModelMetadataResponse {
        try operations.modelMetadata(request)
    }

    func modelInfer(_ request: Inference_ModelInferRequest, context: ServerContext) throws -> Inference_ModelInferResponse {
        try operations.infer(request)
    }

    func modelStatistics(_ request: Inference_ModelStatisticsRequest, context: ServerContext) throws -> Inference_ModelStatisticsResponse {
        try operations.modelStatistics(request)
    }

    func repositoryIndex(_ request: Inference_RepositoryIndexRequest, context: ServerContext) throws -> Inference_RepositoryIndexResponse {
        try operations.repositoryIndex(request)
    }

    func repositoryModelLoad(_ request: Inference_RepositoryModelLoadRequest, context: ServerContext) async throws
        -> Inference_RepositoryModelLoadResponse
    {
        try await operations.repositoryModelLoad(request)
    }

    func repositoryModelUnload(_ request: Inference_RepositoryModelUnloadRequest, context: ServerContext) async throws
        -> Inference_RepositoryModelUnloadResponse
    {
        try operations.repositoryModelUnload(request)
    }
}

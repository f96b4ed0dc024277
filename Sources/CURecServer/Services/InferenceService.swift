import CURecProto
import CURecRPC

/// `inference.GRPCInferenceService` (the Open Inference Protocol, with Triton's repository
/// and statistics extensions) on the wire: each method forwards to ``InferenceOperations``.
///
/// Everything but loading and unloading runs inline on the I/O loop, as Score does: it reads
/// state or scores with a plugin, which is required to be fast. ModelInfer of a model in a
/// worker process declines the loop and suspends until the worker replies.
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

    /// Inference on the calling thread, for a model in this process. The registration below
    /// sends a model in a worker process to ``InferenceOperations/infer(_:)`` instead.
    func modelInfer(_ request: Inference_ModelInferRequest, context: ServerContext) throws -> Inference_ModelInferResponse {
        guard let response = try operations.inferUnlessWaiting(request) else {
            throw ServingError.internalFailure("model \(request.modelName.prefix(64)) runs in a worker process and is answered off the I/O loop")
        }
        return response
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

    /// The generated registration, except that ModelInfer declines to answer inline for a
    /// model in a worker process, and then suspends as a task until its worker replies.
    func register(into router: inout RPCRouter) {
        router.registerInlineUnary(Inference_GRPCInferenceService.Method.serverLive) { request, context in try serverLive(request, context: context) }
        router.registerInlineUnary(Inference_GRPCInferenceService.Method.serverReady) { request, context in try serverReady(request, context: context) }
        router.registerInlineUnary(Inference_GRPCInferenceService.Method.modelReady) { request, context in try modelReady(request, context: context) }
        router.registerInlineUnary(Inference_GRPCInferenceService.Method.serverMetadata) { request, context in try serverMetadata(request, context: context) }
        router.registerInlineUnary(Inference_GRPCInferenceService.Method.modelMetadata) { request, context in try modelMetadata(request, context: context) }
        router.registerInlineUnary(Inference_GRPCInferenceService.Method.modelInfer, handler: { request, _ in
            try operations.inferUnlessWaiting(request)
        }, deferred: { request, _ in
            try await operations.infer(request)
        })
        router.registerInlineUnary(Inference_GRPCInferenceService.Method.modelStatistics) { request, context in try modelStatistics(request, context: context) }
        router.registerInlineUnary(Inference_GRPCInferenceService.Method.repositoryIndex) { request, context in try repositoryIndex(request, context: context) }
        router.registerUnary(Inference_GRPCInferenceService.Method.repositoryModelLoad) { request, context in try await repositoryModelLoad(request, context: context) }
        router.registerUnary(Inference_GRPCInferenceService.Method.repositoryModelUnload) { request, context in try await repositoryModelUnload(request, context: context) }
    }

    func repositoryModelUnload(_ request: Inference_RepositoryModelUnloadRequest, context: ServerContext) async throws
        -> Inference_RepositoryModelUnloadResponse
    {
        try operations.repositoryModelUnload(request)
    }
}

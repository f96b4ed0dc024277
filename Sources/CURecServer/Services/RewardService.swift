import CURecPluginHost
import CURecProto
import CURecRPC

/// `curec.v1.RewardService` on the wire: forwards to ``RewardOperations``.
struct RewardService: Curec_V1_RewardServiceHandler {
    /// Nil when the daemon has no dataset: every call then fails with FAILED_PRECONDITION.
    let operations: RewardOperations?

    func score(_ request: Curec_V1_RewardRequest, context: ServerContext) async throws -> Curec_V1_RewardResponse {
        try await ServingError.requireDataset(operations).scoreSuspending(request)
    }

    func scoreReasons(_ request: Curec_V1_ScoreReasonsRequest, context: ServerContext) async throws
        -> Curec_V1_ScoreReasonsResponse
    {
        try await ServingError.requireDataset(operations).scoreReasons(request)
    }

    func embed(_ request: Curec_V1_EmbedRequest, context: ServerContext) async throws -> Curec_V1_EmbedResponse {
        try await ServingError.requireDataset(operations).embed(request)
    }
}

/// Scores (user, item, reason embedding) triples with a reward plugin.
struct RewardOperations: Sendable {
    let data: ServingData
    let plugins: PluginHost
    let defaultRewardModel: String
    /// The pipeline's reward on reason texts and the MiniLM encoder (ScoreReasons, Embed); nil
    /// when the daemon has no dataset corpus.
    var reasonReward: ServingReasonReward? = nil
    /// Per model and method series; nil when metrics are off.
    var metrics: ModelMetrics? = nil

    static let maxTriples = 4096

    /// The rewards of `request`'s triples, scored on the calling thread.
    func score(_ request: Curec_V1_RewardRequest) throws -> Curec_V1_RewardResponse {
        let requestStart = metrics == nil ? 0 : MonotonicClock.nanoseconds()
        let (instance, inputs) = try checkReward(request)
        var response = Curec_V1_RewardResponse()
        let series = metrics?.series(model: instance.name, method: "reward")
        response.rewards = try series.measure(since: requestStart, inferences: inputs.count) { try instance.scoreReward(inputs) }
        response.servedBy = instance.servedBy
        return response
    }

    /// The rewards of `request`'s triples; suspends while an isolated instance's worker computes.
    func scoreSuspending(_ request: Curec_V1_RewardRequest) async throws -> Curec_V1_RewardResponse {
        let requestStart = metrics == nil ? 0 : MonotonicClock.nanoseconds()
        let (instance, inputs) = try checkReward(request)
        var response = Curec_V1_RewardResponse()
        let series = metrics?.series(model: instance.name, method: "reward")
        response.rewards = try await series.measureSuspending(since: requestStart, inferences: inputs.count) {
            try await instance.scoreRewardSuspending(inputs)
        }
        response.servedBy = instance.servedBy
        return response
    }

    /// The checks of a reward request that need no scoring: the instance and its inputs.
    private func checkReward(_ request: Curec_V1_RewardRequest) throws -> (PluginInstance, [PluginInstance.RewardInput]) {
        guard !request.triples.isEmpty else { throw ServingError.invalidArgument("triples is empty; give at least one") }
        guard request.triples.count <= Self.maxTriples else {
            throw ServingError.invalidArgument("triples has \(request.triples.count) entries; at most \(Self.maxTriples) per call")
        }
        let name = request.plugin.isEmpty ? defaultRewardModel : request.plugin
        guard let instance = plugins.instance(named: name) else {
            throw ServingError.notFound("plugin '\(name)' is not loaded (see PluginService.List)")
        }
        let expected = instance.knownDescription.reasonEmbeddingDimension
        var inputs: [PluginInstance.RewardInput] = []
        inputs.reserveCapacity(request.triples.count)
        for (index, triple) in request.triples.enumerated() {
            let user = try data.user(triple.userID, field: "triples[\(index)].user_id")
            let item = try data.item(triple.itemID, field: "triples[\(index)].item_id")
            if expected > 0 && triple.reasonEmbedding.count != expected {
                throw ServingError.invalidArgument(
                    "triples[\(index)].reason_embedding has \(triple.reasonEmbedding.count) values; plugin '\(name)' expects \(expected)")
            }
            guard triple.reasonEmbedding.allSatisfy(\.isFinite) else {
                throw ServingError.invalidArgument("triples[\(index)].reason_embedding contains NaN or infinity")
            }
            inputs.append(.init(user: user, item: item, embedding: triple.reasonEmbedding))
        }
        return (instance, inputs)
    }
}

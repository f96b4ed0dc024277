import CURecPluginHost
import CURecProto
import CURecRPC

/// `curec.v1.RewardService`: scores (user, item, reason embedding) triples with a reward plugin.
struct RewardService: RPCService {
    let data: ServingData
    let plugins: PluginHost
    let defaultRewardModel: String

    static let maxTriples = 4096

    func register(into router: inout RPCRouter) {
        router.registerUnary(Curec_V1_RewardService.Method.score) { request, _ in try score(request) }
    }

    func score(_ request: Curec_V1_RewardRequest) throws(RPCError) -> Curec_V1_RewardResponse {
        guard !request.triples.isEmpty else { throw RPCError(.invalidArgument, "triples is empty; give at least one") }
        guard request.triples.count <= Self.maxTriples else {
            throw RPCError(.invalidArgument, "triples has \(request.triples.count) entries; at most \(Self.maxTriples) per call")
        }
        let name = request.plugin.isEmpty ? defaultRewardModel : request.plugin
        guard let instance = plugins.instance(named: name) else {
            throw RPCError(.notFound, "plugin '\(name)' is not loaded (see PluginService.List)")
        }
        let expected = instance.describe().reasonEmbeddingDimension
        var inputs: [PluginInstance.RewardInput] = []
        inputs.reserveCapacity(request.triples.count)
        for (index, triple) in request.triples.enumerated() {
            let user = try data.user(triple.userID, field: "triples[\(index)].user_id")
            let item = try data.item(triple.itemID, field: "triples[\(index)].item_id")
            if expected > 0 && triple.reasonEmbedding.count != expected {
                throw RPCError(.invalidArgument,
                               "triples[\(index)].reason_embedding has \(triple.reasonEmbedding.count) values; plugin '\(name)' expects \(expected)")
            }
            guard triple.reasonEmbedding.allSatisfy(\.isFinite) else {
                throw RPCError(.invalidArgument, "triples[\(index)].reason_embedding contains NaN or infinity")
            }
            inputs.append(.init(user: user, item: item, embedding: triple.reasonEmbedding))
        }
        var response = Curec_V1_RewardResponse()
        do {
            response.rewards = try instance.scoreReward(inputs)
        } catch {
            throw RPCError(error)
        }
        response.servedBy = RecommendService.servedBy(instance)
        return response
    }
}

import CURecPipeline
import CURecProto
import CURecRPC

/// `RewardService.ScoreReasons` and `RewardService.Embed`: the pipeline's reward of reasons
/// given as text, and MiniLM sentence embeddings. Both run their model off the I/O loop.
extension RewardOperations {
    private func textModels() throws(ServingError) -> ServingReasonReward {
        guard let reasonReward else {
            throw ServingError.failedPrecondition("reason scoring is unavailable: the daemon has no dataset corpus")
        }
        return reasonReward
    }

    func scoreReasons(_ request: Curec_V1_ScoreReasonsRequest) async throws -> Curec_V1_ScoreReasonsResponse {
        guard !request.reasons.isEmpty else { throw ServingError.invalidArgument("reasons is empty; give at least one") }
        guard request.reasons.count <= ServingReasonReward.maxReasons else {
            throw ServingError.invalidArgument("reasons has \(request.reasons.count) entries; at most \(ServingReasonReward.maxReasons) per call")
        }
        try ServingReasonReward.validate(request.reasons.map(\.text), field: { "reasons[\($0)].text" }, allowEmpty: true)
        var pairs: [(user: Int32, item: Int32, text: String)] = []
        for (index, reason) in request.reasons.enumerated() {
            let user = try data.user(reason.userID, field: "reasons[\(index)].user_id")
            let item = try data.item(reason.itemID, field: "reasons[\(index)].item_id")
            pairs.append((Int32(bitPattern: user), Int32(bitPattern: item), reason.text))
        }
        let rewarder = try await textModels().rewarder()
        let batch = pairs
        let scored = try await runBlocking { try rewarder.scorePairs(batch) }
        var response = Curec_V1_ScoreReasonsResponse()
        response.rewards = scored.map { entry in
            let score = entry.score
            return .with {
                $0.reward = score.total
                $0.collaborative = score.collaborative
                $0.userAgreement = score.userAgreement
                $0.audienceAgreement = score.audienceAgreement
                $0.penalty = score.penalty
                $0.checksPassed = score.checksPassed
                $0.failures = score.failures.map { failure in
                    .with {
                        $0.check = failure.check.rawValue
                        $0.detail = Self.bounded(failure.detail)
                        $0.text = Self.bounded(failure.text)
                        $0.penalty = failure.penalty
                    }
                }
            }
        }
        return response
    }

    func embed(_ request: Curec_V1_EmbedRequest) async throws -> Curec_V1_EmbedResponse {
        guard !request.texts.isEmpty else { throw ServingError.invalidArgument("texts is empty; give at least one") }
        guard request.texts.count <= ServingReasonReward.maxTexts else {
            throw ServingError.invalidArgument("texts has \(request.texts.count) entries; at most \(ServingReasonReward.maxTexts) per call")
        }
        try ServingReasonReward.validate(request.texts, field: { "texts[\($0)]" }, allowEmpty: false)
        let encoder = try await textModels().encoder()
        let texts = request.texts
        let vectors = try await runBlocking { encoder.encode(texts) }
        var response = Curec_V1_EmbedResponse()
        response.embeddings = vectors.map { vector in .with { $0.values = vector } }
        response.dimension = Int32(encoder.dimension)
        response.model = "all-MiniLM-L6-v2"
        return response
    }

    /// `text` cut to at most 200 UTF-8 bytes at a character boundary (failure spans echo
    /// client text).
    static func bounded(_ text: String) -> String {
        guard text.utf8.count > 200 else { return text }
        var result = ""
        for character in text {
            if result.utf8.count + character.utf8.count > 199 { break }
            result.append(character)
        }
        return result + "…"
    }
}

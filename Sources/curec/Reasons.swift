import ArgumentParser
import CURecProto
import CURecRPC
import Foundation

/// `curec score-reason USER ITEM TEXT`: the pipeline's reward of a reason text, with its parts.
struct ScoreReason: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "score-reason",
        abstract: "The reward of a reason for a (user, item) pair: collaborative agreement and verifier penalties.",
        discussion: "The daemon embeds the text with MiniLM; the first call sets the reward model up (up to a minute).")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "User id of the dataset.") var user: String
    @Argument(help: "Item id of the dataset.") var item: String
    @Argument(help: "The reason text.") var text: String
    func run() throws {
        let client = try global.client()
        let response: Curec_V1_ScoreReasonsResponse = try CURec.run {
            try Curec_V1_RewardServiceClient(client).scoreReasons(Curec_V1_ScoreReasonsRequest.with {
                $0.reasons = [.with {
                    $0.userID = user
                    $0.itemID = item
                    $0.text = text
                }]
            }, timeout: max(global.timeout, 300))
        }
        if global.json { printJSON(response); return }
        guard let reward = response.rewards.first else { return }
        print(String(format: "reward %.4f = collaborative %.4f (user %.4f, audience %.4f) - penalty %.2f",
                     reward.reward, reward.collaborative, reward.userAgreement, reward.audienceAgreement, reward.penalty))
        if reward.checksPassed { print("every verifier check passed") }
        for failure in reward.failures {
            print(String(format: "  failed %@ (-%.2f): %@", failure.check, failure.penalty, failure.detail))
        }
    }
}

/// `curec embed TEXT...`: MiniLM sentence embeddings.
struct Embed: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "MiniLM sentence embeddings of texts (384 values each).")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Texts to embed.") var texts: [String]
    func run() throws {
        let client = try global.client()
        let response: Curec_V1_EmbedResponse = try CURec.run {
            try Curec_V1_RewardServiceClient(client).embed(Curec_V1_EmbedRequest.with { $0.texts = texts },
                             timeout: max(global.timeout, 120))
        }
        if global.json { printJSON(response); return }
        for (text, embedding) in zip(texts, response.embeddings) {
            let head = embedding.values.prefix(4).map { String(format: "%.4f", $0) }.joined(separator: " ")
            print("\(pad(String(text.prefix(40)), 42)) [\(embedding.values.count)] \(head) ...")
        }
    }
}

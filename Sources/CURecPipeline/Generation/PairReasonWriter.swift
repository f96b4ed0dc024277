import CURecData
import Foundation

/// Reasons for (user, item) pairs as the daemon serves them: the corpus pair prompt, one
/// ``ReasonWriter`` answer per pair (greedy first), the reason block passed through the
/// verifier's sentence filter in the pair's context, and the pairs left with nothing written
/// again, sampled like the correction candidates (temperature and top-k of
/// ``CorrectionConfig``, seeds 1, 2, ...), up to ``maxAttempts`` generations in all. A pair
/// with nothing after that gets "".
public struct PairReasonWriter {
    /// Generations per pair (the first greedy).
    public static let defaultMaxAttempts = 3
    /// Sampling of the regenerations: the correction candidates'.
    public static let retryTemperature: Float = CorrectionConfig().temperature
    public static let retryTopK = CorrectionConfig().topK

    public let writer: ReasonWriter
    public let verifier: ReasonVerifier
    /// The last training timestamp of each user (the cut-off of claims about their history).
    public let cutoffs: [Int64?]
    public var maxAttempts = Self.defaultMaxAttempts

    public init(writer: ReasonWriter, verifier: ReasonVerifier, split: LeaveOneOutSplit) {
        self.writer = writer
        self.verifier = verifier
        self.cutoffs = split.trainTimesByUser.map(\.last)
    }

    /// `text` without the sentences that fail the verifier for `pair`.
    public func filtered(_ text: String, pair: ReasonPair) -> String {
        guard !text.isEmpty else { return "" }
        let cutoff = Int(pair.user) < cutoffs.count ? cutoffs[Int(pair.user)] : nil
        return verifier.filterSentences(text, context: ReasonContext(user: pair.user, item: pair.item, cutoff: cutoff)).text
    }

    /// The served reasons of `pairs` (prompts in the same order). `greedy`, when given, is
    /// the writer's greedy answer per pair (the first attempt, already written elsewhere).
    public func reasons(pairs: [ReasonPair], prompts: [String], greedy: [String]? = nil,
                        progress: (Int, Int) -> Void = { _, _ in },
                        isCancelled: () -> Bool = { false }) throws(ReasonWriterError) -> [String] {
        precondition(pairs.count == prompts.count, "one prompt per pair")
        let first: [String]
        if let greedy {
            precondition(greedy.count == pairs.count, "one greedy answer per pair")
            first = greedy
        } else {
            first = try writer.write(prompts: prompts, progress: progress, isCancelled: isCancelled).map(\.reason)
        }
        var texts = zip(first, pairs).map { filtered($0, pair: $1) }
        for attempt in 1..<max(1, maxAttempts) {
            let open = texts.indices.filter { texts[$0].isEmpty }
            guard !open.isEmpty else { break }
            let written = try writer.write(prompts: open.map { prompts[$0] }, temperature: Self.retryTemperature,
                                           topK: Self.retryTopK, seed: UInt64(attempt), isCancelled: isCancelled)
            for (slot, answer) in zip(open, written) { texts[slot] = filtered(answer.reason, pair: pairs[slot]) }
        }
        return texts
    }
}

import CURecData
import CURecJobs
import CURecPluginHost
import Foundation

/// Job kind `evaluate`: full-ranking Recall@K, NDCG@K and MRR@K of a serving recommender on
/// the leave-one-out split.
///
/// Parameters: `plugin` (instance name, default the default recommender), `split`
/// (`validation` or `test`, default `test`), `cutoffs` (comma-separated, default `10,20`).
struct EvaluateJob: JobKind {
    let plugins: PluginHost
    let data: ServingData?
    let defaultRecommender: String

    var name: String { "evaluate" }
    var parameterSummary: String { "plugin, split=validation|test, cutoffs=10,20" }

    func validate(_ parameters: [String: String]) throws(JobError) {
        let known: Set = ["plugin", "split", "cutoffs"]
        if let unknown = parameters.keys.first(where: { !known.contains($0) }) {
            throw .invalidParameter("evaluate: unknown parameter '\(unknown)'; expected \(parameterSummary)")
        }
        if let split = parameters["split"], split != "validation", split != "test" {
            throw .invalidParameter("evaluate: parameter 'split' must be validation or test, not '\(split)'")
        }
        _ = try Self.cutoffs(parameters)
        let plugin = parameters["plugin"].flatMap { $0.isEmpty ? nil : $0 } ?? defaultRecommender
        guard plugins.instance(named: plugin) != nil else {
            throw .invalidParameter("evaluate: plugin '\(plugin)' is not loaded")
        }
        guard data != nil else { throw .invalidParameter("evaluate: the daemon has no dataset loaded") }
    }

    static func cutoffs(_ parameters: [String: String]) throws(JobError) -> [Int] {
        guard let text = parameters["cutoffs"], !text.isEmpty else { return [10, 20] }
        var values: [Int] = []
        for part in text.split(separator: ",") {
            guard let value = Int(part.trimmingCharacters(in: .whitespaces)), (1...1000).contains(value) else {
                throw .invalidParameter("evaluate: cutoffs must be comma-separated integers from 1 to 1000, not '\(text)'")
            }
            values.append(value)
        }
        return values
    }

    func run(_ context: JobContext) throws -> JobOutcome {
        guard let data else { throw JobError.invalidParameter("no dataset loaded") }
        let name = context.parameters["plugin"].flatMap { $0.isEmpty ? nil : $0 } ?? defaultRecommender
        guard let instance = plugins.instance(named: name) else { throw JobError.invalidParameter("plugin '\(name)' is not loaded") }
        let phase: RankingMetrics.Phase = context.parameters["split"] == "validation" ? .validation : .test
        let cutoffs = try Self.cutoffs(context.parameters)
        let targets = phase == .test ? data.split.test.count : data.split.validation.count
        // For the test split a sequential model sees everything before the test item: the
        // training history plus the validation item (which the metrics exclude from ranking).
        var validationItem: [Int32: UInt32] = [:]
        if phase == .test {
            for interaction in data.split.validation { validationItem[interaction.user] = UInt32(bitPattern: interaction.item) }
        }
        var done: UInt64 = 0
        let metrics = try RankingMetrics.evaluate(split: data.split, itemCount: data.dataset.itemCount, phase: phase,
                                                  cutoffs: cutoffs) { user, scores in
            if context.isCancelled { throw JobCancelled() }
            try data.allItems.withUnsafeBufferPointer { candidates in
                var history = data.histories[Int(user)]
                if let item = validationItem[user] { history.append(item) }
                try instance.scoreRecommender(user: UInt32(user), history: history,
                                              candidates: candidates, scores: scores)
            }
            done += 1
            if done % 100 == 0 { context.progress(stage: "evaluate", step: done, total: UInt64(targets)) }
        }
        let means = metrics.averaged()
        var result: [String: Double] = ["users": Double(metrics.userCount)]
        for k in cutoffs {
            result["recall@\(k)"] = means.recall[k]
            result["ndcg@\(k)"] = means.ndcg[k]
            result["mrr@\(k)"] = means.mrr[k]
        }
        context.log("\(name) on the \(phase == .test ? "test" : "validation") split: \(metrics.description)")
        return JobOutcome(metrics: result)
    }
}

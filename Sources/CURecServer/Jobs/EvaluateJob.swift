import CURecData
import CURecJobs
import CURecPluginHost
import Foundation

/// Job kind `evaluate`: full-ranking Recall@K, NDCG@K and MRR@K of a serving recommender on
/// the leave-one-out split.
///
/// Parameters: ``Parameters``.
struct EvaluateJob: JobKind {
    let plugins: PluginHost
    let data: ServingData?
    let defaultRecommender: String

    /// The parameters of `evaluate`.
    enum Parameters {
        static let plugin: JobParameter<String?> = .optionalText(
            "plugin", defaultText: "the default recommender (`default_recommender`)", doc: "the serving recommender instance to evaluate")
        static let split: JobParameter<String> = .choice(
            "split", ["validation", "test"], default: "test", doc: "the leave-one-out split ranked")
        static let cutoffs: JobParameter<[Int]> = .integers(
            "cutoffs", default: [10, 20], in: 1...1000, doc: "the K of Recall@K, NDCG@K and MRR@K")
        static let schema = JobParameterSchema(kind: "evaluate", [plugin, split, cutoffs])
    }

    var name: String { "evaluate" }
    var parameters: JobParameterSchema { Parameters.schema }

    func validate(_ values: JobParameterValues) throws(JobError) {
        let plugin = values[Parameters.plugin] ?? defaultRecommender
        guard plugins.instance(named: plugin) != nil else {
            throw .invalidParameter("evaluate: plugin '\(ChatModelStore.shortened(plugin))' is not loaded")
        }
        guard data != nil else { throw .invalidParameter("evaluate: the daemon has no dataset loaded") }
    }

    func run(_ context: JobContext) throws -> JobOutcome {
        guard let data else { throw JobError.invalidParameter("no dataset loaded") }
        let name = context.values[Parameters.plugin] ?? defaultRecommender
        guard let instance = plugins.instance(named: name) else { throw JobError.invalidParameter("plugin '\(name)' is not loaded") }
        let phase: RankingMetrics.Phase = context.values[Parameters.split] == "validation" ? .validation : .test
        let cutoffs = context.values[Parameters.cutoffs]
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

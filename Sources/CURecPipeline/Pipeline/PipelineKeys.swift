import Foundation

/// The stages a run can stop after (see ``PipelineRunner/run(through:)``), in order. Each
/// stage of ``PipelineRunner/stages`` belongs to one of them; the record names of single-record
/// stages are these raw values.
public enum PipelineStage: String, Sendable, CaseIterable, Comparable, Codable {
    /// Stages 1 and 2: corpus and alignment (fine-tuning of the chat model, or pretraining of
    /// the built-in GPT).
    case align
    /// MiniLM embeddings of item content.
    case content
    /// Stage 3: the collaborative reward model.
    case reward
    /// Stage 4: GRPO.
    case grpo
    /// Stage 5: the reason tables (one record per ``ReasonTableKind``).
    case reasons
    /// Stages 6 and 7: the downstream ablation.
    case downstream
    /// The report (written on every run, never recorded).
    case report

    public static func < (a: PipelineStage, b: PipelineStage) -> Bool {
        allCases.firstIndex(of: a) ?? 0 < allCases.firstIndex(of: b) ?? 0
    }
}

/// A reason table the pipeline writes, declared once: its key (the directory `reasons/<key>`,
/// the downstream variant that reads it and the sub-directory of the `reasons` artifact),
/// which language model writes it and whether it is corrected.
public struct ReasonTableKind: Sendable, Hashable {
    /// The language model that writes a table.
    public enum Writer: Sendable, Hashable {
        /// The language model before alignment (for the built-in GPT: its untrained initialisation).
        case base
        /// The model after alignment, before GRPO.
        case aligned
        /// The GRPO-tuned model.
        case tuned
    }

    public let key: String
    public let writer: Writer
    /// Best of several candidates with the sentence filter (stage 5), or one greedy reason.
    public let corrected: Bool
    /// Which model wrote it, for the report.
    public let label: String

    /// Greedy reasons of the model before alignment.
    public static let base = ReasonTableKind(key: "base", writer: .base, corrected: false, label: "base model, no alignment")
    /// Greedy reasons of the aligned model.
    public static let aligned = ReasonTableKind(key: "aligned", writer: .aligned, corrected: false, label: "aligned")
    /// Greedy reasons of the GRPO-tuned model.
    public static let rl = ReasonTableKind(key: "rl", writer: .tuned, corrected: false,
                                           label: "after GRPO")
    /// Corrected reasons of the GRPO-tuned model (full CURec): served by the daemon.
    public static let curec = ReasonTableKind(key: "curec", writer: .tuned, corrected: true,
                                              label: "after GRPO")

    /// Every table, in the order they are written (a corrected table reads the greedy table of
    /// the same writer, written before it).
    public static let all: [ReasonTableKind] = [base, aligned, rl, curec]
    /// The table the daemon serves.
    public static let served = curec

    /// The report's description; `candidates` is the number of correction candidates.
    public func description(candidates: Int) -> String {
        corrected ? "\(label), best of \(candidates) + sentence filter" : "\(label), greedy"
    }

    /// The name of the stage record that writes this table.
    public var stageName: String { "\(PipelineStage.reasons.rawValue)-\(key)" }
    /// The table's directory inside the workspace.
    public var directory: String { "reasons/\(key)" }
}

/// Which embeddings of a reason table a downstream variant gives SASRec (besides its raw
/// content, if any). Each variant with reasons tries every use on the first seed and keeps
/// the one with the best validation NDCG@10; the test split plays no part in the choice.
public enum ReasonFeatureUse: String, Sendable, Hashable, Codable, CaseIterable {
    /// Item reasons as item features (beside the content when the variant has it) and user
    /// reasons as user features.
    case itemsAndUsers = "items+users"
    /// Item reasons only.
    case items
    /// User reasons only (the item features are the content, or none).
    case users

    public var usesItemReasons: Bool { self != .users }
    public var usesUserReasons: Bool { self != .items }
}

/// A downstream variant of the ablation.
public struct DownstreamVariant: Sendable, Hashable {
    /// The features a variant gives SASRec besides item IDs.
    public enum Features: Sendable, Hashable {
        case none
        /// MiniLM embeddings of each item's title, year and genres, as item features.
        case content
        /// A reason table's item and/or user embeddings (``ReasonFeatureUse``, chosen on
        /// validation) as item and user features; with `withContent` the item features are the
        /// content embedding, beside the item reason embedding when that is used.
        case reasons(ReasonTableKind, withContent: Bool)
    }

    public var key: String
    public var label: String
    public var features: Features

    public static let id = DownstreamVariant(key: "id", label: "SASRec, item IDs only", features: .none)
    public static let content = DownstreamVariant(key: "content", label: "+ raw content (MiniLM of title, year, genres)",
                                                  features: .content)
    public static let base = DownstreamVariant(key: ReasonTableKind.base.key, label: "+ raw content + base-model reasons (no alignment)",
                                               features: .reasons(.base, withContent: true))
    public static let aligned = DownstreamVariant(key: ReasonTableKind.aligned.key, label: "+ raw content + aligned-model reasons",
                                                  features: .reasons(.aligned, withContent: true))
    public static let rl = DownstreamVariant(key: ReasonTableKind.rl.key, label: "+ raw content + GRPO reasons, no correction",
                                             features: .reasons(.rl, withContent: true))
    public static let curec = DownstreamVariant(key: ReasonTableKind.curec.key, label: "+ raw content + full CURec (GRPO + correction)",
                                                features: .reasons(.curec, withContent: true))
    public static let reasonsOnly = DownstreamVariant(key: "curec-no-content", label: "+ full CURec reasons, no raw content",
                                                      features: .reasons(.curec, withContent: false))

    /// The variants, in report order.
    public static let all = [id, content, base, aligned, rl, curec, reasonsOnly]
    /// The variant whose first-seed model the daemon serves.
    public static let served = curec
    /// The variants the report's verdict compares ``served`` against, with their names there.
    public static let baselines: [(variant: DownstreamVariant, name: String)] = [(id, "ID-only"), (content, "raw-content")]
}

import CURecJobs

/// The names of what clients create and the daemon stores: models (`models/<name>/vN`),
/// plugin instances, datasets. One rule for all of them, so a name is never a path.
public enum ResourceName {
    /// The longest name, in bytes.
    public static let maximumLength = 64

    /// What a valid name looks like, to complete "must ..." in messages.
    public static let requirement = "be 1 to \(maximumLength) letters, digits, '-', '_' or '.', starting with a letter or digit"

    /// Whether `name` is 1 to 64 ASCII letters, digits, `-`, `_` or `.`, starting with a
    /// letter or digit (so never empty, never `.`/`..`, never containing `/`).
    public static func isValid(_ name: String) -> Bool {
        let bytes = name.utf8
        guard (1...maximumLength).contains(bytes.count), let first = bytes.first, isAlphanumeric(first) else { return false }
        return bytes.allSatisfy { isAlphanumeric($0) || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: ".") }
    }

    private static func isAlphanumeric(_ byte: UInt8) -> Bool {
        (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
    }

    /// Client text in a message: quoted, at most 32 characters.
    static func quoted(_ text: String) -> String {
        "'" + (text.count <= 32 ? text : String(text.prefix(32)) + "…") + "'"
    }
}

/// The names the daemon publishes itself, declared once. A client may not create a model
/// or plugin instance under one of them (a `train` job named `lm` would replace the language
/// model generation serves); only the job kind that publishes a name writes it.
public enum PublishedName: String, CaseIterable, Sendable {
    /// The built-in GPT language model (`pretrain`'s default output; the GPT pipeline's tuned model).
    case languageModel = "lm"
    /// The GPT pipeline's aligned (pre-GRPO) language model.
    case pretrainedLanguageModel = "lm-pretrain"
    /// The chat pipeline's aligned SmolLM2 fine-tuning.
    case alignedChatModel = "lm-aligned"
    /// The chat pipeline's GRPO-tuned SmolLM2 adapters, which write pair reasons.
    case tunedChatModel = "curec-reasons"
    /// The pipeline's reason tables.
    case reasonTable = "reasons"
    /// The pipeline's report.
    case report = "report"
    /// The SASRec recommender with CURec reason features the pipeline serves.
    case reasonAwareRecommender = "curec"
    /// The base SmolLM2-135M-Instruct chat model read from `lm_path`.
    case baseChatModel = "smollm2"

    /// The job kind allowed to publish this name when a client names it, if any.
    public var publishingKind: String? {
        self == .languageModel ? "pretrain" : nil
    }

    /// Whether a client may create a model or instance called `name` through a job of
    /// `kind` (nil: not through a job, e.g. `PluginService.Load`).
    public static func isAvailable(_ name: String, to kind: String?) -> Bool {
        guard let published = PublishedName(rawValue: name) else { return true }
        return kind != nil && published.publishingKind == kind
    }

    /// Every published name, for messages and docs.
    public static var list: String { allCases.map(\.rawValue).joined(separator: ", ") }
}

extension JobParameterTextRule {
    /// A name for a model or instance a job of `kind` publishes: valid and not one the
    /// daemon publishes itself (see ``PublishedName``).
    static func publishableName(by kind: String) -> JobParameterTextRule {
        JobParameterTextRule("\(ResourceName.requirement), and not a name the daemon publishes (\(PublishedName.list))") { name in
            ResourceName.isValid(name) && PublishedName.isAvailable(name, to: kind)
        }
    }

    /// A valid name that may be one the daemon publishes (to read or continue it).
    static let resourceName = JobParameterTextRule(ResourceName.requirement) { ResourceName.isValid($0) }
}

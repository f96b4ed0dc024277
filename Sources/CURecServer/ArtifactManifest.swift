import Foundation

/// What an artifact version is made of, stored beside its files as `metadata.json` (one flat
/// JSON object) and returned by `ModelService.List` and `GetReport` as string metadata.
///
/// Every artifact is written and read through ``ArtifactStore`` with this type. Version 1
/// (``currentFormat``) writes numbers as numbers and `targets` as a list, and names the kind of
/// every artifact; manifests from before (no `manifest_version`, every value a string, plugin
/// states and datasets without a `kind`, a language model's description under `config`) are
/// read by ``init(from:)``, the one place that knows the old layout.
public struct ArtifactManifest: Sendable, Equatable, Codable {
    /// The layout this build writes.
    public static let currentFormat = 1

    /// The manifest layout: ``currentFormat``, or 0 for a manifest written before layouts had a number.
    public var format: Int
    /// What the version holds.
    public var kind: ArtifactKind
    /// When the version was committed (ISO 8601, UTC), set by the store.
    public var created: String?
    /// The dataset it was made from (a chat model: the uploaded dataset as `NAME@vN`).
    public var dataset: String?
    /// The job that made it.
    public var job: String?

    // Plugin states (`plugin-state`).
    /// The plugin's own name and version (from `curec_plugin_describe`).
    public var plugin: String?
    public var pluginVersion: String?
    /// The library the state was made with, as resolved.
    public var library: String?
    /// FNV-1a of the plugin config bytes, to match a state to a config.
    public var configFingerprint: String?
    /// The plugin config text, for states that are served later from the manifest alone.
    public var config: String?
    /// The plugin config as base64, when its bytes are not text (a serialized protobuf).
    public var configBase64: String?
    /// Seconds the training took.
    public var trainingSeconds: Double?
    /// The pipeline variant that trained it.
    public var variant: String?

    // Language models, reason tables and reports of the pipeline and `pretrain`.
    /// The pipeline stage that made a language model: `pretrain` or `grpo`.
    public var stage: String?
    /// The pipeline profile.
    public var profile: String?
    /// The model's configuration as text.
    public var modelConfig: String?
    public var heldOutPerplexity: Double?

    // Chat models (`chat-model`) published by `finetune`.
    /// The base model's name and file.
    public var base: String?
    public var baseFile: String?
    public var method: FineTuningMethod?
    public var rank: Int?
    /// The LoRA target projections (short names: q, k, v, o, gate, up, down).
    public var targets: [String]?
    public var finalLoss: Double?

    // Counts shared by several kinds.
    /// Training or corpus examples (a dataset: its conversations).
    public var examples: Int?
    public var steps: Int?

    // Uploaded datasets (`dataset`).
    public var bytes: Int?
    public var createdUnixMilliseconds: Int64?
    /// The file format, `chat-jsonl`.
    public var fileFormat: String?

    /// How a chat model was fine-tuned.
    public enum FineTuningMethod: String, Sendable, Codable {
        case lora, full
    }

    /// The plugin config bytes it records (``config`` or ``configBase64``), if any.
    public var configBytes: [UInt8]? {
        if let config { return Array(config.utf8) }
        if let configBase64, let data = Data(base64Encoded: configBase64) { return [UInt8](data) }
        return nil
    }

    /// Records `bytes` as the plugin config: as text when they are UTF-8, else as base64.
    public mutating func setConfig(_ bytes: [UInt8]) {
        if let text = String(validating: bytes, as: UTF8.self) {
            config = text
            configBase64 = nil
        } else {
            config = nil
            configBase64 = Data(bytes).base64EncodedString()
        }
    }

    /// A manifest of `kind` with no other field set.
    public init(kind: ArtifactKind) {
        format = Self.currentFormat
        self.kind = kind
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case format = "manifest_version", kind, created, dataset, job
        case plugin, pluginVersion = "plugin_version", library, configFingerprint = "config_fingerprint", config
        case configBase64 = "config_base64"
        case trainingSeconds = "training_seconds", variant
        case stage, profile, modelConfig = "model_config", heldOutPerplexity = "held_out_perplexity"
        case base, baseFile = "base_file", method, rank, targets, finalLoss = "final_loss"
        case examples, steps, bytes, createdUnixMilliseconds = "created_unix_ms", fileFormat = "format"
    }

    /// Reads a manifest of any layout; numbers and lists may be given as text (as before
    /// layout 1), and a missing kind is inferred.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        format = try container.lenientIntegerIfPresent(.format) ?? 0
        created = try container.decodeIfPresent(String.self, forKey: .created)
        dataset = try container.decodeIfPresent(String.self, forKey: .dataset)
        job = try container.decodeIfPresent(String.self, forKey: .job)
        plugin = try container.decodeIfPresent(String.self, forKey: .plugin)
        pluginVersion = try container.decodeIfPresent(String.self, forKey: .pluginVersion)
        library = try container.decodeIfPresent(String.self, forKey: .library)
        configFingerprint = try container.decodeIfPresent(String.self, forKey: .configFingerprint)
        config = try container.decodeIfPresent(String.self, forKey: .config)
        configBase64 = try container.decodeIfPresent(String.self, forKey: .configBase64)
        trainingSeconds = try container.lenientNumberIfPresent(.trainingSeconds)
        variant = try container.decodeIfPresent(String.self, forKey: .variant)
        stage = try container.decodeIfPresent(String.self, forKey: .stage)
        profile = try container.decodeIfPresent(String.self, forKey: .profile)
        modelConfig = try container.decodeIfPresent(String.self, forKey: .modelConfig)
        heldOutPerplexity = try container.lenientNumberIfPresent(.heldOutPerplexity)
        base = try container.decodeIfPresent(String.self, forKey: .base)
        baseFile = try container.decodeIfPresent(String.self, forKey: .baseFile)
        method = try container.decodeIfPresent(FineTuningMethod.self, forKey: .method)
        rank = try container.lenientIntegerIfPresent(.rank)
        if let text = try? container.decodeIfPresent(String.self, forKey: .targets) {
            targets = text.split(separator: ",").map(String.init)
        } else {
            targets = try container.decodeIfPresent([String].self, forKey: .targets)
        }
        finalLoss = try container.lenientNumberIfPresent(.finalLoss)
        examples = try container.lenientIntegerIfPresent(.examples)
        steps = try container.lenientIntegerIfPresent(.steps)
        bytes = try container.lenientIntegerIfPresent(.bytes)
        createdUnixMilliseconds = try container.lenientIntegerIfPresent(.createdUnixMilliseconds).map(Int64.init)
        fileFormat = try container.decodeIfPresent(String.self, forKey: .fileFormat)
        if let kind = try container.decodeIfPresent(ArtifactKind.self, forKey: .kind) {
            self.kind = kind
        } else if plugin != nil {
            kind = .pluginState
        } else if fileFormat != nil || bytes != nil {
            kind = .dataset
        } else {
            kind = .unknown
        }
        // Before layout 1, `pretrain` kept the model's description under `config`.
        if format == 0, kind == .languageModel, modelConfig == nil {
            modelConfig = config
            config = nil
        }
    }

    /// Every field as text, as the RPCs return metadata: numbers in decimal, lists
    /// comma-separated, absent fields left out.
    public var fields: [String: String] {
        var fields: [String: String] = ["manifest_version": String(format), "kind": kind.rawValue]
        func put(_ key: CodingKeys, _ value: String?) { if let value { fields[key.rawValue] = value } }
        put(.created, created)
        put(.dataset, dataset)
        put(.job, job)
        put(.plugin, plugin)
        put(.pluginVersion, pluginVersion)
        put(.library, library)
        put(.configFingerprint, configFingerprint)
        put(.config, config)
        put(.configBase64, configBase64)
        put(.trainingSeconds, trainingSeconds.map { String($0) })
        put(.variant, variant)
        put(.stage, stage)
        put(.profile, profile)
        put(.modelConfig, modelConfig)
        put(.heldOutPerplexity, heldOutPerplexity.map { String($0) })
        put(.base, base)
        put(.baseFile, baseFile)
        put(.method, method?.rawValue)
        put(.rank, rank.map { String($0) })
        put(.targets, targets?.joined(separator: ","))
        put(.finalLoss, finalLoss.map { String($0) })
        put(.examples, examples.map { String($0) })
        put(.steps, steps.map { String($0) })
        put(.bytes, bytes.map { String($0) })
        put(.createdUnixMilliseconds, createdUnixMilliseconds.map { String($0) })
        put(.fileFormat, fileFormat)
        return fields
    }
}

/// What an artifact version holds. Kinds this build does not know are kept as they are.
public struct ArtifactKind: RawRepresentable, Hashable, Sendable, Codable, CustomStringConvertible {
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }

    /// A plugin's saved state (`train` jobs, plugins trained at start, the pipeline's recommender).
    public static let pluginState = ArtifactKind(rawValue: "plugin-state")
    /// A GPT language model with its tokenizer (`pretrain`, the pipeline's `lm` and `lm-pretrain`).
    public static let languageModel = ArtifactKind(rawValue: "language-model")
    /// A fine-tuned chat model over the base SmolLM2 (`finetune`).
    public static let chatModel = ArtifactKind(rawValue: "chat-model")
    /// The pipeline's corrected reason table.
    public static let reasonTable = ArtifactKind(rawValue: "reason-table")
    /// The pipeline's report.
    public static let report = ArtifactKind(rawValue: "report")
    /// An uploaded chat dataset.
    public static let dataset = ArtifactKind(rawValue: "dataset")
    /// A manifest from before kinds that matches none of the above.
    public static let unknown = ArtifactKind(rawValue: "unknown")

    public init(from decoder: any Decoder) throws {
        rawValue = try decoder.singleValueContainer().decode(String.self)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }

    public var description: String { rawValue }
}

extension KeyedDecodingContainer {
    /// A number written as a JSON number or (before manifest layout 1) as text.
    func lenientNumberIfPresent(_ key: Key) throws -> Double? {
        if let text = try? decodeIfPresent(String.self, forKey: key) {
            guard let value = Double(text) else {
                throw DecodingError.dataCorruptedError(forKey: key, in: self, debugDescription: "not a number")
            }
            return value
        }
        return try decodeIfPresent(Double.self, forKey: key)
    }

    /// An integer written as a JSON number or (before manifest layout 1) as text.
    func lenientIntegerIfPresent(_ key: Key) throws -> Int? {
        if let text = try? decodeIfPresent(String.self, forKey: key) {
            guard let value = Int(text) else {
                throw DecodingError.dataCorruptedError(forKey: key, in: self, debugDescription: "not an integer")
            }
            return value
        }
        return try decodeIfPresent(Int.self, forKey: key)
    }
}

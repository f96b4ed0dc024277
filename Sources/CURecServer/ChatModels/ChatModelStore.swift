import CURecModels
import CURecTensor
import Foundation
import Synchronization

/// The chat language models `GenerationService.Generate` serves, by name and version:
///
/// - ``baseName`` (`smollm2`): the pretrained SmolLM2-135M-Instruct GGUF file the daemon was
///   configured with (`lm_path`);
/// - any other name: a version `models/<name>/vN/` published by a `finetune` job, a LoRA
///   adapter (or full weights) over that base.
///
/// Loaded models are kept for reuse, at most ``capacity`` of them (least recently used ones
/// are dropped; a call in flight keeps its model alive).
public final class ChatModelStore: Sendable {
    /// The name of the pretrained base model.
    public static let baseName = PublishedName.baseChatModel.rawValue

    /// A model ready to generate with, and what it is.
    public final class Loaded: @unchecked Sendable {
        public let model: LlamaModel
        public let tokenizer: PretrainedTokenizer
        /// What answered: "smollm2" or "models/<name>/vN".
        public let version: String
        /// Serialises use of `model` (its buffers are not shared-safe).
        public let lock = Mutex<Void>(())

        init(model: LlamaModel, tokenizer: PretrainedTokenizer, version: String) {
            self.model = model
            self.tokenizer = tokenizer
            self.version = version
        }
    }

    /// The GGUF file of the base model.
    public let basePath: String
    /// Where fine-tuned versions are published.
    public let artifacts: ArtifactStore
    /// Most models kept loaded at once.
    public let capacity: Int
    /// How the base model and LoRA versions keep their matrices (fully fine-tuned versions,
    /// float32 files, are always float32).
    public let weights: LlamaWeightFormat
    private let loaded = Mutex<[(key: String, model: Loaded)]>([])
    private let loading = Mutex<Void>(())

    /// A store serving `basePath` and the versions in `artifacts`, with `weights` as stored
    /// in the file (`.quantized`, about 150 MiB per loaded model) or dequantized (`.float32`,
    /// about 650 MiB, the exact arithmetic of training).
    public init(basePath: String, artifacts: ArtifactStore, capacity: Int = 2, weights: LlamaWeightFormat = .quantized) {
        self.basePath = basePath
        self.artifacts = artifacts
        self.capacity = max(1, capacity)
        self.weights = weights
    }

    /// Whether the base model's file is present.
    public var baseAvailable: Bool { FileManager.default.fileExists(atPath: basePath) }

    /// Whether `name` is the base model or a published fine-tuned chat model.
    public func isChatModel(_ name: String) -> Bool {
        if name == Self.baseName { return true }
        guard Self.isPlainName(name), let newest = artifacts.latest(of: name) else { return false }
        return ArtifactStore.manifest(in: newest)?.kind == .chatModel
    }

    /// The model `name` (empty: the base) at `version` ("vN"; empty: the newest).
    public func model(name: String, version: String) throws(ChatModelError) -> Loaded {
        let name = name.isEmpty ? Self.baseName : name
        let key: String
        if name == Self.baseName {
            guard version.isEmpty else { throw .notFound("the base model '\(Self.baseName)' has no versions") }
            key = Self.baseName
        } else {
            guard Self.isPlainName(name) else { throw .invalidName }
            let versions = artifacts.versions(of: name)
            guard let chosen = version.isEmpty ? versions.last : versions.first(where: { $0 == version }) else {
                throw .notFound(version.isEmpty ? "no model named '\(name)'" : "model '\(name)' has no version '\(Self.shortened(version))'")
            }
            key = "models/\(name)/\(chosen)"
            guard artifacts.manifest(of: name, version: chosen)?.kind == .chatModel else {
                throw .notFound("model '\(name)' is not a chat language model")
            }
        }
        if let hit = lookup(key) { return hit }
        // One load at a time: two calls for the same new model load it once.
        return try loading.withLock { _ throws(ChatModelError) -> Loaded in
            if let hit = lookup(key) { return hit }
            let model = try load(key: key, name: name)
            loaded.withLock { entries in
                entries.insert((key, model), at: 0)
                if entries.count > capacity { entries.removeLast(entries.count - capacity) }
            }
            return model
        }
    }

    private func lookup(_ key: String) -> Loaded? {
        loaded.withLock { entries in
            guard let index = entries.firstIndex(where: { $0.key == key }) else { return nil }
            let entry = entries.remove(at: index)
            entries.insert(entry, at: 0)
            return entry.model
        }
    }

    private func load(key: String, name: String) throws(ChatModelError) -> Loaded {
        guard baseAvailable else {
            throw .unavailable("the base model file \(basePath) is missing (scripts/fetch-lm fetches it)")
        }
        do {
            let file = try GGUFFile.read(path: basePath)
            let tokenizer = try PretrainedTokenizer(gguf: file)
            // Serving reads the 4-bit weights in place by default (decoding is bound by reading
            // weights); a fully fine-tuned version replaces every weight, so it needs float32 ones.
            let directory = (artifacts.root as NSString).appendingPathComponent(key)
            let fullWeights = name != Self.baseName && ArtifactStore.manifest(in: directory)?.method == .full
            let model = try LlamaModel.load(gguf: file, weights: fullWeights ? .float32 : weights)
            if name != Self.baseName {
                try Self.applyFineTuning(directory: directory, to: model)
            }
            return Loaded(model: model, tokenizer: tokenizer, version: key)
        } catch let error as ChatModelError {
            throw error
        } catch {
            throw .unavailable("\(key) cannot be loaded: \(error)")
        }
    }

    /// Puts a published fine-tuning (LoRA adapters, or full weights) on the base `model`.
    static func applyFineTuning(directory: String, to model: LlamaModel) throws {
        switch ArtifactStore.manifest(in: directory)?.method {
        case .lora?:
            let adapters = try LlamaLoRA.loadPeft(directory: directory, modelConfig: model.config)
            adapters.isTraining = false
            try adapters.attach(to: model)
        case .full?:
            try LlamaWeightsFile.load(path: (directory as NSString).appendingPathComponent(LlamaWeightsFile.fileName),
                                      into: model)
        default:
            throw ChatModelError.unavailable("\(directory) names no fine-tuning method (lora or full) in its manifest")
        }
    }

    /// A model name is letters, digits, `-`, `_`, `.` (1 to 64, not starting with `.`).
    static func isPlainName(_ name: String) -> Bool { ResourceName.isValid(name) }

    static func shortened(_ text: String) -> String {
        text.count <= 32 ? text : String(text.prefix(32)) + "…"
    }
}

/// Why a chat model cannot be used.
public enum ChatModelError: Error, Sendable, Equatable, CustomStringConvertible {
    case invalidName
    case notFound(String)
    case unavailable(String)

    public var description: String {
        switch self {
        case .invalidName: return "a model name must \(ResourceName.requirement)"
        case .notFound(let what): return what
        case .unavailable(let why): return why
        }
    }
}

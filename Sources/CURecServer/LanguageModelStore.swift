import CURecModels
import Foundation
import Synchronization

/// The built-in language models in the artifact store (`models/<name>/vN/`: a GPT-2 format
/// checkpoint plus `tokenizer.json`), loaded on first use and reloaded when a newer version
/// appears.
public final class LanguageModelStore: Sendable {
    /// A loaded model with its tokenizer.
    public final class Loaded: @unchecked Sendable {
        public let model: GPTModel
        public let tokenizer: BPETokenizer
        /// e.g. "models/lm/v2".
        public let version: String
        /// Serializes use of `model` (its KV cache and activations are not shared-safe).
        public let lock = Mutex<Void>(())

        init(model: GPTModel, tokenizer: BPETokenizer, version: String) {
            self.model = model
            self.tokenizer = tokenizer
            self.version = version
        }
    }

    private let artifacts: ArtifactStore
    private let cache = Mutex<[String: Loaded]>([:])

    public init(artifacts: ArtifactStore) {
        self.artifacts = artifacts
    }

    /// Whether any version of `name` has been published (nothing is loaded).
    public func exists(_ name: String) -> Bool { artifacts.latest(of: name) != nil }

    /// The newest version of `name`, loading it if needed; nil if none exists.
    public func latest(_ name: String) throws(LanguageModelError) -> Loaded? {
        guard let directory = artifacts.latest(of: name) else { return nil }
        let version = "models/\(name)/\((directory as NSString).lastPathComponent)"
        if let cached = cache.withLock({ $0[name] }), cached.version == version { return cached }
        let model: GPTModel
        do {
            model = try GPTModel.load(directory: directory)
        } catch {
            throw .unreadable(version, error.description)
        }
        let tokenizer: BPETokenizer
        do {
            tokenizer = try BPETokenizer.load(tokenizerJSONPath: (directory as NSString).appendingPathComponent("tokenizer.json"))
        } catch {
            throw .unreadable(version, error.description)
        }
        guard tokenizer.vocabularySize <= model.config.vocab else {
            throw .unreadable(version, "the tokenizer has \(tokenizer.vocabularySize) tokens but the model only \(model.config.vocab)")
        }
        let loaded = Loaded(model: model, tokenizer: tokenizer, version: version)
        cache.withLock { $0[name] = loaded }
        return loaded
    }
}

/// Why a language model could not be used.
public enum LanguageModelError: Error, CustomStringConvertible, Sendable {
    case unreadable(String, String)

    public var description: String {
        switch self {
        case .unreadable(let version, let reason): return "language model \(version) cannot be loaded: \(reason)"
        }
    }
}

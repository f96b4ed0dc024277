import CURecModels
import CURecPipeline
import Foundation
import Synchronization

/// Writes recommendation reasons with the built-in language model: builds the pair prompt the
/// model was trained on, fits it to the context, and extracts the reason from the output.
/// Shared by GenerationService (streaming) and RecommendService (reasons with items).
struct ReasonGenerator: Sendable {
    let models: LanguageModelStore
    /// The prompt the LM was trained to answer for a (user, item) pair.
    let prompt: @Sendable (_ user: UInt32, _ item: UInt32) -> String
    /// Removes sentences whose claims fail the verifier (false titles, genres, years, claims
    /// from after the user's cut-off); nil serves the model's text unchecked.
    var check: (@Sendable (_ user: UInt32, _ item: UInt32, _ reason: String) -> String)? = nil
    /// Pretrained and fine-tuned chat models (`smollm2`, `finetune` outputs), which answer the
    /// pair task as a conversation.
    var chatModels: ChatModelStore? = nil
    /// The pair task as a conversation (system turn, user turn) for chat models.
    var conversation: (@Sendable (_ user: UInt32, _ item: UInt32) -> (system: String, user: String))? = nil

    /// Tokens a chat model may spend on one reason.
    static let chatReasonMaxTokens = 80
    /// Pair reasons a chat model writes at once.
    static let chatReasonBatch = 8

    /// The chat model `name` names, or nil when `name` is a built-in LM (`lm`, `pretrain` outputs).
    func chatModel(_ name: String) throws(ChatModelError) -> ChatModelStore.Loaded? {
        guard let chatModels, conversation != nil, !name.isEmpty else { return nil }
        guard name == ChatModelStore.baseName || chatModels.isChatModel(name) else { return nil }
        return try chatModels.model(name: name, version: "")
    }

    /// The pair conversation for (user, item) in `loaded`'s chat template.
    func chatPromptTokens(_ loaded: ChatModelStore.Loaded, user: UInt32, item: UInt32) throws(ServingError) -> [Int32] {
        guard let conversation else { throw ServingError.internalFailure("no pair conversation is configured") }
        let turns = conversation(user, item)
        do {
            return try loaded.tokenizer.encode(conversation: [.system(turns.system), .user(turns.user)],
                                               addingGenerationPrompt: true)
        } catch {
            throw ServingError.internalFailure("the pair conversation cannot be rendered: \(error.description)")
        }
    }

    /// `text` up to its last sentence end (`.`, `!`, `?`), for an answer cut by the token limit;
    /// the whole text when it holds no sentence end.
    static func wholeSentences(_ text: String) -> String {
        guard let end = text.lastIndex(where: { $0 == "." || $0 == "!" || $0 == "?" }) else { return text }
        return String(text[...end])
    }

    /// The sampling of a chat reason: greedy for the first attempt (`temperature` 0), sampled
    /// with `seed` for regenerations.
    static func chatReasonOptions(_ loaded: ChatModelStore.Loaded, temperature: Float = 0, topP: Float = 1,
                                  seed: UInt64 = 0) -> SamplingOptions {
        SamplingOptions(maxTokens: Self.chatReasonMaxTokens, temperature: temperature, topK: 0, topP: topP,
                        stopSequences: loaded.tokenizer.endOfTurnStopSequences, seed: seed, repetitionPenalty: 1.1)
    }

    /// Pair reasons from a chat model for `items` (greedy unless `options` say otherwise),
    /// checked by the verifier.
    func chatReasons(_ loaded: ChatModelStore.Loaded, user: UInt32, items: [UInt32], options: SamplingOptions? = nil,
                     shouldStop: @escaping () -> Bool) throws(ServingError) -> [String] {
        var prompts: [[Int]] = []
        for item in items { prompts.append(try chatPromptTokens(loaded, user: user, item: item).map(Int.init)) }
        guard !prompts.isEmpty else { return [] }
        let options = options ?? Self.chatReasonOptions(loaded)
        // Rows are generated a few at a time: each holds a key/value cache of its whole prompt.
        var results: [GenerationResult] = []
        do {
            for start in stride(from: 0, to: prompts.count, by: Self.chatReasonBatch) {
                let batch = Array(prompts[start..<min(start + Self.chatReasonBatch, prompts.count)])
                results += try loaded.lock.withLock { _ throws(GenerationError) in
                    try BatchedGenerator(model: loaded.model).generate(prompts: batch, options: options, shouldStop: shouldStop)
                }
            }
        } catch {
            throw ServingError.internalFailure("reason generation failed: \(error.description)")
        }
        if results.contains(where: { $0.finishReason == .cancelled }) {
            throw ServingError.deadlineExceeded("the deadline passed while writing reasons")
        }
        return zip(items, results).map { item, result in
            let text = (try? loaded.tokenizer.decode(result.tokens.map(Int32.init), skippingSpecialTokens: true)) ?? ""
            let answer = result.finishReason == .maxTokens ? Self.wholeSentences(text) : text
            return checked(user: user, item: item, answer.trimmingCharacters(in: .whitespacesAndNewlines))
        }
    }

    /// The newest version of the model `name` (default "lm"), or FAILED_PRECONDITION.
    func model(_ name: String) throws(ServingError) -> LanguageModelStore.Loaded {
        let modelName = name.isEmpty ? "lm" : name
        guard !modelName.contains("/"), !modelName.hasPrefix(".") else {
            throw ServingError.invalidArgument("model name '\(name)' must be a plain name (no '/', not starting with '.')")
        }
        let found: LanguageModelStore.Loaded?
        do {
            found = try models.latest(modelName)
        } catch {
            throw .failedPrecondition("'\(modelName)' is not a usable language model: \(error.description)")
        }
        guard let found else {
            throw .failedPrecondition("no language model '\(modelName)' has been trained yet; submit a pretrain or pipeline job first")
        }
        return found
    }

    /// The prompt's token ids, keeping its end and leaving room for `maxTokens` of answer
    /// (the model was trained on windows that start mid-example, so a cut start is familiar).
    func promptTokens(_ loaded: LanguageModelStore.Loaded, user: UInt32, item: UInt32,
                      maxTokens: Int) throws(ServingError) -> [Int] {
        let writer: ReasonWriter
        do {
            writer = try ReasonWriter(model: loaded.model, tokenizer: loaded.tokenizer, maxTokens: maxTokens)
        } catch {
            throw ServingError.invalidArgument("max_tokens \(maxTokens) leaves no room for the prompt in the model's context of \(loaded.model.config.context) tokens")
        }
        return writer.promptTokens(prompt(user, item))
    }

    /// The default answer budget: the reasoning steps come before the reason, so leave them
    /// most of the context (192 tokens), keeping at least 48 tokens for the prompt's end.
    static func defaultMaxTokens(context: Int) -> Int {
        max(16, min(192, context - 48))
    }

    /// Stop sequences that end a reason (the end marker, and the end of an example).
    func stopSequences(_ loaded: LanguageModelStore.Loaded) -> [[Int]] {
        ReasonWriter.stopSequences(loaded.tokenizer)
    }

    /// `reason` with failing sentences removed (unchanged without a checker).
    func checked(user: UInt32, item: UInt32, _ reason: String) -> String {
        guard let check, !reason.isEmpty else { return reason }
        return check(user, item, reason)
    }

    /// The text of the reason block (see `ReasonWriter.extractReason`).
    func reason(in text: String) -> String {
        ReasonWriter.extractReason(from: text)
    }

    /// One checked reason per item for `user`, greedy and deterministic; empty when the model
    /// wrote no reason block or every sentence failed the verifier. Blocking (CPU-bound):
    /// call it off the I/O loop.
    func reasons(user: UInt32, items: [UInt32], modelName: String, maxTokens: Int? = nil,
                 shouldStop: @escaping () -> Bool) throws -> [String] {
        if let chat = try chatModel(modelName) {
            return try chatReasons(chat, user: user, items: items, shouldStop: shouldStop)
        }
        let loaded = try model(modelName)
        let maxTokens = maxTokens ?? Self.defaultMaxTokens(context: loaded.model.config.context)
        var prompts: [[Int]] = []
        for item in items { prompts.append(try promptTokens(loaded, user: user, item: item, maxTokens: maxTokens)) }
        guard !prompts.isEmpty else { return [] }
        let options = GPTSamplingOptions(maxTokens: maxTokens, temperature: 0, topK: 0, topP: 1,
                                         stopSequences: stopSequences(loaded), seed: 0)
        let generations: [GPTGeneration]
        do {
            generations = try loaded.lock.withLock { _ in
                try loaded.model.generate(prompts: prompts, options: options, shouldStop: shouldStop)
            }
        } catch {
            throw ServingError.internalFailure("reason generation failed: \(error)")
        }
        if generations.contains(where: { $0.finishReason == .cancelled }) {
            throw ServingError.deadlineExceeded("the deadline passed while writing reasons")
        }
        return zip(items, generations).map { item, generation in
            let text = (try? loaded.tokenizer.decode(generation.tokens.map(Int32.init))) ?? ""
            return checked(user: user, item: item, reason(in: text))
        }
    }
}

import CURecModels
import CURecPipeline
import Foundation
import Synchronization

/// Writes recommendation reasons with a language model, the built-in GPT or a chat model:
/// builds the corpus pair prompt the model was trained on (in the chat format for a chat
/// model), fits it to the context, and extracts the reason block from the output.
/// Shared by GenerationService (streaming) and RecommendService (reasons with items).
struct ReasonGenerator: Sendable {
    let models: LanguageModelStore
    /// The prompt the LM was trained to answer for a (user, item) pair.
    let prompt: @Sendable (_ user: UInt32, _ item: UInt32) -> String
    /// Removes sentences whose claims fail the verifier (false titles, genres, years, claims
    /// from after the user's cut-off); nil serves the model's text unchecked.
    var check: (@Sendable (_ user: UInt32, _ item: UInt32, _ reason: String) -> String)? = nil
    /// Pretrained and fine-tuned chat models (`smollm2`, `finetune` outputs, the pipeline's
    /// `curec-reasons`), which answer the corpus pair prompt in their chat format, as the
    /// pipeline's writers do.
    var chatModels: ChatModelStore? = nil

    /// Answer budget of a chat model's pair reason (reasoning steps, then the reason): the
    /// pipeline's standard `chatMaxTokens`.
    static let chatReasonMaxTokens = PipelineConfig.standard.chatMaxTokens
    /// Pair reasons a chat model writes at once.
    static let chatReasonBatch = 8
    /// Repetition penalty of chat pair reasons: the pipeline's, for its reason tables.
    static let chatRepetitionPenalty = PipelineConfig.standard.repetitionPenalty

    /// The model a request that names none uses: the built-in GPT `lm` when one has been
    /// trained (a pipeline with `languageModel=gpt`, or a `pretrain` job), else the newest
    /// ``PairReasons/tunedModelName`` (the pipeline's tuned SmolLM2), else the base `smollm2`
    /// (when its file is present).
    func defaultModelName() -> String {
        guard let chatModels, !models.exists(Self.defaultGPTName) else { return Self.defaultGPTName }
        if chatModels.isChatModel(PairReasons.tunedModelName) { return PairReasons.tunedModelName }
        return chatModels.baseAvailable ? ChatModelStore.baseName : Self.defaultGPTName
    }

    /// The name of the built-in GPT the pipeline and `pretrain` jobs publish by default.
    static let defaultGPTName = PairReasons.builtInModelName

    /// The chat model `name` (empty: ``defaultModelName()``) names, or nil when it is a
    /// built-in LM (`lm`, `pretrain` outputs).
    func chatModel(_ name: String) throws(ChatModelError) -> ChatModelStore.Loaded? {
        let name = name.isEmpty ? defaultModelName() : name
        guard let chatModels else { return nil }
        guard name == ChatModelStore.baseName || chatModels.isChatModel(name) else { return nil }
        return try chatModels.model(name: name, version: "")
    }

    /// `loaded` as the pipeline's writers see a chat model (its fine-tuning, if any, is
    /// already attached). Call with `loaded.lock` held.
    static func reasonModel(_ loaded: ChatModelStore.Loaded) -> LlamaReasonModel {
        LlamaReasonModel(backbone: LlamaBackbone(trainable: loaded.model, tokenizer: loaded.tokenizer), adapters: nil)
    }

    /// The corpus pair prompt for (user, item) as `loaded` reads it (system and user turns,
    /// the assistant header and the reasoning marker), leaving room for `maxTokens` of answer
    /// as ``ReasonWriter/promptTokens(_:)`` does. Reads only the tokenizer (no lock).
    func chatPromptTokens(_ loaded: ChatModelStore.Loaded, user: UInt32, item: UInt32,
                          maxTokens: Int) throws(ServingError) -> [Int32] {
        let context = loaded.model.config.context
        guard maxTokens >= 1, context - maxTokens >= 16 else {
            throw ServingError.invalidArgument("max_tokens \(maxTokens) leaves no room for the prompt in the model's context of \(context) tokens")
        }
        return LlamaReasonModel.promptTokens(prompt(user, item), limit: context - maxTokens, tokenizer: loaded.tokenizer)
            .map(Int32.init)
    }

    /// Pair reasons from a chat model for `items`, written exactly as the pipeline writes
    /// its reasons (``ReasonWriter`` over ``LlamaReasonModel`` on the corpus pair prompt,
    /// greedy when `temperature` is 0, else sampled with `topK` and `seed`), each checked by
    /// the verifier's sentence filter. `shouldStop` is checked between tokens.
    func chatReasons(_ loaded: ChatModelStore.Loaded, user: UInt32, items: [UInt32], temperature: Float = 0,
                     topK: Int = 0, seed: UInt64 = 0, shouldStop: @escaping () -> Bool) throws(ServingError) -> [String] {
        guard !items.isEmpty else { return [] }
        let prompts = items.map { prompt(user, $0) }
        let written: [WrittenReason]
        do {
            written = try loaded.lock.withLock { _ throws(ReasonWriterError) in
                let writer = try ReasonWriter(languageModel: Self.reasonModel(loaded), maxTokens: Self.chatReasonMaxTokens,
                                              batchSize: Self.chatReasonBatch, repetitionPenalty: Self.chatRepetitionPenalty)
                return try writer.write(prompts: prompts, temperature: temperature, topK: topK, seed: seed,
                                        isCancelled: shouldStop)
            }
        } catch .cancelled {
            throw ServingError.deadlineExceeded("the deadline passed while writing reasons")
        } catch {
            throw ServingError.internalFailure(error.description)
        }
        return zip(items, written).map { item, answer in checked(user: user, item: item, answer.reason) }
    }

    /// The newest version of the built-in LM `name` (empty: ``defaultGPTName``), or FAILED_PRECONDITION.
    func model(_ name: String) throws(ServingError) -> LanguageModelStore.Loaded {
        let modelName = name.isEmpty ? Self.defaultGPTName : name
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
            throw .failedPrecondition(name.isEmpty
                ? "no reason model is available: no '\(modelName)' or '\(PairReasons.tunedModelName)' has been published and the SmolLM2 file is missing (scripts/fetch-lm fetches it; a pipeline job publishes '\(PairReasons.tunedModelName)')"
                : "no language model '\(modelName)' has been trained yet; submit a pretrain or pipeline job first")
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

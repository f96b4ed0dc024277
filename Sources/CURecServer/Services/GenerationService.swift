import CURecModels
import CURecPipeline
import CURecProto
import CURecRPC
import Foundation
import Synchronization

/// `curec.v1.GenerationService` on the wire: `GenerateReason` forwards to
/// ``ReasonStreaming``, `Generate` to ``TextGeneration``.
struct GenerationService: Curec_V1_GenerationServiceHandler {
    /// Nil when the daemon cannot write reasons (no dataset or corpus): the call then fails
    /// with FAILED_PRECONDITION.
    let reasons: ReasonStreaming?
    let text: TextGeneration

    func generateReason(
        _ request: Curec_V1_GenerateReasonRequest, responses: ResponseWriter<Curec_V1_GenerateReasonResponse>,
        context: ServerContext
    ) async throws {
        guard let reasons else {
            throw ServingError.failedPrecondition(
                "reasons are unavailable: the daemon has no dataset or corpus to prompt its language model (see its log)")
        }
        try await reasons.generateReason(request, shouldStop: { context.shouldStop }) { try await responses.send($0) }
    }

    func generate(
        _ request: Curec_V1_GenerateRequest, responses: ResponseWriter<Curec_V1_GenerateResponse>, context: ServerContext
    ) async throws {
        try await text.generate(request, shouldStop: { context.shouldStop }) { try await responses.send($0) }
    }
}

/// Streams recommendation reasons for one (user, item) pair from the built-in LM or a chat model.
///
/// Generation runs on the bounded ``GenerationPool`` (it is CPU-bound); tokens reach the
/// client as they are produced. The deadline and client cancellation stop generation between
/// tokens, and a generation whose caller left before it started never starts.
struct ReasonStreaming: Sendable {
    let data: ServingData
    let generator: ReasonGenerator
    var pool: GenerationPool = .standard

    /// Writes the pair's reason and hands each response message to `send`: a piece of text
    /// per token, then the final message with the whole text and the checked reason.
    func generateReason(
        _ request: Curec_V1_GenerateReasonRequest, shouldStop: @escaping @Sendable () -> Bool,
        send: (Curec_V1_GenerateReasonResponse) async throws -> Void
    ) async throws {
        let user = try data.user(request.userID)
        let item = try data.item(request.itemID, field: "item_id")
        let options = try Self.options(request.sampling)
        if let chat = try generator.chatModel(request.model) {
            try await streamChatReason(chat, user: user, item: item, options: options,
                                       defaultLimit: request.sampling.maxTokens == 0,
                                       shouldStop: shouldStop, send: send)
            return
        }
        let loaded = try generator.model(request.model)
        var sampling = options
        if request.sampling.maxTokens == 0 {
            sampling.maxTokens = ReasonGenerator.defaultMaxTokens(context: loaded.model.config.context)
        }
        let finalPrompt = try generator.promptTokens(loaded, user: user, item: item, maxTokens: sampling.maxTokens)
        sampling.stopSequences = generator.stopSequences(loaded)
        let finalSampling = sampling
        var emittedBytes: [UInt8] = []
        var generated: [Int32] = []
        let outcome = try await PooledTokenStream.run(
            pool: pool, shouldStop: shouldStop, generate: { emit, isStopped -> Result<[GPTGeneration], GPTError> in
            do {
                return .success(try loaded.lock.withLock { _ in
                    // The caller may have left while this waited for the model.
                    if isStopped() { return [GPTGeneration(tokens: [], finishReason: .cancelled)] }
                    return try loaded.model.generate(prompts: [finalPrompt], options: finalSampling,
                                                     onToken: { _, token in emit(token) }, shouldStop: isStopped)
                })
            } catch {
                return .failure(error as? GPTError ?? .invalidArgument("\(error)"))
            }
        }, onToken: { token in
            generated.append(Int32(token))
            let bytes = (try? loaded.tokenizer.decodeBytes(generated)) ?? emittedBytes
            // Send only whole UTF-8 characters: hold back an incomplete tail.
            let complete = Self.completeUTF8Prefix(bytes)
            let piece = complete.count > emittedBytes.count ? Array(complete[emittedBytes.count...]) : []
            if !piece.isEmpty { emittedBytes = complete }
            try await send(.with {
                $0.text = String(decoding: piece, as: UTF8.self)
                $0.tokenID = Int32(token)
                $0.modelVersion = loaded.version
            })
            return true
        })
        let generation: GPTGeneration
        switch outcome {
        case .success(let generations): generation = generations[0]
        case .failure(let error): throw ServingError.internalFailure("generation failed: \(error.description)")
        }
        if generation.finishReason == .cancelled {
            throw ServingError.deadlineExceeded("the deadline passed after \(generated.count) tokens")
        }
        let text = (try? loaded.tokenizer.decode(generated)) ?? String(decoding: emittedBytes, as: UTF8.self)
        let rawReason = generator.reason(in: text)
        try await send(.with {
            $0.final = true
            $0.finishReason = "\(generation.finishReason)"
            $0.fullText = text
            $0.rawReason = rawReason
            $0.reason = generator.checked(user: user, item: item, rawReason)
            $0.modelVersion = loaded.version
        })
    }

    /// A pair reason from a chat model: the corpus pair prompt in the model's chat format (as
    /// the pipeline writes reasons) streamed like `Generate`; the raw reason is the answer's
    /// reason block, the verifier's filter gives the reason.
    func streamChatReason(_ chat: ChatModelStore.Loaded, user: UInt32, item: UInt32, options: GPTSamplingOptions,
                          defaultLimit: Bool, shouldStop: @escaping @Sendable () -> Bool,
                          send: (Curec_V1_GenerateReasonResponse) async throws -> Void) async throws {
        var sampling = options
        if defaultLimit { sampling.maxTokens = ReasonGenerator.chatReasonMaxTokens }
        let prompt = try generator.chatPromptTokens(chat, user: user, item: item, maxTokens: sampling.maxTokens)
        try await TextGeneration.stream(
            prompt: prompt, loaded: chat, sampling: sampling, defaultLimit: false, stops: [], pool: pool,
            shouldStop: shouldStop
        ) { message in
            if message.final {
                let raw = ReasonWriter.extractReason(from: message.fullText)
                try await send(.with {
                    $0.final = true
                    $0.finishReason = message.finishReason == .length ? "maxTokens" : "stopSequence"
                    $0.fullText = message.fullText
                    $0.rawReason = raw
                    $0.reason = generator.checked(user: user, item: item, raw)
                    $0.modelVersion = message.modelVersion
                })
            } else {
                try await send(.with {
                    $0.text = message.text
                    $0.tokenID = message.tokenID
                    $0.modelVersion = message.modelVersion
                })
            }
        }
    }

    static func options(_ sampling: Curec_V1_SamplingOptions) throws(ServingError) -> GPTSamplingOptions {
        // 0 means the model's default budget, filled in once the model is known.
        let maxTokens = sampling.maxTokens == 0 ? 1 : Int(sampling.maxTokens)
        guard (1...512).contains(maxTokens) else {
            throw ServingError.invalidArgument("sampling.max_tokens is \(sampling.maxTokens); it must be 1 to 512")
        }
        let temperature = sampling.hasTemperature ? sampling.temperature : 0.8
        guard temperature >= 0, temperature <= 5, temperature.isFinite else {
            throw ServingError.invalidArgument("sampling.temperature is \(temperature); it must be 0 to 5")
        }
        let topK = sampling.hasTopK ? Int(sampling.topK) : 40
        guard topK >= 0 else { throw ServingError.invalidArgument("sampling.top_k is \(topK); it must be >= 0") }
        let topP = sampling.hasTopP ? sampling.topP : 0.95
        guard topP > 0, topP <= 1 else { throw ServingError.invalidArgument("sampling.top_p is \(topP); it must be in (0, 1]") }
        let penalty = sampling.hasRepetitionPenalty ? sampling.repetitionPenalty : 1
        guard penalty >= 1, penalty <= 2 else {
            throw ServingError.invalidArgument("sampling.repetition_penalty is \(penalty); it must be 1 to 2")
        }
        return GPTSamplingOptions(maxTokens: maxTokens, temperature: temperature, topK: topK, topP: topP,
                                  stopSequences: [], seed: sampling.seed, repetitionPenalty: penalty)
    }

    /// The longest prefix of `bytes` that ends on a UTF-8 character boundary.
    static func completeUTF8Prefix(_ bytes: [UInt8]) -> [UInt8] {
        var end = bytes.count
        var back = 0
        while end - back > 0, back < 4, bytes[end - back - 1] & 0xC0 == 0x80 { back += 1 }
        guard end - back > 0 else { return bytes }
        let lead = bytes[end - back - 1]
        let needed = lead >= 0xF0 ? 3 : lead >= 0xE0 ? 2 : lead >= 0xC0 ? 1 : 0
        if needed > back { end -= back + 1 }
        return Array(bytes[..<end])
    }
}

import CURecModels
import CURecProto
import Foundation
import Synchronization

/// `curec.v1.GenerationService/Generate`: text from a served chat model (the pretrained base
/// or a fine-tuned version), streamed token by token.
///
/// The request becomes a prompt (a conversation through the model's chat template, or raw
/// text), generation runs on a Dispatch thread holding the model, and text reaches the client
/// as it is decoded: only whole characters, and never a tail that may still become a stop
/// string. The model's end-of-turn token ends generation (finish reason STOP); so does a stop
/// string, which is not returned. Deadline and cancellation stop generation between tokens.
struct TextGeneration: Sendable {
    let models: ChatModelStore
    /// Where generations run (bounded, with a queue limit).
    var pool: GenerationPool = .standard
    /// Tokens and tokens per second of finished generations; nil when metrics are off.
    var metrics: GenerationMetrics? = nil
    /// Most stop strings, and their longest length in bytes.
    static let maxStops = 4, maxStopBytes = 64
    /// Tokens generated when the request sets no limit.
    static let defaultMaxTokens = 256

    /// Generates what `request` asks for and hands every response message to `send`.
    func generate(
        _ request: Curec_V1_GenerateRequest, shouldStop: @escaping @Sendable () -> Bool,
        send: (Curec_V1_GenerateResponse) async throws -> Void
    ) async throws {
        let input = try Self.input(request)
        let options = try ReasonStreaming.options(request.sampling)
        let stops = try Self.stopStrings(request.stop)
        let loaded = try models.model(name: request.model, version: request.version)
        let prompt = try Self.promptTokens(input, tokenizer: loaded.tokenizer)
        try await Self.stream(prompt: prompt, loaded: loaded, sampling: options,
                              defaultLimit: request.sampling.maxTokens == 0, stops: stops,
                              pool: pool, metrics: metrics, shouldStop: shouldStop, send: send)
    }

    /// Generates from `prompt` with `loaded` and hands every message of a `Generate` stream to
    /// `send` (text pieces, then the final message). Shared by `Generate` and by
    /// `GenerateReason` on chat models.
    static func stream(
        prompt: [Int32], loaded: ChatModelStore.Loaded, sampling: SamplingOptions, defaultLimit: Bool,
        stops: [String], pool: GenerationPool, metrics: GenerationMetrics? = nil, shouldStop: @escaping @Sendable () -> Bool,
        send: (Curec_V1_GenerateResponse) async throws -> Void
    ) async throws {
        var options = sampling
        let context = loaded.model.config.context
        guard prompt.count < context else {
            throw ServingError.invalidArgument("the prompt has \(prompt.count) tokens; the model's context holds \(context)")
        }
        if defaultLimit { options.maxTokens = min(Self.defaultMaxTokens, context - prompt.count) }
        options.stopSequences = loaded.tokenizer.endOfTurnStopSequences
        let finalOptions = options
        let matcher = TextStopMatcher(stops: stops)
        var generated: [Int32] = []
        var sentScalars = 0
        var stoppedAt: Int? = nil
        let outcome = try await PooledTokenStream.run(
            pool: pool, shouldStop: shouldStop, generate: { emit, isStopped -> Result<GenerationResult, GenerationError> in
            do throws(GenerationError) {
                return .success(try loaded.lock.withLock { _ throws(GenerationError) in
                    // The caller may have left while this waited for the model.
                    if isStopped() { return GenerationResult(tokens: [], finishReason: .cancelled) }
                    let started = MonotonicClock.nanoseconds()
                    let results = try BatchedGenerator(model: loaded.model).generate(
                        prompts: [prompt.map(Int.init)], options: finalOptions,
                        onToken: { _, token in emit(token) }, shouldStop: isStopped)
                    metrics?.generated(tokens: results.first?.tokens.count ?? 0,
                                       nanoseconds: MonotonicClock.nanoseconds() &- started)
                    return results[0]
                })
            } catch {
                return .failure(error)
            }
        }, onToken: { token in
            generated.append(Int32(token))
            let text = Array(Self.decodeComplete(generated, loaded.tokenizer).unicodeScalars)
            var safe: Int
            switch matcher.check(text) {
            case .running(let upTo): safe = upTo
            case .stopped(let at):
                safe = at
                stoppedAt = at
            }
            safe = max(safe, sentScalars)
            var piece = String.UnicodeScalarView()
            piece.append(contentsOf: text[sentScalars..<safe])
            sentScalars = safe
            try await send(.with {
                $0.text = String(piece)
                $0.tokenID = Int32(token)
                $0.modelVersion = loaded.version
            })
            return stoppedAt == nil
        })
        let result: GenerationResult
        switch outcome {
        case .success(let value): result = value
        case .failure(let error): throw ServingError.internalFailure("generation failed: \(error.description)")
        }
        var text = Array(((try? loaded.tokenizer.decode(result.tokens.map(Int32.init))) ?? "").unicodeScalars)
        let reason: Curec_V1_FinishReason
        if let stoppedAt {
            text = Array(text[..<min(stoppedAt, text.count)])
            reason = .stop
        } else {
            switch result.finishReason {
            case .cancelled:
                throw ServingError.deadlineExceeded("the deadline passed after \(generated.count) tokens")
            case .stopSequence: reason = .stop
            case .maxTokens: reason = .length
            case .contextFull: reason = .context
            }
        }
        var full = String.UnicodeScalarView()
        full.append(contentsOf: text)
        try await send(.with {
            $0.final = true
            $0.finishReason = reason
            $0.promptTokens = UInt32(prompt.count)
            $0.completionTokens = UInt32(stoppedAt != nil ? generated.count : result.tokens.count)
            $0.modelVersion = loaded.version
            $0.fullText = String(full)
        })
    }

    /// What the request asks the model to continue.
    enum Input {
        case chat([ChatMessage])
        case prompt(String)
    }

    static func input(_ request: Curec_V1_GenerateRequest) throws(ServingError) -> Input {
        switch request.input {
        case .chat(let conversation):
            guard !conversation.messages.isEmpty else {
                throw ServingError.invalidArgument("chat.messages is empty; give at least one user message")
            }
            var messages: [ChatMessage] = []
            for (index, message) in conversation.messages.enumerated() {
                let role: ChatMessage.Role
                switch message.role {
                case .system: role = .system
                case .user: role = .user
                case .assistant: role = .assistant
                default:
                    throw ServingError.invalidArgument("chat.messages[\(index)].role must be SYSTEM, USER or ASSISTANT")
                }
                messages.append(ChatMessage(role: role, content: message.content))
            }
            return .chat(messages)
        case .prompt(let text):
            guard !text.isEmpty else { throw ServingError.invalidArgument("prompt is empty") }
            return .prompt(text)
        case nil:
            throw ServingError.invalidArgument("set chat (a conversation) or prompt (raw text)")
        }
    }

    static func stopStrings(_ stops: [String]) throws(ServingError) -> [String] {
        guard stops.count <= maxStops else {
            throw ServingError.invalidArgument("at most \(maxStops) stop strings, got \(stops.count)")
        }
        for (index, stop) in stops.enumerated() where stop.isEmpty || stop.utf8.count > maxStopBytes {
            throw ServingError.invalidArgument("stop[\(index)] must be 1 to \(maxStopBytes) bytes")
        }
        return stops
    }

    static func promptTokens(_ input: Input, tokenizer: PretrainedTokenizer) throws(ServingError) -> [Int32] {
        switch input {
        case .chat(let messages):
            do {
                return try tokenizer.encode(conversation: messages, addingGenerationPrompt: true)
            } catch {
                throw ServingError.invalidArgument("the conversation cannot be rendered: \(error.description)")
            }
        case .prompt(let text):
            return tokenizer.encode(text, allowingSpecialTokens: true)
        }
    }

    /// The text of `ids` up to the last complete character.
    static func decodeComplete(_ ids: [Int32], _ tokenizer: PretrainedTokenizer) -> String {
        guard let bytes = try? tokenizer.bpe.decodeBytes(ids, skippingSpecialTokens: false) else { return "" }
        return String(decoding: ReasonStreaming.completeUTF8Prefix(bytes), as: UTF8.self)
    }
}

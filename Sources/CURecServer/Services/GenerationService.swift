import CURecModels
import CURecProto
import CURecRPC
import Foundation
import Synchronization

/// `curec.v1.GenerationService`: streams recommendation reasons from the built-in LM.
///
/// Generation runs on a Dispatch thread (it is CPU-bound); tokens reach the client as they
/// are produced. The deadline and client cancellation stop generation between tokens.
struct GenerationService: RPCService {
    let data: ServingData
    let models: LanguageModelStore
    /// The prompt the LM was trained to answer for a (user, item) pair.
    let prompt: @Sendable (_ user: UInt32, _ item: UInt32) -> String
    /// Text after which the reason starts, and the marker that ends it.
    let reasonMarker: String
    let endMarker: String

    func register(into router: inout RPCRouter) {
        router.registerServerStreaming(
            service: "curec.v1.GenerationService", method: "GenerateReason",
            request: Curec_V1_GenerateReasonRequest.self, response: Curec_V1_GenerateReasonResponse.self
        ) { request, writer, context in
            let user = try data.user(request.userID)
            let item = try data.item(request.itemID, field: "item_id")
            let options = try Self.options(request.sampling)
            let name = request.model.isEmpty ? "lm" : request.model
            let loaded: LanguageModelStore.Loaded
            do {
                guard let found = try models.latest(name) else {
                    throw RPCError(.failedPrecondition,
                                   "no language model '\(name)' has been trained yet; submit a pretrain or pipeline job first")
                }
                loaded = found
            } catch let error as LanguageModelError {
                throw RPCError(.internal, error.description)
            }
            var promptIDs = loaded.tokenizer.encode(prompt(user, item)).map(Int.init)
            // Keep the prompt's end (item, reasoning marker) and leave room for the answer; the
            // model was trained on windows that start mid-example, so a cut start is familiar.
            let room = loaded.model.config.context - options.maxTokens
            guard room >= 16 else {
                throw RPCError(.invalidArgument,
                               "sampling.max_tokens \(options.maxTokens) leaves no room for the prompt in the model's context of \(loaded.model.config.context) tokens")
            }
            if promptIDs.count > room { promptIDs.removeFirst(promptIDs.count - room) }
            let finalPrompt = promptIDs
            var sampling = options
            if let end = loaded.tokenizer.id(of: endMarker) { sampling.stopSequences = [[Int(end)]] }
            let endTokens = loaded.tokenizer.encode(endMarker).map(Int.init)
            if !endTokens.isEmpty { sampling.stopSequences.append(endTokens) }
            let finalSampling = sampling
            let (tokens, continuation) = AsyncStream.makeStream(of: Int.self, bufferingPolicy: .unbounded)
            let finished = FinishBox()
            let stop = StopFlag()
            let deadline = context.deadline
            DispatchQueue.global().async {
                let result: Result<[GPTGeneration], GPTError>
                do {
                    result = .success(try loaded.lock.withLock { _ in
                        try loaded.model.generate(prompts: [finalPrompt], options: finalSampling, onToken: { _, token in
                            continuation.yield(token)
                        }, shouldStop: {
                            stop.isSet || (deadline.map { ContinuousClock.now >= $0 } ?? false)
                        })
                    })
                } catch {
                    result = .failure(error as? GPTError ?? .invalidArgument("\(error)"))
                }
                finished.set(result)
                continuation.finish()
            }
            var emittedBytes: [UInt8] = []
            var generated: [Int32] = []
            do {
                for await token in tokens {
                    generated.append(Int32(token))
                    let bytes = (try? loaded.tokenizer.decodeBytes(generated)) ?? emittedBytes
                    // Send only whole UTF-8 characters: hold back an incomplete tail.
                    let complete = Self.completeUTF8Prefix(bytes)
                    let piece = complete.count > emittedBytes.count ? Array(complete[emittedBytes.count...]) : []
                    if !piece.isEmpty { emittedBytes = complete }
                    try await writer.send(.with {
                        $0.text = String(decoding: piece, as: UTF8.self)
                        $0.tokenID = Int32(token)
                        $0.modelVersion = loaded.version
                    })
                }
            } catch {
                stop.set()
                throw error
            }
            guard let outcome = finished.get() else { throw RPCError(.internal, "generation ended without a result") }
            let generation: GPTGeneration
            switch outcome {
            case .success(let generations): generation = generations[0]
            case .failure(let error): throw RPCError(.internal, "generation failed: \(error.description)")
            }
            if generation.finishReason == .cancelled {
                throw RPCError(.deadlineExceeded, "the deadline passed after \(generated.count) tokens")
            }
            let text = (try? loaded.tokenizer.decode(generated)) ?? String(decoding: emittedBytes, as: UTF8.self)
            try await writer.send(.with {
                $0.final = true
                $0.finishReason = "\(generation.finishReason)"
                $0.fullText = text
                $0.reason = Self.reason(in: text, marker: reasonMarker, end: endMarker)
                $0.modelVersion = loaded.version
            })
        }
    }

    static func options(_ sampling: Curec_V1_SamplingOptions) throws(RPCError) -> GPTSamplingOptions {
        let maxTokens = sampling.maxTokens == 0 ? 96 : Int(sampling.maxTokens)
        guard (1...512).contains(maxTokens) else {
            throw RPCError(.invalidArgument, "sampling.max_tokens is \(sampling.maxTokens); it must be 1 to 512")
        }
        let temperature = sampling.hasTemperature ? sampling.temperature : 0.8
        guard temperature >= 0, temperature <= 5, temperature.isFinite else {
            throw RPCError(.invalidArgument, "sampling.temperature is \(temperature); it must be 0 to 5")
        }
        let topK = sampling.hasTopK ? Int(sampling.topK) : 40
        guard topK >= 0 else { throw RPCError(.invalidArgument, "sampling.top_k is \(topK); it must be >= 0") }
        let topP = sampling.hasTopP ? sampling.topP : 0.95
        guard topP > 0, topP <= 1 else { throw RPCError(.invalidArgument, "sampling.top_p is \(topP); it must be in (0, 1]") }
        return GPTSamplingOptions(maxTokens: maxTokens, temperature: temperature, topK: topK, topP: topP,
                                  stopSequences: [], seed: sampling.seed)
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

    /// The text between the reason marker and the end marker (or the end of the text).
    static func reason(in text: String, marker: String, end: String) -> String {
        guard let start = text.range(of: marker) else { return "" }
        var tail = text[start.upperBound...]
        if let stop = tail.range(of: end) { tail = tail[..<stop.lowerBound] }
        return tail.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

/// A flag set from one thread and read from another.
final class StopFlag: Sendable {
    private let value = Mutex(false)
    func set() { value.withLock { $0 = true } }
    var isSet: Bool { value.withLock { $0 } }
}

/// The result of the generation thread, handed to the streaming task.
final class FinishBox: Sendable {
    private let value = Mutex<Result<[GPTGeneration], GPTError>?>(nil)
    func set(_ result: Result<[GPTGeneration], GPTError>) { value.withLock { $0 = result } }
    func get() -> Result<[GPTGeneration], GPTError>? { value.withLock { $0 } }
}

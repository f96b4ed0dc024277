import CURecModels
import CURecPipeline
import CURecProto
import CURecRPC
import Foundation

/// Reasons for (user, item) pairs at serving time: why *this* user gets *this* item, written
/// by the tuned chat model from the user's profile and training history and the item, passed
/// through the verifier's sentence filter, regenerated with other seeds when no sentence
/// survives, and cached per (user, item, model version). They are written the way the
/// pipeline writes its reasons (``ReasonGenerator/chatReasons(_:user:items:temperature:topK:seed:shouldStop:)``:
/// the corpus pair prompt in the model's chat format, `ReasonWriter` over `LlamaReasonModel`),
/// so the tuned model is prompted as it was aligned, and the base model as the pipeline's
/// `base` variant prompts it.
///
/// The model: the one a request names (`reason_model`: `smollm2` or a published chat model),
/// otherwise the newest version of ``tunedModelName`` (the aligned LoRA model the pipeline
/// publishes as a chat model) when there is one, otherwise the untuned base SmolLM2.
struct PairReasons: Sendable {
    let generator: ReasonGenerator
    let chatModels: ChatModelStore
    let cache: PairReasonCache
    /// Generations per pair: the first greedy, the others sampled (like the pipeline's
    /// correction candidates) with seeds 1, 2, ...
    var maxAttempts: Int = Self.defaultMaxAttempts
    /// Where the writing runs (bounded, with a queue limit).
    var pool: GenerationPool = .standard

    /// Most items of one request that get pair reasons (each may need a generation).
    static let maxItems = 50

    /// The artifact name under which the pipeline publishes its tuned reason model.
    static let tunedModelName = PublishedName.tunedChatModel.rawValue
    /// Attempts and the sampling of regenerations (greedy text already failed): the
    /// pipeline's (``PairReasonWriter``), which measures served pair reasons the same way.
    static let defaultMaxAttempts = PairReasonWriter.defaultMaxAttempts
    static let retryTemperature: Float = PairReasonWriter.retryTemperature
    static let retryTopK = PairReasonWriter.retryTopK

    /// The model version pair reasons come from: (name, version key for the cache).
    func resolveModel(_ requested: String) throws(ServingError) -> (name: String, version: String) {
        let name: String
        if !requested.isEmpty {
            guard requested == ChatModelStore.baseName || chatModels.isChatModel(requested) else {
                throw ServingError.failedPrecondition("reason_model '\(ChatModelStore.shortened(requested))' is not a chat model; pair reasons need '\(ChatModelStore.baseName)' or a published chat model")
            }
            name = requested
        } else if chatModels.isChatModel(Self.tunedModelName) {
            name = Self.tunedModelName
        } else {
            name = ChatModelStore.baseName
        }
        if name == ChatModelStore.baseName {
            guard chatModels.baseAvailable else {
                throw ServingError.failedPrecondition("pair reasons need the language model file (scripts/fetch-lm fetches it)")
            }
            return (name, ChatModelStore.baseName)
        }
        guard let version = chatModels.artifacts.versions(of: name).last else {
            throw ServingError.failedPrecondition("model '\(name)' has no published version")
        }
        return (name, "models/\(name)/\(version)")
    }

    /// One checked reason per item for `user` ("" for an item whose every attempt failed the
    /// verifier), from the cache or written now. Generation runs on a Dispatch thread, never
    /// on the I/O loop; pairs already being written by another request are waited for.
    func reasons(user: UInt32, items: [UInt32], requestedModel: String,
                 isCancelled: @escaping @Sendable () -> Bool = { false }) async throws -> (texts: [String], version: String) {
        let (name, version) = try resolveModel(requestedModel)
        let keys = items.map { PairReasonCache.Key(user: user, item: $0, model: version) }
        let texts = try await cache.reasons(for: keys, isCancelled: isCancelled) { [self] missing, shouldStop in
            try await pool.run(isAbandoned: shouldStop) {
                try self.write(user: user, items: missing.map(\.item), name: name, version: version, shouldStop: shouldStop)
            }
        }
        return (texts, version)
    }

    /// Writes reasons for `items`, regenerating the empty ones up to ``maxAttempts`` times.
    /// Blocking.
    func write(user: UInt32, items: [UInt32], name: String, version: String,
               shouldStop: @escaping @Sendable () -> Bool = { false }) throws -> [String] {
        let loaded: ChatModelStore.Loaded
        do throws(ChatModelError) {
            loaded = try chatModels.model(name: name, version: version == ChatModelStore.baseName
                                              ? "" : (version as NSString).lastPathComponent)
        } catch {
            throw error
        }
        return try write(loaded, user: user, items: items, shouldStop: shouldStop)
    }

    /// Writes reasons for `items` with `loaded`: greedy first, then the empty ones again,
    /// sampled with seeds 1, 2, ... up to ``maxAttempts`` generations in all. Blocking.
    func write(_ loaded: ChatModelStore.Loaded, user: UInt32, items: [UInt32],
               shouldStop: @escaping @Sendable () -> Bool = { false }) throws(ServingError) -> [String] {
        var texts = [String](repeating: "", count: items.count)
        for attempt in 0..<max(1, maxAttempts) {
            let open = texts.indices.filter { texts[$0].isEmpty }
            guard !open.isEmpty else { break }
            let written = try generator.chatReasons(loaded, user: user, items: open.map { items[$0] },
                                                    temperature: attempt == 0 ? 0 : Self.retryTemperature,
                                                    topK: attempt == 0 ? 0 : Self.retryTopK, seed: UInt64(attempt),
                                                    shouldStop: shouldStop)
            for (slot, text) in zip(open, written) { texts[slot] = text }
        }
        return texts
    }
}

extension RecommendOperations {
    /// The top k with a pair reason for each item (`reason_source` "pair"; empty when every
    /// attempt failed the verifier) and the writing model's version. The model is checked
    /// before anything is ranked.
    func recommendWithPairReasons(_ request: Curec_V1_RecommendRequest,
                                  isCancelled: @escaping @Sendable () -> Bool) async throws -> Curec_V1_RecommendResponse {
        guard let pairReasons else {
            throw ServingError.failedPrecondition("pair reasons are unavailable: the daemon has no dataset corpus to prompt with")
        }
        guard request.k <= PairReasons.maxItems else {
            throw ServingError.invalidArgument("k is \(request.k); pair reasons are written for at most \(PairReasons.maxItems) items per call")
        }
        _ = try pairReasons.resolveModel(request.reasonModel)
        var response = try await rank(request, deadline: nil)
        let user = try data.user(request.userID)
        let items = response.items.compactMap { data.dataset.itemIndex($0.itemID) }.map { UInt32(bitPattern: $0) }
        let (texts, version) = try await pairReasons.reasons(user: user, items: items, requestedModel: request.reasonModel,
                                                             isCancelled: isCancelled)
        for index in response.items.indices where index < texts.count {
            response.items[index].reason = texts[index]
            if !texts[index].isEmpty { response.items[index].reasonSource = "pair" }
        }
        response.reasonModelVersion = version
        return response
    }
}

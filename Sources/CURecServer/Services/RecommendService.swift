import CURecPluginHost
import CURecProto
import CURecRPC

/// `curec.v1.RecommendService` on the wire: each method forwards to ``RecommendOperations``.
///
/// Score runs inline on the I/O threads: plugin scoring is required to be fast
/// (microseconds for hundreds of candidates), and this keeps the hot path free of thread
/// hops. For an isolated instance the loop sends the request to the worker and goes on; the
/// worker's reply thread answers the call, so a hanging plugin holds nothing but its own
/// calls. Only a call for an instance with dynamic batching leaves the loop, to wait in its
/// batch queue as a task. Recommend runs as a task, because with `with_reasons` it also
/// generates text.
struct RecommendService: Curec_V1_RecommendServiceHandler {
    /// Nil when the daemon has no dataset: every call then fails with FAILED_PRECONDITION.
    let operations: RecommendOperations?

    func score(_ request: Curec_V1_ScoreRequest, context: ServerContext) throws -> Curec_V1_ScoreResponse {
        try ServingError.requireDataset(operations).score(request)
    }

    func recommend(_ request: Curec_V1_RecommendRequest, context: ServerContext) async throws -> Curec_V1_RecommendResponse {
        try await ServingError.requireDataset(operations).recommend(request, deadline: context.deadline,
                                                                    shouldStop: { context.shouldStop })
    }

    /// The generated registration, except that Score answers an isolated instance's call
    /// when its worker replies, and declines to answer inline for an instance with dynamic
    /// batching, which then waits in its queue as a task.
    func register(into router: inout RPCRouter) {
        router.registerInlineUnary(Curec_V1_RecommendService.Method.score, answering: { request, _, respond in
            try ServingError.requireDataset(operations).scoreInline(request, respond: respond)
        }, deferred: { request, context in
            try await ServingError.requireDataset(operations).score(request, deadline: context.deadline)
        })
        router.registerUnary(Curec_V1_RecommendService.Method.recommend) { request, context in
            try await recommend(request, context: context)
        }
    }
}

/// Score and Recommend with a recommender plugin, and reasons for what is recommended.
struct RecommendOperations: Sendable {
    let data: ServingData
    let plugins: PluginHost
    let defaultRecommender: String
    /// Writes reasons when a request asks for them; nil when generation is unavailable.
    var reasons: ReasonGenerator? = nil
    /// The corrected reason table the pipeline produced, preferred when it exists.
    var reasonTables: ReasonTableStore? = nil
    /// Cached reasons for (user, item) pairs from the tuned chat model (REASON_SOURCE_PAIR).
    var pairReasons: PairReasons? = nil
    /// Where reasons are written (bounded, with a queue limit).
    var generationPool: GenerationPool = .standard
    /// Per model and method series; nil when metrics are off.
    var metrics: ModelMetrics? = nil

    static let maxCandidates = 10_000

    private func recommender(_ requested: String) throws(ServingError) -> PluginInstance {
        let name = requested.isEmpty ? defaultRecommender : requested
        guard let instance = plugins.instance(named: name) else {
            throw .notFound("plugin '\(name)' is not loaded (see PluginService.List)")
        }
        return instance
    }

    /// The scores of the candidates `request` names, scored directly. Never blocks.
    func score(_ request: Curec_V1_ScoreRequest) throws -> Curec_V1_ScoreResponse {
        let requestStart = metrics == nil ? 0 : MonotonicClock.nanoseconds()
        let (user, candidates, instance) = try checkScore(request)
        return try score(candidates, user: user, instance: instance, since: requestStart)
    }

    /// ``score(_:)`` on the calling thread (the I/O loop); for an isolated instance the
    /// request goes to its worker and `respond` gets the response from the worker's reply
    /// thread (`.later`); an instance that batches declines (the call then goes through
    /// ``score(_:deadline:)``). Never blocks.
    func scoreInline(_ request: Curec_V1_ScoreRequest,
                     respond: @escaping UnaryResponder<Curec_V1_ScoreResponse>) throws -> InlineAnswer<Curec_V1_ScoreResponse> {
        let requestStart = metrics == nil ? 0 : MonotonicClock.nanoseconds()
        let (user, candidates, instance) = try checkScore(request)
        guard instance.batcher == nil else { return .declined }
        guard instance.callsWaitOnAnotherProcess else {
            return .now(try score(candidates, user: user, instance: instance, since: requestStart))
        }
        let series = metrics?.series(model: instance.name, method: "score")
        let executionStart = series == nil ? 0 : MonotonicClock.nanoseconds()
        let servedBy = instance.servedBy
        instance.score(RecommenderRequest(user: user, history: data.histories[Int(user)], candidates: candidates)) { result in
            switch result {
            case .success(let scores):
                series.executionEnded(since: requestStart, executionStart: executionStart, succeeded: true)
                var response = Curec_V1_ScoreResponse()
                response.scores = scores
                response.servedBy = servedBy
                respond(.success(response))
            case .failure(let error):
                series.executionEnded(since: requestStart, executionStart: executionStart, succeeded: false)
                respond(.failure(error))
            }
        }
        return .later
    }

    /// The scores of the candidates `request` names: through the instance's batch queue when
    /// it has dynamic batching (waiting at most until `deadline`), suspended until the
    /// worker replies for an isolated instance, else directly.
    func score(_ request: Curec_V1_ScoreRequest, deadline: ContinuousClock.Instant?) async throws -> Curec_V1_ScoreResponse {
        let requestStart = MonotonicClock.nanoseconds()
        let (user, candidates, instance) = try checkScore(request)
        var response = Curec_V1_ScoreResponse()
        guard instance.batcher != nil else {
            guard instance.callsWaitOnAnotherProcess else {
                return try score(candidates, user: user, instance: instance, since: requestStart)
            }
            response.scores = try await scoreSuspending(
                RecommenderRequest(user: user, history: data.histories[Int(user)], candidates: candidates),
                instance: instance, method: "score", since: requestStart)
            response.servedBy = instance.servedBy
            return response
        }
        response.scores = try await scoreQueued(
            RecommenderRequest(user: user, history: data.histories[Int(user)], candidates: candidates),
            instance: instance, method: "score", since: requestStart, deadline: deadline)
        response.servedBy = instance.servedBy
        return response
    }

    /// The checks of a score request that need no scoring: the user, the items, the instance.
    private func checkScore(_ request: Curec_V1_ScoreRequest) throws -> (UInt32, [UInt32], PluginInstance) {
        let user = try data.user(request.userID)
        guard !request.itemIds.isEmpty else { throw ServingError.invalidArgument("item_ids is empty; give at least one item id") }
        guard request.itemIds.count <= Self.maxCandidates else {
            throw ServingError.invalidArgument("item_ids has \(request.itemIds.count) ids; at most \(Self.maxCandidates) per call")
        }
        var candidates = [UInt32](repeating: 0, count: request.itemIds.count)
        for (index, itemID) in request.itemIds.enumerated() {
            candidates[index] = try data.item(itemID, field: "item_ids[\(index)]")
        }
        return (user, candidates, try recommender(request.plugin))
    }

    /// Scores `candidates` on `instance` now, measured as one execution.
    private func score(_ candidates: [UInt32], user: UInt32, instance: PluginInstance,
                       since requestStart: UInt64) throws -> Curec_V1_ScoreResponse {
        var response = Curec_V1_ScoreResponse()
        response.scores = [Float](repeating: 0, count: candidates.count)
        let series = metrics?.series(model: instance.name, method: "score")
        try series.measure(since: requestStart) {
            try candidates.withUnsafeBufferPointer { candidateBuffer throws(PluginHostError) in
                try response.scores.withUnsafeMutableBufferPointer { scores throws(PluginHostError) in
                    try instance.scoreRecommender(user: user, history: data.histories[Int(user)],
                                                  candidates: candidateBuffer, scores: scores)
                }
            }
        }
        response.servedBy = instance.servedBy
        return response
    }

    /// The top `k` of the catalogue, with reasons when the request asks for them: from the
    /// pipeline's reason table, else written by a language model (blocking; `shouldStop`
    /// ends the writing).
    func recommend(_ request: Curec_V1_RecommendRequest, deadline: ContinuousClock.Instant? = nil,
                   shouldStop: @escaping @Sendable () -> Bool) async throws -> Curec_V1_RecommendResponse
    {
        if request.withReasons && request.reasonSource == .pair {
            return try await recommendWithPairReasons(request, isCancelled: shouldStop)
        }
        var response = try await rank(request, deadline: deadline)
        guard request.withReasons else { return response }
        // AUTO falls back to generation when the table cannot be read; TABLE reports it.
        let table: ReasonTableStore.Loaded?
        switch request.reasonSource {
        case .generate: table = nil
        case .table: table = try reasonTables?.latest()
        default: table = try? reasonTables?.latest()
        }
        if let table {
            table.attach(to: &response, data: data)
            return response
        }
        if request.reasonSource == .table {
            throw ServingError.failedPrecondition(
                "no reason table exists yet; run a pipeline job (curec jobs submit pipeline profile=quick) or ask for REASON_SOURCE_GENERATE")
        }
        guard let reasons else {
            throw ServingError.failedPrecondition("reasons are unavailable: the daemon has no corpus to prompt its language model")
        }
        let user = try data.user(request.userID)
        let items = response.items.compactMap { data.dataset.itemIndex($0.itemID) }.map { UInt32(bitPattern: $0) }
        let texts = try await generationPool.run(isAbandoned: shouldStop) {
            try reasons.reasons(user: user, items: items, modelName: request.reasonModel, shouldStop: shouldStop)
        }
        for index in response.items.indices where index < texts.count {
            response.items[index].reason = texts[index]
            if !texts[index].isEmpty { response.items[index].reasonSource = "generated" }
        }
        return response
    }

    /// The top `k` of the catalogue for the user, without reasons, scored directly.
    func rank(_ request: Curec_V1_RecommendRequest) throws -> Curec_V1_RecommendResponse {
        let requestStart = metrics == nil ? 0 : MonotonicClock.nanoseconds()
        let (user, instance) = try checkRank(request)
        var scores = [Float](repeating: 0, count: data.allItems.count)
        let series = metrics?.series(model: instance.name, method: "recommend")
        try series.measure(since: requestStart) {
            try data.allItems.withUnsafeBufferPointer { candidates throws(PluginHostError) in
                try scores.withUnsafeMutableBufferPointer { output throws(PluginHostError) in
                    try instance.scoreRecommender(user: user, history: data.histories[Int(user)],
                                                  candidates: candidates, scores: output)
                }
            }
        }
        return rankResponse(&scores, user: user, request: request, instance: instance)
    }

    /// The top `k` of the catalogue for the user, without reasons: through the instance's
    /// batch queue when it has dynamic batching (waiting at most until `deadline`; the
    /// calling task's cancellation takes it out of the queue), suspended until the worker
    /// replies for an isolated instance, else directly.
    func rank(_ request: Curec_V1_RecommendRequest, deadline: ContinuousClock.Instant?) async throws
        -> Curec_V1_RecommendResponse
    {
        let requestStart = MonotonicClock.nanoseconds()
        let (user, instance) = try checkRank(request)
        guard instance.batcher != nil else {
            guard instance.callsWaitOnAnotherProcess else { return try rank(request) }
            var scores = try await scoreSuspending(
                RecommenderRequest(user: user, history: data.histories[Int(user)], candidates: data.allItems),
                instance: instance, method: "recommend", since: requestStart)
            return rankResponse(&scores, user: user, request: request, instance: instance)
        }
        var scores = try await scoreQueued(
            RecommenderRequest(user: user, history: data.histories[Int(user)], candidates: data.allItems),
            instance: instance, method: "recommend", since: requestStart, deadline: deadline)
        return rankResponse(&scores, user: user, request: request, instance: instance)
    }

    /// Scores `request` on `instance` through its queue, recording the request (its queue
    /// time included) in the model's series; the executions are recorded by the batcher.
    func scoreQueued(_ request: RecommenderRequest, instance: PluginInstance, method: String, since requestStart: UInt64,
                     deadline: ContinuousClock.Instant?) async throws(PluginHostError) -> [Float] {
        let series = metrics?.series(model: instance.name, method: method)
        do {
            let outcome = try await instance.scoreQueued(request, deadline: Self.monotonicDeadline(deadline), observer: series)
            series?.requestEnded(succeeded: true, requestNanoseconds: MonotonicClock.nanoseconds() &- requestStart,
                                 queueNanoseconds: outcome.queueNanoseconds)
            return outcome.value
        } catch {
            let elapsed = MonotonicClock.nanoseconds() &- requestStart
            series?.requestEnded(succeeded: false, requestNanoseconds: elapsed, queueNanoseconds: elapsed)
            throw error
        }
    }

    /// Scores `request` on an isolated `instance` without holding the thread while its
    /// worker computes, measured as one execution.
    func scoreSuspending(_ request: RecommenderRequest, instance: PluginInstance, method: String,
                         since requestStart: UInt64) async throws -> [Float] {
        let series = metrics?.series(model: instance.name, method: method)
        return try await series.measureSuspending(since: requestStart) { try await instance.scoreSuspending(request) }
    }

    /// A call's deadline on the batcher's monotonic clock.
    static func monotonicDeadline(_ deadline: ContinuousClock.Instant?) -> UInt64? {
        guard let deadline else { return nil }
        let now = ContinuousClock.now
        guard deadline > now else { return MonotonicClock.nanoseconds() }
        let (seconds, attoseconds) = (deadline - now).components
        return MonotonicClock.nanoseconds() &+ UInt64(seconds) &* 1_000_000_000 &+ UInt64(attoseconds / 1_000_000_000)
    }

    /// The checks of a rank request that need no scoring: its user and the instance.
    private func checkRank(_ request: Curec_V1_RecommendRequest) throws -> (UInt32, PluginInstance) {
        let user = try data.user(request.userID)
        guard (1...1000).contains(request.k) else {
            throw ServingError.invalidArgument("k is \(request.k); it must be between 1 and 1000")
        }
        return (user, try recommender(request.plugin))
    }

    /// The response of a rank request from the catalogue's scores.
    private func rankResponse(_ scores: inout [Float], user: UInt32, request: Curec_V1_RecommendRequest,
                              instance: PluginInstance) -> Curec_V1_RecommendResponse {
        if request.excludeSeen {
            for item in data.histories[Int(user)] { scores[Int(item)] = -.infinity }
        }
        let best = TopK.indices(of: scores, k: Int(request.k))
        var response = Curec_V1_RecommendResponse()
        response.items = best.map { index in
            let info = data.dataset.items[index]
            return .with {
                $0.itemID = info.externalID
                $0.score = scores[index]
                $0.title = info.title
            }
        }
        response.servedBy = instance.servedBy
        return response
    }
}

extension ModelMethodMetrics: BatchExecutionObserver {}

/// Selecting the k largest scores.
enum TopK {
    /// Indices of the `k` largest finite values, best first (ties by lower index).
    static func indices(of scores: [Float], k: Int) -> [Int] {
        var heap: [(score: Float, index: Int)] = []  // min-heap of the best k so far
        heap.reserveCapacity(k + 1)
        func less(_ a: (score: Float, index: Int), _ b: (score: Float, index: Int)) -> Bool {
            a.score < b.score || (a.score == b.score && a.index > b.index)
        }
        for (index, score) in scores.enumerated() where score.isFinite {
            let entry = (score, index)
            if heap.count < k {
                heap.append(entry)
                var child = heap.count - 1
                while child > 0 {
                    let parent = (child - 1) / 2
                    if !less(heap[child], heap[parent]) { break }
                    heap.swapAt(child, parent)
                    child = parent
                }
            } else if let top = heap.first, less(top, entry) {
                heap[0] = entry
                var parent = 0
                while true {
                    let left = 2 * parent + 1, right = left + 1
                    var smallest = parent
                    if left < heap.count, less(heap[left], heap[smallest]) { smallest = left }
                    if right < heap.count, less(heap[right], heap[smallest]) { smallest = right }
                    if smallest == parent { break }
                    heap.swapAt(parent, smallest)
                    parent = smallest
                }
            }
        }
        return heap.sorted { less($1, $0) }.map(\.index)
    }
}

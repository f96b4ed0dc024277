import CURecPluginHost
import CURecProto
import CURecRPC

/// `curec.v1.RecommendService`: Score and Recommend with a recommender plugin.
///
/// Score runs inline on the I/O threads: plugin scoring is required to be fast
/// (microseconds for hundreds of candidates), and this keeps the hot path free of thread
/// hops. Recommend runs as a task, because with `with_reasons` it also generates text.
struct RecommendService: RPCService {
    let data: ServingData
    let plugins: PluginHost
    let defaultRecommender: String
    /// Writes reasons when a request asks for them; nil when generation is unavailable.
    var reasons: ReasonGenerator? = nil
    /// The corrected reason table the pipeline produced, preferred when it exists.
    var reasonTables: ReasonTableStore? = nil

    static let maxCandidates = 10_000

    func register(into router: inout RPCRouter) {
        router.registerInlineUnary(Curec_V1_RecommendService.Method.score) { request, _ in try score(request) }
        router.registerUnary(Curec_V1_RecommendService.Method.recommend) { request, context in
            var response = try recommend(request)
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
                throw RPCError(.failedPrecondition,
                               "no reason table exists yet; run a pipeline job (curec jobs submit pipeline profile=quick) or ask for REASON_SOURCE_GENERATE")
            }
            guard let reasons else {
                throw RPCError(.failedPrecondition, "reasons are unavailable: the daemon has no corpus to prompt its language model")
            }
            let user = try data.user(request.userID)
            let items = response.items.compactMap { data.dataset.itemIndex($0.itemID) }.map { UInt32(bitPattern: $0) }
            let deadline = context.deadline
            let texts = try await runBlocking {
                try reasons.reasons(user: user, items: items, modelName: request.reasonModel, shouldStop: {
                    context.isCancelled || (deadline.map { ContinuousClock.now >= $0 } ?? false)
                })
            }
            for index in response.items.indices where index < texts.count {
                response.items[index].reason = texts[index]
                if !texts[index].isEmpty { response.items[index].reasonSource = "generated" }
            }
            return response
        }
    }

    private func recommender(_ requested: String) throws(RPCError) -> PluginInstance {
        let name = requested.isEmpty ? defaultRecommender : requested
        guard let instance = plugins.instance(named: name) else {
            throw RPCError(.notFound, "plugin '\(name)' is not loaded (see PluginService.List)")
        }
        return instance
    }

    static func servedBy(_ instance: PluginInstance) -> String {
        instance.servedBy
    }

    func score(_ request: Curec_V1_ScoreRequest) throws(RPCError) -> Curec_V1_ScoreResponse {
        let user = try data.user(request.userID)
        guard !request.itemIds.isEmpty else { throw RPCError(.invalidArgument, "item_ids is empty; give at least one item id") }
        guard request.itemIds.count <= Self.maxCandidates else {
            throw RPCError(.invalidArgument, "item_ids has \(request.itemIds.count) ids; at most \(Self.maxCandidates) per call")
        }
        var candidates = [UInt32](repeating: 0, count: request.itemIds.count)
        for (index, itemID) in request.itemIds.enumerated() {
            candidates[index] = try data.item(itemID, field: "item_ids[\(index)]")
        }
        let instance = try recommender(request.plugin)
        var response = Curec_V1_ScoreResponse()
        response.scores = [Float](repeating: 0, count: candidates.count)
        do {
            try candidates.withUnsafeBufferPointer { candidateBuffer throws(PluginHostError) in
                try response.scores.withUnsafeMutableBufferPointer { scores throws(PluginHostError) in
                    try instance.scoreRecommender(user: user, history: data.histories[Int(user)],
                                                  candidates: candidateBuffer, scores: scores)
                }
            }
        } catch {
            throw RPCError(error)
        }
        response.servedBy = Self.servedBy(instance)
        return response
    }

    func recommend(_ request: Curec_V1_RecommendRequest) throws(RPCError) -> Curec_V1_RecommendResponse {
        let user = try data.user(request.userID)
        guard (1...1000).contains(request.k) else {
            throw RPCError(.invalidArgument, "k is \(request.k); it must be between 1 and 1000")
        }
        let instance = try recommender(request.plugin)
        let itemCount = data.allItems.count
        var scores = [Float](repeating: 0, count: itemCount)
        do {
            try data.allItems.withUnsafeBufferPointer { candidates throws(PluginHostError) in
                try scores.withUnsafeMutableBufferPointer { output throws(PluginHostError) in
                    try instance.scoreRecommender(user: user, history: data.histories[Int(user)],
                                                  candidates: candidates, scores: output)
                }
            }
        } catch {
            throw RPCError(error)
        }
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
        response.servedBy = Self.servedBy(instance)
        return response
    }
}

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

import Synchronization

/// A dictionary that keeps at most `capacity` entries, dropping the least recently used one
/// (read or written) when a new key would exceed it. Entries live in arrays linked by index,
/// so every operation is O(1).
struct LRUDictionary<Key: Hashable, Value> {
    private struct Node {
        var key: Key
        var value: Value
        var newer: Int?
        var older: Int?
    }

    let capacity: Int
    private var nodes: [Node] = []
    private var slots: [Key: Int] = [:]
    private var newest: Int?
    private var oldest: Int?

    init(capacity: Int) {
        self.capacity = max(1, capacity)
    }

    var count: Int { slots.count }

    /// The keys, most recently used first.
    var keysByRecency: [Key] {
        var keys: [Key] = []
        var cursor = newest
        while let index = cursor {
            keys.append(nodes[index].key)
            cursor = nodes[index].older
        }
        return keys
    }

    /// The value of `key`, which becomes the most recently used.
    mutating func value(for key: Key) -> Value? {
        guard let index = slots[key] else { return nil }
        moveToFront(index)
        return nodes[index].value
    }

    /// The value of `key` without changing the order.
    func peek(_ key: Key) -> Value? {
        slots[key].map { nodes[$0].value }
    }

    /// Stores `value` under `key` as the most recently used entry, evicting the least recently
    /// used one when full.
    mutating func set(_ value: Value, for key: Key) {
        if let index = slots[key] {
            nodes[index].value = value
            moveToFront(index)
            return
        }
        let index: Int
        if slots.count >= capacity, let victim = oldest {
            unlink(victim)
            slots[nodes[victim].key] = nil
            nodes[victim] = Node(key: key, value: value, newer: nil, older: nil)
            index = victim
        } else {
            nodes.append(Node(key: key, value: value, newer: nil, older: nil))
            index = nodes.count - 1
        }
        slots[key] = index
        linkAtFront(index)
    }

    private mutating func unlink(_ index: Int) {
        let newer = nodes[index].newer, older = nodes[index].older
        if let newer { nodes[newer].older = older } else { newest = older }
        if let older { nodes[older].newer = newer } else { oldest = newer }
        nodes[index].newer = nil
        nodes[index].older = nil
    }

    private mutating func linkAtFront(_ index: Int) {
        nodes[index].older = newest
        nodes[index].newer = nil
        if let newest { nodes[newest].newer = index }
        newest = index
        if oldest == nil { oldest = index }
    }

    private mutating func moveToFront(_ index: Int) {
        guard newest != index else { return }
        unlink(index)
        linkAtFront(index)
    }
}

/// Pair reasons by (user, item, model version), bounded (least recently used ones are
/// dropped), with one generation per pair in flight: concurrent requests for a pair that is
/// being written wait for that generation instead of starting another.
///
/// A reason written by one model version is never served for another: a newly published
/// tuned model starts with no cached reasons (the old ones age out).
final class PairReasonCache: Sendable {
    /// What a pair reason is cached under.
    struct Key: Hashable, Sendable {
        var user: UInt32
        var item: UInt32
        /// The model that wrote it: "smollm2" or "models/<name>/vN".
        var model: String
    }

    /// Reasons kept when the daemon is not configured otherwise.
    static let defaultCapacity = 4096

    /// One generation under way and the requests waiting for it: it should stop once every
    /// one of them has gone (cancelled by its client or its deadline).
    final class Flight: Sendable {
        private let waiters = Mutex<[@Sendable () -> Bool]>([])
        private let task = Mutex<Task<[String], any Error>?>(nil)

        func join(_ isCancelled: @escaping @Sendable () -> Bool) { waiters.withLock { $0.append(isCancelled) } }

        /// True when every request waiting for this generation has been cancelled.
        var abandoned: Bool {
            let checks = waiters.withLock { $0 }
            return !checks.isEmpty && checks.allSatisfy { $0() }
        }

        fileprivate func start(_ created: Task<[String], any Error>) { task.withLock { $0 = created } }

        /// The generation's result.
        var value: [String] {
            get async throws {
                guard let running = task.withLock({ $0 }) else { throw CancellationError() }
                return try await running.value
            }
        }
    }

    private struct State {
        var entries: LRUDictionary<Key, String>
        /// Generations under way: the batch writing a pair and the pair's index in it.
        var inFlight: [Key: (flight: Flight, index: Int)] = [:]
        /// Lookups that joined a generation another call started.
        var joined = 0
    }

    private let state: Mutex<State>
    let capacity: Int

    init(capacity: Int = PairReasonCache.defaultCapacity) {
        self.capacity = max(1, capacity)
        state = Mutex(State(entries: LRUDictionary(capacity: capacity)))
    }

    /// Reasons cached now.
    var count: Int { state.withLock { $0.entries.count } }

    /// The cached reason of `key` (nil when absent), without touching its recency.
    func cached(_ key: Key) -> String? { state.withLock { $0.entries.peek(key) } }

    /// Pairs being written now.
    var inFlightCount: Int { state.withLock { $0.inFlight.count } }

    /// Lookups so far that waited for a generation another call had started.
    var joinedCount: Int { state.withLock { $0.joined } }

    /// One reason per key, in order: cached ones at once, pairs being written by an earlier
    /// call from that generation, and the rest from one call of `generate` (with the keys
    /// no one is writing yet, in order; it returns one reason per key). Its results are cached
    /// ("" included: a pair for which nothing survived the verifier is not retried until it
    /// ages out); when it throws, nothing is cached and every waiter gets the error.
    ///
    /// `isCancelled` tells whether this request has gone; `generate` gets `shouldStop`, true
    /// once every request waiting for its batch has gone, so no one's abandoned work runs on.
    func reasons(for keys: [Key], isCancelled: @escaping @Sendable () -> Bool = { false },
                 generate: @escaping @Sendable (_ keys: [Key], _ shouldStop: @escaping @Sendable () -> Bool) async throws -> [String])
        async throws -> [String] {
        enum Slot {
            case ready(String)
            case pending(Flight, Int)
        }
        let slots: [Slot] = state.withLock { state in
            var slots: [Slot] = []
            var misses: [Key] = []
            var missIndex: [Key: Int] = [:]
            var pendingMisses: [(slot: Int, miss: Int)] = []
            for key in keys {
                if let hit = state.entries.value(for: key) {
                    slots.append(.ready(hit))
                } else if let flight = state.inFlight[key] {
                    state.joined += 1
                    flight.flight.join(isCancelled)
                    slots.append(.pending(flight.flight, flight.index))
                } else {
                    let index = missIndex[key] ?? misses.count
                    if index == misses.count {
                        misses.append(key)
                        missIndex[key] = index
                    }
                    pendingMisses.append((slots.count, index))
                    slots.append(.ready(""))  // replaced below
                }
            }
            guard !misses.isEmpty else { return slots }
            let batch = misses
            let flight = Flight()
            flight.join(isCancelled)
            let task = Task<[String], any Error> {
                do {
                    let texts = try await generate(batch, { flight.abandoned })
                    guard texts.count == batch.count else {
                        throw PairReasonCacheError.wrongCount(expected: batch.count, got: texts.count)
                    }
                    self.finish(batch, texts)
                    return texts
                } catch {
                    self.abandon(batch)
                    throw error
                }
            }
            flight.start(task)
            for (index, key) in batch.enumerated() { state.inFlight[key] = (flight, index) }
            for entry in pendingMisses { slots[entry.slot] = .pending(flight, entry.miss) }
            return slots
        }
        var result: [String] = []
        result.reserveCapacity(slots.count)
        for slot in slots {
            switch slot {
            case .ready(let text): result.append(text)
            case .pending(let flight, let index): result.append(try await flight.value[index])
            }
        }
        return result
    }

    private func finish(_ keys: [Key], _ texts: [String]) {
        state.withLock { state in
            for (key, text) in zip(keys, texts) {
                state.entries.set(text, for: key)
                state.inFlight[key] = nil
            }
        }
    }

    private func abandon(_ keys: [Key]) {
        state.withLock { state in
            for key in keys { state.inFlight[key] = nil }
        }
    }
}

/// A generator broke the cache's contract.
enum PairReasonCacheError: Error, CustomStringConvertible {
    case wrongCount(expected: Int, got: Int)

    var description: String {
        switch self {
        case .wrongCount(let expected, let got): return "the reason generator returned \(got) reasons for \(expected) pairs"
        }
    }
}

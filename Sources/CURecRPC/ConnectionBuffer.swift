import Synchronization

/// The request bytes one connection holds in memory, counted against a budget.
///
/// The loop adds what it buffers (partial messages, unary requests waiting for END_STREAM)
/// and what it hands to a streaming handler's queue; the handler side takes its share back
/// as it reads. While the count is over ``limit`` the connection stops crediting the peer's
/// connection-level flow-control window; the first time it drops back under, ``wake`` asks
/// the loop to credit what it held back. Shared between the loop and handler threads.
final class ConnectionBuffer: Sendable {
    /// Bytes the connection may hold before it stops crediting the window.
    let limit: Int
    private let held = Atomic<Int>(0)
    private let starved = Atomic<Bool>(false)
    private let wake: @Sendable () -> Void

    init(limit: Int, wake: @escaping @Sendable () -> Void) {
        self.limit = limit
        self.wake = wake
    }

    /// Bytes held now.
    var heldBytes: Int { held.load(ordering: .relaxed) }

    /// True when over the budget.
    var isOver: Bool { held.load(ordering: .relaxed) > limit }

    /// Counts `count` more bytes held.
    func add(_ count: Int) {
        guard count != 0 else { return }
        held.add(count, ordering: .relaxed)
    }

    /// Counts `count` bytes released; wakes the loop if it was holding back credit and the
    /// count is now under the limit.
    func remove(_ count: Int) {
        guard count != 0 else { return }
        let now = held.subtract(count, ordering: .relaxed).newValue
        if now <= limit, starved.exchange(false, ordering: .acquiringAndReleasing) { wake() }
    }

    /// Records that the loop holds back credit until the count drops under the limit.
    func markStarved() {
        starved.store(true, ordering: .releasing)
        // Released meanwhile: wake now rather than never.
        if !isOver, starved.exchange(false, ordering: .acquiringAndReleasing) { wake() }
    }
}

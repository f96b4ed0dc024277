import Synchronization
import Testing
@testable import CURecRPC

/// The per-connection count of held request bytes that decides flow-control credit.
@Suite struct ConnectionBufferTests {
    @Test func wakesTheLoopOnceWhenItDropsBackUnderTheLimit() {
        let wakes = Atomic<Int>(0)
        let buffer = ConnectionBuffer(limit: 100) { wakes.add(1, ordering: .relaxed) }
        buffer.add(150)
        #expect(buffer.isOver)
        buffer.markStarved()
        #expect(wakes.load(ordering: .relaxed) == 0)
        buffer.remove(30)
        #expect(buffer.isOver && wakes.load(ordering: .relaxed) == 0)
        buffer.remove(30)
        #expect(!buffer.isOver && wakes.load(ordering: .relaxed) == 1)
        buffer.remove(90)
        #expect(buffer.heldBytes == 0 && wakes.load(ordering: .relaxed) == 1)
    }

    @Test func aStarvedMarkAfterTheReleaseStillWakes() {
        let wakes = Atomic<Int>(0)
        let buffer = ConnectionBuffer(limit: 10) { wakes.add(1, ordering: .relaxed) }
        buffer.add(5)
        buffer.markStarved()
        #expect(wakes.load(ordering: .relaxed) == 1)
    }

    @Test func queuedStreamingRequestsCountUntilTheHandlerReadsThem() async throws {
        let buffer = ConnectionBuffer(limit: 1 << 20) {}
        let channel = CallChannel(buffer: buffer, wakeLoop: {})
        channel.deliver([UInt8](repeating: 1, count: 300))
        channel.deliver([UInt8](repeating: 2, count: 200))
        #expect(buffer.heldBytes == 500)
        _ = try await channel.receive()
        #expect(buffer.heldBytes == 200)
        channel.cancel(RPCError(.cancelled, "test"))
        #expect(buffer.heldBytes == 0)
        channel.deliver([UInt8](repeating: 3, count: 50))
        #expect(buffer.heldBytes == 0)
    }
}

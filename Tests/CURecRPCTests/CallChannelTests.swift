import Synchronization
import Testing
@testable import CURecRPC

@Suite struct CallChannelTests {
    /// Waits, yielding to other tasks, until `condition` holds for the channel's state: the
    /// event itself (a handler parked on a continuation), with no clock involved.
    private func waitUntil(_ channel: CallChannel, _ condition: (CallChannel.State) -> Bool) async {
        while !channel.state.withLock({ condition($0) }) { await Task.yield() }
    }

    /// Counts wake-ups the channel asks of its loop.
    final class WakeCounter: Sendable {
        let count = Atomic<Int>(0)
        func wake() { count.add(1, ordering: .relaxed) }
    }

    @Test func senderSuspendsAboveTheHighWaterMarkUntilTheLoopDrains() async throws {
        let counter = WakeCounter()
        let channel = CallChannel(wakeLoop: { counter.wake() })
        let chunk = [UInt8](repeating: 1, count: 100 * 1024)
        let sent = Atomic<Int>(0)
        let sender = Task {
            for _ in 0..<5 {
                try await channel.send(framed: chunk)
                sent.add(1, ordering: .relaxed)
            }
        }
        // 3 chunks (300 KiB) pass the 256 KiB mark: the third send waits.
        await waitUntil(channel) { $0.outboundWaiter != nil }
        #expect(sent.load(ordering: .relaxed) == 2)
        #expect(channel.state.withLock { $0.outboundBytes } == 3 * chunk.count)
        // The loop drains what is queued; the sender resumes and queues the rest.
        let buffer = UnsafeMutablePointer<UInt8>.allocate(capacity: 64 * 1024)
        defer { buffer.deallocate() }
        var drained = 0
        while drained < 5 * chunk.count {
            switch channel.pull(into: buffer, capacity: 64 * 1024) {
            case .copied(let count): drained += count
            case .wouldBlock: await Task.yield()
            case .endOfData: Issue.record("the call has not ended")
            }
        }
        try await sender.value
        #expect(sent.load(ordering: .relaxed) == 5)
        #expect(counter.count.load(ordering: .relaxed) >= 1)
    }

    @Test func cancellationFailsWaitingReceiversAndSenders() async throws {
        let channel = CallChannel(wakeLoop: {})
        let receiver = Task { try await channel.receive() }
        await waitUntil(channel) { $0.inboundWaiter != nil }
        channel.cancel(RPCError(.deadlineExceeded, "deadline"))
        await #expect(throws: RPCError.self) { try await receiver.value }
        await #expect(throws: RPCError.self) { try await channel.send(framed: [1]) }
    }

    @Test func requestsArriveInOrderThenEnd() async throws {
        let channel = CallChannel(wakeLoop: {})
        channel.deliver([1])
        channel.deliver([2, 2])
        channel.finishInbound()
        #expect(try await channel.receive() == [1])
        #expect(try await channel.receive() == [2, 2])
        #expect(try await channel.receive() == nil)
    }

    @Test func finalStatusEndsTheDataAfterQueuedBytes() {
        let channel = CallChannel(wakeLoop: {})
        channel.state.withLock { state in
            state.outbound.append([9, 9, 9])
            state.outboundBytes = 3
        }
        channel.finish(.ok)
        let buffer = UnsafeMutablePointer<UInt8>.allocate(capacity: 16)
        defer { buffer.deallocate() }
        guard case .copied(3) = channel.pull(into: buffer, capacity: 16) else {
            Issue.record("expected the queued bytes first")
            return
        }
        guard case .endOfData = channel.pull(into: buffer, capacity: 16) else {
            Issue.record("expected the end of data")
            return
        }
    }
}

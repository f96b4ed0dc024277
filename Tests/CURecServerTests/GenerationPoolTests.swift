import CURecRPC
import Foundation
import Synchronization
import Testing
@testable import CURecServer

/// The bounded pool generations run on: a worker limit, a queue limit, and callers that
/// leave while waiting.
@Suite struct GenerationPoolTests {
    /// A gate a work item waits at until the test opens it.
    final class Gate: Sendable {
        private let semaphore = DispatchSemaphore(value: 0)
        private let entered = DispatchSemaphore(value: 0)
        func pass() { entered.signal(); semaphore.wait() }
        func waitEntered() { entered.wait() }
        func open() { semaphore.signal() }
    }

    final class Record: Sendable {
        let runs = Mutex<[String]>([])
        let done = DispatchSemaphore(value: 0)
        func add(_ text: String) { runs.withLock { $0.append(text) }; done.signal() }
    }

    @Test func beyondTheQueueLimitASubmissionIsRefused() throws {
        let pool = GenerationPool(workers: 1, queueLimit: 1)
        let gate = Gate()
        let record = Record()
        try pool.submit(.init(isAbandoned: { false }) { _ in gate.pass(); record.add("first") })
        gate.waitEntered()
        try pool.submit(.init(isAbandoned: { false }) { abandoned in record.add(abandoned ? "second skipped" : "second") })
        #expect(pool.load.running == 1 && pool.load.waiting == 1)
        do {
            try pool.submit(.init(isAbandoned: { false }) { _ in record.add("third") })
            Issue.record("a third generation was accepted beyond a queue of one")
        } catch {
            #expect(RPCError(converting: error).status.code == .resourceExhausted)
            #expect(error.description.contains("1 running, 1 waiting"))
        }
        gate.open()
        record.done.wait()
        record.done.wait()
        #expect(record.runs.withLock { $0 } == ["first", "second"])
    }

    @Test func aWaitingGenerationWhoseCallerLeftNeverRuns() throws {
        let pool = GenerationPool(workers: 1, queueLimit: 4)
        let gate = Gate()
        let record = Record()
        let left = Atomic<Bool>(false)
        try pool.submit(.init(isAbandoned: { false }) { _ in gate.pass(); record.add("running") })
        gate.waitEntered()
        try pool.submit(.init(isAbandoned: { left.load(ordering: .relaxed) }) { abandoned in
            record.add(abandoned ? "skipped" : "ran")
        })
        left.store(true, ordering: .relaxed)
        gate.open()
        record.done.wait()
        record.done.wait()
        #expect(record.runs.withLock { $0 } == ["running", "skipped"])
        #expect(pool.load.running == 0 || pool.load.waiting == 0)
    }

    @Test func runReturnsTheResultOrCancelledForACallerThatLeft() async throws {
        let pool = GenerationPool(workers: 1, queueLimit: 1)
        #expect(try await pool.run(isAbandoned: { false }) { 6 * 7 } == 42)
        await #expect(throws: RPCError.self) {
            _ = try await pool.run(isAbandoned: { true }) { 1 }
        }
    }
}

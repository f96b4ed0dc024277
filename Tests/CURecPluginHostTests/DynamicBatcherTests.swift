import Foundation
import Synchronization
import Testing
@testable import CURecPluginHost

/// A batch executor the test drives: it records every batch, answers each request with its
/// own value doubled (or fails the negative ones), and, while held, blocks the batch thread
/// until the test releases it.
private final class ScriptedExecutor: Sendable {
    private let batches = Mutex<[[Int]]>([])
    private let gate = NSCondition()
    private let held = Mutex(false)
    private let running = Mutex(0)

    var executed: [[Int]] { batches.withLock { $0 } }
    /// Batches that entered `execute` (and may be waiting at the gate).
    var started: Int { running.withLock { $0 } }

    func hold() { held.withLock { $0 = true } }

    func release() {
        gate.lock()
        held.withLock { $0 = false }
        gate.broadcast()
        gate.unlock()
    }

    func execute(_ requests: [Int]) -> [Result<Int, PluginHostError>] {
        running.withLock { $0 += 1 }
        gate.lock()
        while held.withLock({ $0 }) { gate.wait() }
        gate.unlock()
        batches.withLock { $0.append(requests) }
        return requests.map { $0 < 0 ? .failure(.plugin(code: 5, message: "no such user \($0)", function: "score", instance: "t")) : .success($0 * 2) }
    }
}

private func batcher(_ executor: ScriptedExecutor, delay: Int = 1_000_000, preferred: [Int] = [], max: Int = 8,
                     queue: Int = 64) -> DynamicBatcher<Int, Int> {
    DynamicBatcher(instance: "t", configuration: DynamicBatchingConfiguration(
        maxQueueDelayMicroseconds: delay, preferredBatchSizes: preferred, maxBatchSize: max, maxQueueSize: queue)) {
        executor.execute($0)
    }
}

/// Waits (yielding, never sleeping) until `condition` holds.
private func eventually(_ condition: () -> Bool) async {
    while !condition() { await Task.yield() }
}

@Suite struct DynamicBatcherTests {
    @Test func aPreferredSizeGoesAtOnceWithoutWaitingForTheDelay() async throws {
        let executor = ScriptedExecutor()
        // A one-second delay: the four requests can only finish together before it if the
        // preferred size sends them (the results say which batch served them).
        let queue = batcher(executor, delay: 1_000_000, preferred: [2, 4], max: 8)
        let outcomes = try await withThrowingTaskGroup(of: BatchedOutcome<Int>.self) { group in
            for value in 1...4 { group.addTask { try await queue.submit(value) } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(outcomes.map(\.value).sorted() == [2, 4, 6, 8])
        #expect(outcomes.allSatisfy { $0.batchSize == 4 })
        #expect(executor.executed.map { $0.sorted() } == [[1, 2, 3, 4]])
    }

    @Test func aLoneRequestRunsOnceTheDelayPasses() async throws {
        let executor = ScriptedExecutor()
        let queue = batcher(executor, delay: 200, preferred: [8], max: 8)
        let outcome = try await queue.submit(21)
        #expect(outcome.value == 42 && outcome.batchSize == 1)
        #expect(outcome.queueNanoseconds >= 200_000)
        #expect(executor.executed == [[21]])
    }

    @Test func aLoneRequestAtAQuietInstanceRunsWithoutTheDelay() async throws {
        let executor = ScriptedExecutor()
        // The largest delay allowed: the first request waits it (an instance starts as busy),
        // the second finds the instance quiet and runs at once, far inside the delay.
        let delay = DynamicBatchingConfiguration.Bounds.maxQueueDelayMicroseconds.upperBound
        let queue = batcher(executor, delay: delay, max: 8)
        let first = try await queue.submit(1)
        #expect(first.batchSize == 1 && first.queueNanoseconds >= UInt64(delay) * 1000)
        let second = try await queue.submit(2)
        #expect(second.value == 4 && second.batchSize == 1)
        #expect(second.queueNanoseconds < UInt64(delay) * 1000)
        #expect(executor.executed == [[1], [2]])
    }

    @Test func afterABatchOfSeveralALoneRequestWaitsForOthers() async throws {
        let executor = ScriptedExecutor()
        let queue = batcher(executor, delay: DynamicBatchingConfiguration.Bounds.maxQueueDelayMicroseconds.upperBound, max: 2)
        // Two at once fill the maximum and run together: the instance has seen concurrency.
        async let a = queue.submit(1)
        async let b = queue.submit(2)
        #expect(try await [a.batchSize, b.batchSize] == [2, 2])
        // So a lone request waits (up to the delay) and the next one joins it.
        let c = Task { try await queue.submit(3) }
        await eventually { queue.queuedCount == 1 || executor.executed.count == 2 }
        let d = try await queue.submit(4)
        let waited = try await c.value
        if waited.batchSize == 2 {
            #expect(d.batchSize == 2)
            #expect(executor.executed.map { $0.sorted() } == [[1, 2], [3, 4]])
        } else {
            // The test itself was descheduled past the delay: request 3 then ran alone, but
            // only once its whole delay had passed.
            #expect(waited.queueNanoseconds >= Self.fullDelayNanoseconds)
        }
    }

    /// The longest queue delay the settings allow, in nanoseconds.
    static let fullDelayNanoseconds = UInt64(DynamicBatchingConfiguration.Bounds.maxQueueDelayMicroseconds.upperBound) * 1000

    @Test func aRequestArrivingDuringALoneExecutionEndsTheQuiet() async throws {
        let executor = ScriptedExecutor()
        let queue = batcher(executor, delay: DynamicBatchingConfiguration.Bounds.maxQueueDelayMicroseconds.upperBound, max: 2)
        _ = try await queue.submit(1)                    // waits the delay; now quiet
        executor.hold()
        let lone = Task { try await queue.submit(2) }    // runs at once, held
        await eventually { executor.started == 2 }
        let during = Task { try await queue.submit(3) }  // arrives while it runs
        await eventually { queue.queuedCount == 1 }
        executor.release()
        #expect(try await lone.value.batchSize == 1)
        // Request 3 was queued when the lone execution ended: it waits for company.
        await eventually { executor.executed.count >= 2 }
        let joining = try await queue.submit(4)
        let waited = try await during.value
        if waited.batchSize == 2 {
            #expect(joining.batchSize == 2)
            #expect(executor.executed.map { $0.sorted() } == [[1], [2], [3, 4]])
        } else {
            // The test itself was descheduled past the delay: request 3 then ran alone, but
            // only once its whole delay had passed, never at once.
            #expect(waited.queueNanoseconds >= Self.fullDelayNanoseconds)
        }
    }

    @Test func requestsArrivingDuringABatchFormTheNextUpToTheMaximum() async throws {
        let executor = ScriptedExecutor()
        executor.hold()
        let queue = batcher(executor, delay: 0, max: 4)
        let first = Task { try await queue.submit(0) }
        await eventually { executor.started == 1 }
        // Ten requests queue while the first batch runs; they leave in batches of at most 4.
        let rest = (1...10).map { value in Task { try await queue.submit(value) } }
        await eventually { queue.queuedCount == 10 }
        executor.release()
        #expect(try await first.value.value == 0)
        for (index, task) in rest.enumerated() { #expect(try await task.value.value == (index + 1) * 2) }
        let sizes = executor.executed.map(\.count)
        #expect(sizes.first == 1 && sizes.dropFirst().allSatisfy { $0 <= 4 } && sizes.reduce(0, +) == 11)
        #expect(sizes.dropFirst().first == 4)
        #expect(executor.executed.flatMap { $0 }.sorted() == Array(0...10))
    }

    @Test func anExpiredRequestLeavesTheQueueUnexecutedAndTheOthersRun() async throws {
        let executor = ScriptedExecutor()
        executor.hold()
        let queue = batcher(executor, delay: 0, max: 8)
        let first = Task { try await queue.submit(1) }
        await eventually { executor.started == 1 }
        let expired = Task { try await queue.submit(2, deadline: DynamicBatcher<Int, Int>.now()) }
        let alive = Task { try await queue.submit(3) }
        await eventually { queue.queuedCount == 2 }
        executor.release()
        _ = try await first.value
        #expect(try await alive.value.value == 6)
        do {
            _ = try await expired.value
            Issue.record("the expired request ran")
        } catch let error as PluginHostError {
            guard case .deadlineExpiredInQueue(let instance) = error else { Issue.record("got \(error)"); return }
            #expect(instance == "t")
        }
        #expect(!executor.executed.flatMap { $0 }.contains(2))
    }

    @Test func aCancelledRequestLeavesTheQueueAndIsNeverExecuted() async throws {
        let executor = ScriptedExecutor()
        executor.hold()
        let queue = batcher(executor, delay: 0, max: 8)
        let first = Task { try await queue.submit(1) }
        await eventually { executor.started == 1 }
        let cancelled = Task { try await queue.submit(7) }
        let kept = Task { try await queue.submit(8) }
        await eventually { queue.queuedCount == 2 }
        cancelled.cancel()
        await eventually { queue.queuedCount == 1 }
        executor.release()
        _ = try await first.value
        #expect(try await kept.value.value == 16)
        do {
            _ = try await cancelled.value
            Issue.record("the cancelled request ran")
        } catch let error as PluginHostError {
            guard case .cancelledInQueue = error else { Issue.record("got \(error)"); return }
        }
        #expect(executor.executed.flatMap { $0 }.sorted() == [1, 8])
    }

    @Test func aFullQueueRefusesAtOnce() async throws {
        let executor = ScriptedExecutor()
        executor.hold()
        let queue = batcher(executor, delay: 0, max: 8, queue: 2)
        let first = Task { try await queue.submit(1) }
        await eventually { executor.started == 1 }
        let waiting = (2...3).map { value in Task { try await queue.submit(value) } }
        await eventually { queue.queuedCount == 2 }
        do {
            _ = try await queue.submit(4)
            Issue.record("a third waiting request was accepted")
        } catch {
            guard case .queueFull(let instance, let limit) = error else { Issue.record("got \(error)"); return }
            #expect(instance == "t" && limit == 2)
            #expect(error.description.contains("max_queue_size"))
        }
        executor.release()
        _ = try await first.value
        for task in waiting { _ = try await task.value }
    }

    @Test func oneRequestsErrorLeavesTheOthersOfItsBatch() async throws {
        let executor = ScriptedExecutor()
        let queue = batcher(executor, delay: 1_000_000, preferred: [3], max: 8)
        let results = await withTaskGroup(of: (Int, Result<Int, PluginHostError>).self) { group in
            for value in [5, -1, 6] {
                group.addTask {
                    do throws(PluginHostError) { return (value, .success(try await queue.submit(value).value)) }
                    catch { return (value, .failure(error)) }
                }
            }
            return await group.reduce(into: [Int: Result<Int, PluginHostError>]()) { $0[$1.0] = $1.1 }
        }
        #expect(executor.executed.count == 1)
        #expect(try results[5]?.get() == 10 && results[6]?.get() == 12)
        guard case .failure(.plugin(let code, let message, _, _))? = results[-1] else {
            Issue.record("the failing request did not fail alone: \(String(describing: results[-1]))")
            return
        }
        #expect(code == 5 && message == "no such user -1")
    }

    @Test func settingsOutOfRangeAreRefusedNamingTheField() throws {
        func refusal(_ configuration: DynamicBatchingConfiguration, pluginMaximum: Int = 64) -> String? {
            do {
                _ = try configuration.validated(pluginMaximum: pluginMaximum)
                return nil
            } catch {
                return error.description
            }
        }
        #expect(refusal(.init(maxQueueDelayMicroseconds: 2_000_000))?.contains("max_queue_delay_microseconds is 2000000") == true)
        #expect(refusal(.init(maxQueueDelayMicroseconds: -1))?.contains("max_queue_delay_microseconds") == true)
        #expect(refusal(.init(maxQueueSize: 0))?.contains("max_queue_size is 0") == true)
        #expect(refusal(.init(maxBatchSize: 100))?.contains("at most 64 requests") == true)
        #expect(refusal(.init(maxBatchSize: -3))?.contains("max_batch_size is -3") == true)
        #expect(refusal(.init(preferredBatchSizes: [4, 2]))?.contains("strictly ascending") == true)
        #expect(refusal(.init(preferredBatchSizes: [0]))?.contains("preferred_batch_size[0] is 0") == true)
        #expect(refusal(.init(preferredBatchSizes: [8], maxBatchSize: 4))?.contains("preferred_batch_size[0] is 8") == true)
        #expect(refusal(.init(preferredBatchSizes: Array(1...17)), pluginMaximum: 64)?.contains("at most 16") == true)
        #expect(refusal(.init(preferredBatchSizes: [2, 8], maxBatchSize: 0)) == nil)
        #expect(try DynamicBatchingConfiguration().validated(pluginMaximum: 32).maxBatchSize == 32)
    }

    @Test func whenABatchIsDue() {
        let config = DynamicBatchingConfiguration(preferredBatchSizes: [2, 4], maxBatchSize: 6)
        typealias State = DynamicBatcher<Int, Int>.SharedState
        #expect(State.batchSize(waiting: 0, delayPassed: true, configuration: config) == nil)
        #expect(State.batchSize(waiting: 1, delayPassed: false, configuration: config) == nil)
        #expect(State.batchSize(waiting: 3, delayPassed: false, configuration: config) == nil)
        #expect(State.batchSize(waiting: 3, delayPassed: true, configuration: config) == 2)
        #expect(State.batchSize(waiting: 1, delayPassed: true, configuration: config) == 1)
        #expect(State.batchSize(waiting: 5, delayPassed: false, configuration: config) == 4)
        #expect(State.batchSize(waiting: 9, delayPassed: false, configuration: config) == 6)
    }
}

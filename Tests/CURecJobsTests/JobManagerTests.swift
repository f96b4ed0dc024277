import Foundation
import Logging
import Synchronization
import Testing
@testable import CURecJobs

/// A job kind whose steps the test controls.
struct CountingJob: JobKind {
    let steps: Int
    let stepDelay: Duration
    var name: String { "count" }
    static let fail: JobParameter<Bool> = .boolean("fail", default: false, doc: "fail after the last step")
    var parameters: JobParameterSchema { JobParameterSchema(kind: "count", [Self.fail]) }

    func validate(_ values: JobParameterValues) throws(JobError) {}

    func run(_ context: JobContext) throws -> JobOutcome {
        // Resume from the checkpoint file if an earlier attempt left one.
        let marker = context.checkpointDirectory + "/step"
        var step = (try? String(contentsOfFile: marker, encoding: .utf8)).flatMap { Int($0) } ?? 0
        let firstStep = step
        while step < steps {
            if context.isCancelled { throw JobCancelled() }
            Thread.sleep(forTimeInterval: Double(stepDelay.components.attoseconds) / 1e18)
            step += 1
            try String(step).write(toFile: marker, atomically: true, encoding: .utf8)
            context.progress(stage: "count", step: UInt64(step), total: UInt64(steps))
        }
        if context.values[Self.fail] { throw JobError.invalidParameter("asked to fail") }
        return JobOutcome(metrics: ["steps": Double(step), "attempt": Double(context.attempt),
                                    "first_step": Double(firstStep)])
    }
}

/// The job manager and store, on every backend this run has (``StoreBackend``).
@Suite(.serialized) struct JobManagerTests {
    /// Waits for the first event of job `id` that satisfies `condition`: `watch` delivers the
    /// current state first and then every change, so no change can be missed.
    @discardableResult
    private func waitForEvent(_ manager: JobManager, _ id: String,
                              where condition: (JobEvent) -> Bool) async throws -> JobEvent? {
        for await event in try manager.watch(id) where condition(event) { return event }
        Issue.record("job \(id) ended its events without the one awaited")
        return nil
    }

    private func waitForFinal(_ manager: JobManager, _ id: String) async throws -> JobRecord {
        try await waitForEvent(manager, id) { $0.isFinal }
        return try manager.get(id)
    }

    @Test(arguments: StoreBackend.available) func runsJobsToSuccessAndFailure(_ backend: StoreBackend) async throws {
        let jobs = try TestStoreLocation(backend).manager()
        jobs.start()
        defer { jobs.stop(timeout: 5) }
        let good = try jobs.submit(kind: "count", parameters: [:])
        let bad = try jobs.submit(kind: "count", parameters: ["fail": "true"])
        let goodRecord = try await waitForFinal(jobs, good.id)
        #expect(goodRecord.state == .succeeded)
        #expect(goodRecord.metrics["steps"] == 5)
        #expect(goodRecord.step == 5 && goodRecord.total == 5)
        let badRecord = try await waitForFinal(jobs, bad.id)
        #expect(badRecord.state == .failed)
        #expect(badRecord.error.contains("asked to fail"))
    }

    @Test(arguments: StoreBackend.available) func refusesUnknownKindsBadParametersAndAFullQueue(_ backend: StoreBackend) throws {
        let jobs = try TestStoreLocation(backend).manager(queue: 2)
        #expect(throws: JobError.self) { try jobs.submit(kind: "nope", parameters: [:]) }
        #expect(throws: JobError.self) { try jobs.submit(kind: "count", parameters: ["fail": "maybe"]) }
        _ = try jobs.submit(kind: "count", parameters: [:])
        _ = try jobs.submit(kind: "count", parameters: [:])
        do {
            _ = try jobs.submit(kind: "count", parameters: [:])
            Issue.record("the third job should not fit")
        } catch {
            guard case .queueFull = error else { Issue.record("expected a full queue, got \(error)"); return }
        }
    }

    @Test(arguments: StoreBackend.available) func cancelsQueuedAndRunningJobsAndRefusesEndedOnes(_ backend: StoreBackend) async throws {
        // Long enough that the running job cannot end by itself before it is cancelled, however
        // slowly this test gets scheduled.
        let jobs = try TestStoreLocation(backend).manager(steps: 1_000_000, delay: .milliseconds(2))
        let running = try jobs.submit(kind: "count", parameters: [:])
        let queued = try jobs.submit(kind: "count", parameters: [:])
        jobs.start()
        defer { jobs.stop(timeout: 5) }
        try await waitForEvent(jobs, running.id) { $0.step >= 2 }
        #expect(try jobs.cancel(queued.id).state == .cancelled)
        _ = try jobs.cancel(running.id)
        let record = try await waitForFinal(jobs, running.id)
        #expect(record.state == .cancelled)
        #expect(record.step < 1_000_000)
        do {
            _ = try jobs.cancel(running.id)
            Issue.record("cancelling an ended job should fail")
        } catch {
            guard case .alreadyEnded = error else { Issue.record("expected an ended job, got \(error)"); return }
        }
    }

    @Test(arguments: StoreBackend.available) func watchStartsWithTheCurrentStateAndEndsWithTheFinalOne(_ backend: StoreBackend) async throws {
        let jobs = try TestStoreLocation(backend).manager()
        let job = try jobs.submit(kind: "count", parameters: [:])
        let events = try jobs.watch(job.id)
        jobs.start()
        defer { jobs.stop(timeout: 5) }
        var seen: [JobEvent] = []
        for await event in events { seen.append(event) }
        #expect(seen.first?.state == .queued)
        #expect(seen.last?.state == .succeeded)
        #expect(seen.contains { $0.stage == "count" && $0.step == 5 })
    }

    @Test(arguments: StoreBackend.available) func aRestartResumesInterruptedJobsFromTheirCheckpoint(_ backend: StoreBackend) async throws {
        let location = try TestStoreLocation(backend)
        var id = ""
        do {
            // Long enough that it cannot finish before `stop`, however slow the machine.
            let first = try location.manager(steps: 1_000_000, delay: .milliseconds(2))
            id = try first.submit(kind: "count", parameters: [:]).id
            first.start()
            try await waitForEvent(first, id) { $0.step >= 10 }
            first.stop(timeout: 5)  // a graceful stop pauses the job: queued again, not a crash
            #expect(try first.get(id).state == .queued)
            #expect(try first.get(id).crashes == 0)
        }
        let second = try location.manager(steps: 400, delay: .milliseconds(1))
        #expect(try second.get(id).state == .queued)
        second.start()
        defer { second.stop(timeout: 5) }
        let record = try await waitForFinal(second, id)
        #expect(record.state == .succeeded)
        #expect(record.attempts == 2)
        #expect(try second.logLines(of: id).contains { $0.contains("resume") })
    }

    private func storedRecord(in location: TestStoreLocation, state: JobState, finishedMS: Int64 = 0,
                              edit: (inout JobRecord) -> Void = { _ in }) throws -> JobRecord {
        let store = try location.openStore()
        defer { store.close() }
        var record = JobRecord(id: "job-\(UUID().uuidString.prefix(8))", kind: "count", parameters: [:], state: state,
                               createdMS: 1_000)
        record.finishedMS = finishedMS
        record.attempts = state == .running ? 1 : 0
        edit(&record)
        try store.save(record)
        return record
    }

    @Test(arguments: StoreBackend.available) func aJobTheDaemonDiedUnderTooOftenIsFailedNotRunAgain(_ backend: StoreBackend) throws {
        let path = try TestStoreLocation(backend)
        // Died under once before: this start counts the second crash and resumes it.
        let resumed = try storedRecord(in: path, state: .running) { $0.crashes = 1 }
        // Died under twice before: the third crash fails it (the limit is 3).
        let looping = try storedRecord(in: path, state: .running) { $0.crashes = 2 }
        let jobs = try path.manager()
        let again = try jobs.get(resumed.id)
        #expect(again.state == .queued && again.crashes == 2)
        let failed = try jobs.get(looping.id)
        #expect(failed.state == .failed && failed.crashes == 3)
        #expect(failed.error.contains("the daemon stopped 3 times while this job ran"))
    }

    @Test(arguments: StoreBackend.available) func aCancellationSurvivesARestart(_ backend: StoreBackend) throws {
        let path = try TestStoreLocation(backend)
        let cancelledWhileRunning = try storedRecord(in: path, state: .running) { $0.cancelRequested = true }
        let jobs = try path.manager()
        let record = try jobs.get(cancelledWhileRunning.id)
        #expect(record.state == .cancelled && record.finishedMS > 0)
    }

    @Test(arguments: StoreBackend.available) func cancellingARunningJobIsStoredBeforeTheAnswer(_ backend: StoreBackend) async throws {
        let location = try TestStoreLocation(backend)
        let jobs = try location.manager(steps: 1_000_000, delay: .milliseconds(2))
        let running = try jobs.submit(kind: "count", parameters: [:])
        jobs.start()
        defer { jobs.stop(timeout: 5) }
        try await waitForEvent(jobs, running.id) { $0.step >= 1 }
        let answer = try jobs.cancel(running.id)
        #expect(answer.cancelRequested)
        // What another process opening the store now sees.
        let otherStore = try location.openStore()
        defer { otherStore.close() }
        let stored = try #require(try otherStore.fetch(running.id))
        #expect(stored.cancelRequested || stored.state == .cancelled)
        #expect(try await waitForFinal(jobs, running.id).state == .cancelled)
    }

    @Test(arguments: StoreBackend.available) func finishedJobsPastTheRetentionAreDeleted(_ backend: StoreBackend) throws {
        let path = try TestStoreLocation(backend)
        let old = try storedRecord(in: path, state: .succeeded, finishedMS: 2_000)
        let recent = try storedRecord(in: path, state: .failed, finishedMS: Int64(Date().timeIntervalSince1970 * 1000))
        let waiting = try storedRecord(in: path, state: .queued)
        let checkpoint = (path.jobsDirectory as NSString).appendingPathComponent("\(old.id)/checkpoint")
        try FileManager.default.createDirectory(atPath: checkpoint, withIntermediateDirectories: true)
        let jobs = try path.manager()
        #expect(throws: JobError.self) { try jobs.get(old.id) }
        #expect(!FileManager.default.fileExists(atPath: checkpoint))
        #expect(try jobs.get(recent.id).state == .failed)
        #expect(try jobs.get(waiting.id).state == .queued)
    }

    @Test func parametersAreLimitedInSize() throws {
        let jobs = try TestStoreLocation(.sqlite).manager()
        do {
            _ = try jobs.submit(kind: "count", parameters: ["fail": String(repeating: "x", count: 70_000)])
            Issue.record("70 KB of parameters should be refused")
        } catch {
            guard case .parametersTooLarge(let limit) = error else { Issue.record("expected parametersTooLarge, got \(error)"); return }
            #expect(limit == 64 << 10)
            #expect(error.description.count < 200)
        }
    }

    @Test(arguments: StoreBackend.available) func listPagesFollowOneAnother(_ backend: StoreBackend) throws {
        let store = try TestStoreLocation(backend).openStore()
        defer { store.close() }
        for index in 0..<25 {
            // Some share a creation time, so the id breaks ties.
            try store.save(JobRecord(id: String(format: "job-%03d", index), kind: "count", parameters: [:], state: .succeeded,
                                     createdMS: Int64(index / 3)))
        }
        var seen: [String] = []
        var after: JobListPosition? = nil
        while true {
            let page = try store.list(state: nil, kind: nil, limit: 10, after: after)
            seen += page.map(\.id)
            guard page.count == 10, let last = page.last else { break }
            after = JobListPosition(createdMS: last.createdMS, id: last.id)
        }
        #expect(seen == (0..<25).reversed().map { String(format: "job-%03d", $0) })
    }

    @Test(arguments: StoreBackend.available) func aStateThatCannotBeStoredIsRetriedThenReported(_ backend: StoreBackend) async throws {
        let location = try TestStoreLocation(backend)
        let jobs = try location.manager()
        let (reports, reported) = AsyncStream.makeStream(of: String.self)
        jobs.onStorageFailure { reported.yield($0) }
        // Every write of a finished state fails, as on a full disk.
        try location.failWritesOfSucceededJobs()
        let job = try jobs.submit(kind: "count", parameters: [:])
        jobs.start()
        defer { jobs.stop(timeout: 5) }
        var iterator = reports.makeAsyncIterator()
        let report = await iterator.next()
        #expect(report?.contains(job.id) == true)
        #expect(report?.contains("disk is full") == true)
        // The store keeps the last state it could write; nothing claims more.
        #expect(try jobs.get(job.id).state == .running)
    }

    @Test(arguments: StoreBackend.available) func aWriterThatReadBeforeACancellationDoesNotClearIt(_ backend: StoreBackend) throws {
        let store = try TestStoreLocation(backend).openStore()
        defer { store.close() }
        var record = JobRecord(id: "job-a", kind: "count", parameters: [:], state: .running, createdMS: 1)
        try store.save(record)
        #expect(try store.markCancelRequested("job-a", logLine: "cancel")?.cancelRequested == true)
        record.step = 3  // progress computed from the record as read before the cancellation
        try store.save(record)
        let stored = try #require(try store.fetch("job-a"))
        #expect(stored.cancelRequested && stored.step == 3)
        record.state = .succeeded
        try store.save(record)
        #expect(try store.markCancelRequested("job-a", logLine: "too late") == nil)
    }
}

import Foundation
import Logging
import PostgresNIO
import Synchronization
import Testing
@testable import CURecJobs

/// Counts how often each job ran, across every daemon of a test (all in this process).
final class RunLedger: Sendable {
    private let runs = Mutex<[String: Int]>([:])
    func record(_ id: String) { runs.withLock { $0[id, default: 0] += 1 } }
    var counts: [String: Int] { runs.withLock { $0 } }
}

/// A job that records each run in a ledger, then takes a few short steps.
struct LedgerJob: JobKind {
    let ledger: RunLedger
    var name: String { "ledger" }
    var parameters: JobParameterSchema { JobParameterSchema(kind: "ledger", []) }
    func validate(_ values: JobParameterValues) throws(JobError) {}
    func run(_ context: JobContext) throws -> JobOutcome {
        ledger.record(context.id)
        for step in 1...3 {
            if context.isCancelled { throw JobCancelled() }
            context.progress(stage: "ledger", step: UInt64(step), total: 3)
        }
        return JobOutcome(metrics: [:])
    }
}

/// A job that reports step 1, waits at a gate the test opens, then reports step 2.
struct GateJob: JobKind {
    let gate: DispatchSemaphore
    var name: String { "gate" }
    var parameters: JobParameterSchema { JobParameterSchema(kind: "gate", []) }
    func validate(_ values: JobParameterValues) throws(JobError) {}
    func run(_ context: JobContext) throws -> JobOutcome {
        context.progress(stage: "gate", step: 1, total: 2)
        gate.wait()
        context.progress(stage: "gate", step: 2, total: 2)
        if context.isCancelled { throw JobCancelled() }
        return JobOutcome(metrics: [:])
    }
}

/// Several daemons on one store, as replicas behind a load balancer: claims, leases,
/// announcements and cancellation across daemons (PostgreSQL; skipped without a server).
@Suite(.serialized) struct SharedJobStoreTests {
    private func final(_ manager: JobManager, _ id: String) async throws -> JobEvent? {
        for await event in try manager.watch(id) where event.isFinal { return event }
        return nil
    }

    @Test(arguments: StoreBackend.shared) func twoDaemonsRacingForFiftyJobsRunEachExactlyOnce(_ backend: StoreBackend) async throws {
        let location = try TestStoreLocation(backend)
        let ledger = RunLedger()
        let first = try location.manager(queue: 100, workers: 2, kind: LedgerJob(ledger: ledger))
        let second = try location.manager(queue: 100, workers: 2, kind: LedgerJob(ledger: ledger))
        var ids: [String] = []
        for index in 0..<50 {
            ids.append(try (index % 2 == 0 ? first : second).submit(kind: "ledger", parameters: [:]).id)
        }
        first.start()
        second.start()
        defer {
            first.stop(timeout: 5)
            second.stop(timeout: 5)
        }
        for (index, id) in ids.enumerated() {
            // Watched from the daemon that did not submit it, half of the time.
            let event = try await final(index % 3 == 0 ? first : second, id)
            #expect(event?.state == .succeeded)
        }
        let counts = ledger.counts
        #expect(counts.count == 50)
        #expect(counts.values.allSatisfy { $0 == 1 }, "runs per job: \(counts.filter { $0.value != 1 })")
        for id in ids {
            let record = try first.get(id)
            #expect(record.attempts == 1 && record.crashes == 0)
        }
    }

    /// Daemons started at the same moment each try to submit the first-start job: one does.
    @Test(arguments: StoreBackend.shared) func daemonsStartingAtOnceSubmitTheFirstOfAKindOnce(_ backend: StoreBackend) throws {
        let location = try TestStoreLocation(backend)
        let ledger = RunLedger()
        let managers = try (0..<4).map { _ in try location.manager(queue: 100, workers: 1, kind: LedgerJob(ledger: ledger)) }
        let submitted = Mutex<[String?]>([])
        DispatchQueue.concurrentPerform(iterations: managers.count) { index in
            let id = try? managers[index].submitIfFirstOfKind(kind: "ledger", parameters: [:])?.id
            submitted.withLock { $0.append(id) }
        }
        let ids = submitted.withLock { $0 }.compactMap { $0 }
        #expect(ids.count == 1)
        #expect(try managers[0].list(state: nil, kind: "ledger", limit: 10).map(\.id) == ids)
        // Later starts find it and submit nothing.
        #expect(try managers[3].submitIfFirstOfKind(kind: "ledger", parameters: [:]) == nil)
    }

    /// On every store: the first of a kind is queued, later ones are not, other kinds are.
    @Test(arguments: StoreBackend.available) func onlyTheFirstJobOfAKindIsSubmittedOnce(_ backend: StoreBackend) throws {
        let location = try TestStoreLocation(backend)
        let manager = try location.manager(queue: 100, workers: 1, kind: LedgerJob(ledger: RunLedger()))
        let first = try #require(try manager.submitIfFirstOfKind(kind: "ledger", parameters: [:]))
        #expect(try manager.get(first.id).state == .queued)
        #expect(try manager.submitIfFirstOfKind(kind: "ledger", parameters: [:]) == nil)
        #expect(throws: JobError.self) { try manager.submitIfFirstOfKind(kind: "no-such-kind", parameters: [:]) }
        #expect(try manager.list(state: nil, kind: "ledger", limit: 10).count == 1)
    }

    @Test(arguments: StoreBackend.available)
    func aJobOfADeadDaemonIsReclaimedWhenItsLeaseEndsAndResumesFromItsCheckpoint(_ backend: StoreBackend) async throws {
        let location = try TestStoreLocation(backend)
        let survivor = try location.manager(steps: 8, delay: .milliseconds(1), lease: 0.3)
        let id = try survivor.submit(kind: "count", parameters: [:]).id
        // A daemon claims it, checkpoints three steps, and dies: it never renews its lease.
        let dead = try location.openStore()
        var claimed = try #require(try dead.claimNext(owner: "dead-daemon", leaseMS: 200))
        #expect(claimed.id == id)
        claimed.attempts = 1
        claimed.step = 3
        try dead.save(claimed, event: JobEvent(record: claimed, logLine: "started"))
        let checkpoint = (location.jobsDirectory as NSString).appendingPathComponent("\(id)/checkpoint")
        try FileManager.default.createDirectory(atPath: checkpoint, withIntermediateDirectories: true)
        try "3".write(toFile: checkpoint + "/step", atomically: true, encoding: .utf8)
        dead.close()
        survivor.start()
        defer { survivor.stop(timeout: 5) }
        let event = try await final(survivor, id)
        #expect(event?.state == .succeeded)
        let record = try survivor.get(id)
        #expect(record.crashes == 1 && record.attempts == 2)
        #expect(record.metrics["first_step"] == 3)
        #expect(record.metrics["steps"] == 8)
        #expect(try survivor.logLines(of: id).contains { $0.contains("will resume from its last checkpoint") })
    }

    @Test(arguments: StoreBackend.available)
    func aDaemonWhoseJobWasReclaimedWritesNothingMoreAboutIt(_ backend: StoreBackend) async throws {
        let location = try TestStoreLocation(backend)
        let gate = DispatchSemaphore(value: 0)
        let stale = try location.manager(kind: GateJob(gate: gate))
        let id = try stale.submit(kind: "gate", parameters: [:]).id
        stale.start()
        for await event in try stale.watch(id) where event.step >= 1 { break }
        // Another daemon takes the job over while it waits at the gate, as after this one was
        // cut off for longer than its lease: it is queued again and no longer this daemon's.
        let other = try location.openStore()
        defer { other.close() }
        #expect(try other.reclaimExpired(everyRunningJob: true, crashLimit: 3).map(\.id) == [id])
        // The stale daemon stops claiming, then its job goes on: its next write is refused,
        // and the job ends there without writing anything.
        stale.stop(timeout: 0)
        gate.signal()
        #expect(stale.waitUntilStopped(timeout: 30))
        let after = try #require(try other.fetch(id))
        #expect(after.state == .queued && after.crashes == 1 && after.step == 1,
                "\(after.state) crashes \(after.crashes) step \(after.step)")
        let lines = try other.logLines(of: id)
        #expect(!lines.contains { $0.contains("paused") || $0.contains("cancelled") || $0.contains("succeeded") }, "\(lines)")
        // Another daemon runs it to its end.
        // (A semaphore must not be released below the value it was made with: made shut, opened once.)
        let open = DispatchSemaphore(value: 0)
        open.signal()
        let next = try location.manager(kind: GateJob(gate: open))
        next.start()
        defer { next.stop(timeout: 5) }
        let event = try await final(next, id)
        #expect(event?.state == .succeeded)
        let record = try next.get(id)
        #expect(record.attempts == 2 && record.crashes == 1)
    }

    @Test(arguments: StoreBackend.shared) func watchFromAnotherDaemonSeesEveryChange(_ backend: StoreBackend) async throws {
        let location = try TestStoreLocation(backend)
        let runner = try location.manager()
        let watcher = try location.manager()  // not started: it never claims
        let id = try runner.submit(kind: "count", parameters: [:]).id
        let events = try watcher.watch(id)
        runner.start()
        defer { runner.stop(timeout: 5) }
        var seen: [JobEvent] = []
        for await event in events { seen.append(event) }
        #expect(seen.first?.state == .queued)
        #expect(seen.contains { $0.state == .running })
        #expect(seen.contains { $0.stage == "count" && $0.step == 5 })
        #expect(seen.last?.state == .succeeded)
    }

    @Test(arguments: StoreBackend.shared) func cancellationFromAnotherDaemonStopsTheJobWhereItRuns(_ backend: StoreBackend) async throws {
        let location = try TestStoreLocation(backend)
        let runner = try location.manager(steps: 1_000_000, delay: .milliseconds(2))
        let other = try location.manager(steps: 1_000_000, delay: .milliseconds(2))  // not started
        let id = try other.submit(kind: "count", parameters: [:]).id
        runner.start()
        defer { runner.stop(timeout: 5) }
        for await event in try other.watch(id) where event.step >= 2 { break }
        let answer = try other.cancel(id)
        #expect(answer.cancelRequested)
        let event = try await final(other, id)
        #expect(event?.state == .cancelled)
        #expect(try other.get(id).step < 1_000_000)
    }

    @Test(arguments: StoreBackend.shared) func aLostDatabaseIsReportedAndItsReturnToo(_ backend: StoreBackend) async throws {
        let location = try TestStoreLocation(backend)
        let jobs = try location.manager(lease: 0.3)
        let (reports, report) = AsyncStream.makeStream(of: String.self)
        jobs.onStorageFailure { report.yield("failed: \($0)") }
        jobs.onStorageRecovered { report.yield("recovered") }
        jobs.start()
        defer { jobs.stop(timeout: 5) }
        var iterator = reports.makeAsyncIterator()
        try location.setDatabaseLost(true)
        let failure = await iterator.next()
        #expect(failure?.hasPrefix("failed: ") == true)
        do {
            _ = try jobs.submit(kind: "count", parameters: [:])
            Issue.record("a submission without a database should fail")
        } catch {
            guard case .storeUnavailable = error else { Issue.record("expected storeUnavailable, got \(error)"); return }
        }
        try location.setDatabaseLost(false)
        #expect(await iterator.next() == "recovered")
        // Serving again: a job runs to its end.
        let id = try jobs.submit(kind: "count", parameters: [:]).id
        let event = try await final(jobs, id)
        #expect(event?.state == .succeeded)
    }

    @Test(arguments: StoreBackend.shared) func migrationsRunOnceAndANewerSchemaIsRefused(_ backend: StoreBackend) throws {
        let location = try TestStoreLocation(backend)
        let first = try location.openStore()
        let second = try location.openStore()
        first.close()
        second.close()
        var versions: [Int32] = []
        try location.onDatabase { connection in
            versions = try connection.query("SELECT version FROM curec_schema_version ORDER BY version",
                                            logger: TestStoreLocation.logger).wait().map { try $0.decode(Int32.self) }
            _ = try connection.query("INSERT INTO curec_schema_version (version, name) VALUES (999, 'from the future')",
                                     logger: TestStoreLocation.logger).wait()
        }
        #expect(versions == PostgresJobSchema.migrations.map { Int32($0.version) })
        do {
            _ = try location.openStore()
            Issue.record("a schema newer than the daemon knows should be refused")
        } catch {
            #expect("\(error)".contains("version 999"))
        }
    }

    @Test func anUnreachableDatabaseFailsAtOnceWithTheAddressAndNoPassword() throws {
        // A port nothing listens on: bound, then closed.
        let socket = LoopbackPort.free()
        var settings = PostgresJobStoreSettings(host: "127.0.0.1", port: socket, username: "curec", database: "jobs",
                                                password: "s3cret-password")
        settings.connectTimeout = .seconds(2)
        do {
            _ = try PostgresJobStore(settings: settings, logger: TestStoreLocation.logger)
            Issue.record("opening a store nobody serves should fail")
        } catch {
            guard case .storeUnavailable = error else { Issue.record("expected storeUnavailable, got \(error)"); return }
            #expect(error.description.contains("postgres://curec@127.0.0.1:\(socket)/jobs"))
            #expect(!error.description.contains("s3cret"))
            #expect(error.description.count < 500)
        }
    }

    @Test func storeURLsAreParsedAndBadOnesExplained() throws {
        let settings = try PostgresJobStoreSettings(url: "postgres://curec@db.example:6543/jobs?sslmode=disable&connect_timeout=3",
                                                    password: "p")
        #expect(settings.host == "db.example" && settings.port == 6543 && settings.username == "curec")
        #expect(settings.database == "jobs" && settings.password == "p" && settings.connectTimeout == .seconds(3))
        #expect(settings.redacted == "postgres://curec@db.example:6543/jobs")
        #expect(try PostgresJobStoreSettings(url: "postgresql://u@h/d", password: nil).port == 5432)
        let bad: [(String, String)] = [
            ("mysql://u@h/d", "must start with postgres://"),
            ("postgres://u:hunter2@h/d", "must not hold a password"),
            ("postgres://u@h", "no database name"),
            ("postgres://h/d", "no user"),
            ("postgres://u@h:0/d", "port"),
            ("postgres://u@h/d?sslmode=require", "unsupported parameter 'sslmode'"),
            ("postgres://u@h/d?connect_timeout=0", "connect_timeout"),
            (String(repeating: "x", count: 5000), "not a URL"),
        ]
        for (url, expected) in bad {
            do {
                _ = try PostgresJobStoreSettings(url: url, password: nil)
                Issue.record("\(url.prefix(40)) should be refused")
            } catch {
                #expect(error.description.contains(expected), "\(url.prefix(40)): \(error)")
                #expect(!error.description.contains("hunter2"))
                #expect(error.description.count < 300)
            }
        }
    }
}

enum LoopbackPort {
    /// A loopback TCP port that was free a moment ago (bound and closed).
    static func free() -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}

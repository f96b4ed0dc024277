import CURecJobs
import CURecProto
import CURecRPC
import Foundation
import Logging
import Testing
@testable import CURecServer

/// A job kind that finishes at once, or waits until it is cancelled.
struct InstantJob: JobKind {
    enum Parameters {
        static let wait: JobParameter<Bool> = .boolean("wait", default: false, doc: "wait until cancelled")
        static let schema = JobParameterSchema(kind: "instant", [wait])
    }

    var name: String { "instant" }
    var parameters: JobParameterSchema { Parameters.schema }

    func validate(_ values: JobParameterValues) throws(JobError) {}

    func run(_ context: JobContext) throws -> JobOutcome {
        context.progress(stage: "run", step: 1, total: 1)
        if context.values[Parameters.wait] {
            context.waitUntilCancelled()
            throw JobCancelled()
        }
        return JobOutcome(metrics: ["done": 1])
    }
}

@Suite(.serialized) struct JobOperationsTests {
    private func operations(queue: Int = 8) throws -> JobOperations {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("curec-jobops-\(UUID().uuidString)").path
        var limits = JobManager.Limits()
        limits.queueCapacity = queue
        return JobOperations(jobs: try JobManager(dataDirectory: path, kinds: [InstantJob()], limits: limits,
                                                  logger: Logger(label: "test")))
    }

    private func code(_ body: () throws -> Void) -> StatusCode? {
        do {
            try body()
            return nil
        } catch {
            return RPCError(converting: error).status.code
        }
    }

    @Test func submitChecksKindAndParameters() throws {
        let operations = try operations()
        #expect(code { _ = try operations.submit(.with { $0.kind = "" }) } == .invalidArgument)
        #expect(code { _ = try operations.submit(.with { $0.kind = "nope" }) } == .invalidArgument)
        #expect(code { _ = try operations.submit(.with { $0.kind = "instant"; $0.parameters = ["wait": "maybe"] }) } == .invalidArgument)
        let job = try operations.submit(.with { $0.kind = "instant" })
        #expect(job.kind == "instant")
        #expect(job.state == .queued)
        #expect(!job.id.isEmpty)
        #expect(try operations.get(.with { $0.id = job.id }).id == job.id)
    }

    @Test func aFullQueueIsResourceExhausted() throws {
        let operations = try operations(queue: 1)
        _ = try operations.submit(.with { $0.kind = "instant" })
        #expect(code { _ = try operations.submit(.with { $0.kind = "instant" }) } == .resourceExhausted)
    }

    @Test func getAndCancelNeedAKnownID() throws {
        let operations = try operations()
        #expect(code { _ = try operations.get(.with { $0.id = "" }) } == .invalidArgument)
        #expect(code { _ = try operations.get(.with { $0.id = "job-none" }) } == .notFound)
        #expect(code { _ = try operations.cancel(.with { $0.id = "job-none" }) } == .notFound)
        let job = try operations.submit(.with { $0.kind = "instant" })
        #expect(try operations.cancel(.with { $0.id = job.id }).state == .cancelled)
        #expect(code { _ = try operations.cancel(.with { $0.id = job.id }) } == .failedPrecondition)
    }

    @Test func listFiltersAndChecksItsArguments() throws {
        let operations = try operations()
        let first = try operations.submit(.with { $0.kind = "instant" })
        _ = try operations.submit(.with { $0.kind = "instant" })
        _ = try operations.cancel(.with { $0.id = first.id })
        #expect(try operations.list(.init()).jobs.count == 2)
        #expect(try operations.list(.with { $0.state = .cancelled }).jobs.map(\.id) == [first.id])
        #expect(try operations.list(.with { $0.limit = 1 }).jobs.count == 1)
        #expect(code { _ = try operations.list(.with { $0.limit = 10_001 }) } == .invalidArgument)
        #expect(code { _ = try operations.list(.with { $0.pageSize = 1001 }) } == .invalidArgument)
        #expect(code { _ = try operations.list(.with { $0.state = .UNRECOGNIZED(42) }) } == .invalidArgument)
        #expect(code { _ = try operations.list(.with { $0.pageToken = "not a token" }) } == .invalidArgument)
        #expect(code { _ = try operations.list(.with { $0.pageToken = String(repeating: "A", count: 70_000) }) } == .invalidArgument)
    }

    @Test func listPagesThroughEveryJobOnce() throws {
        let operations = try operations(queue: 32)
        var submitted: [String] = []
        for _ in 0..<7 { submitted.append(try operations.submit(.with { $0.kind = "instant" }).id) }
        var seen: [String] = []
        var token = ""
        repeat {
            let page = try operations.list(.with { $0.pageSize = 3; $0.pageToken = token })
            #expect(page.jobs.count <= 3)
            seen += page.jobs.map(\.id)
            token = page.nextPageToken
        } while !token.isEmpty
        #expect(seen.count == 7 && Set(seen) == Set(submitted))
    }

    @Test func longIDsAndParametersGetAShortInvalidArgument() throws {
        let operations = try operations()
        let long = String(repeating: "x", count: 70_000)
        for call in [{ _ = try operations.get(.with { $0.id = long }) }, { _ = try operations.cancel(.with { $0.id = long }) },
                     { _ = try operations.submit(.with { $0.kind = "instant"; $0.parameters = ["wait": long] }) },
                     { _ = try operations.submit(.with { $0.kind = long }) }] as [() throws -> Void] {
            do {
                try call()
                Issue.record("a 70,000-character argument was accepted")
            } catch {
                let status = RPCError(converting: error).status
                #expect(status.code == .invalidArgument)
                #expect(status.message.utf8.count < 400)
            }
        }
    }

    @Test func watchSendsEveryEventUpToTheFinalOne() async throws {
        let operations = try operations()
        let job = try operations.submit(.with { $0.kind = "instant" })
        operations.jobs.start()
        defer { operations.jobs.stop(timeout: 5) }
        let events = EventLog()
        try await operations.watch(.with { $0.id = job.id }) { events.append($0) }
        let seen = events.all
        #expect(seen.first?.jobID == job.id)
        #expect(seen.last?.final == true)
        #expect(seen.last?.state == .succeeded)
        #expect(seen.filter(\.final).count == 1)
    }
}

/// Events a watch handed over, in order.
final class EventLog: @unchecked Sendable {
    private let lock = NSLock()
    private var events: [Curec_V1_JobEvent] = []
    func append(_ event: Curec_V1_JobEvent) { lock.withLock { events.append(event) } }
    var all: [Curec_V1_JobEvent] { lock.withLock { events } }
}

import CURecJobs
import CURecRPC
import Foundation
import Logging
import Testing
@testable import CURecServer

#if canImport(Glibc)
import Glibc
#endif

/// The series the daemon records and the `GET /metrics` endpoint that serves them.
@Suite struct MetricsTests {
    static let noSources = ScrapeSources(openConnections: { 3 }, jobCounts: {
        [JobKindAndState(kind: "train", state: "succeeded"): 2]
    }, pluginGenerations: { [("bpr", 4)] })

    func text(_ metrics: DaemonMetrics, _ sources: ScrapeSources = Self.noSources) -> String {
        String(decoding: metrics.exposition(sources), as: UTF8.self)
    }

    /// The value of the sample line starting `prefix` (name and labels).
    func value(_ text: String, _ prefix: String) -> Double? {
        for line in text.split(separator: "\n") where line.hasPrefix(prefix + " ") {
            return Double(line.dropFirst(prefix.count + 1))
        }
        return nil
    }

    @Test func callRecorderCountsSuccessesFailuresByCodeAndInFlight() {
        let metrics = DaemonMetrics()
        let method = RPCMethodDescriptor(service: "curec.v1.RecommendService", name: "Score", kind: .unary,
                                         requestType: "a", responseType: "b")
        let recorder = metrics.calls.recorder(for: method)
        let labels = #"service="curec.v1.RecommendService",method="Score""#
        for _ in 0..<3 { recorder.handlerStarted() }
        #expect(value(text(metrics), "curec_rpc_in_flight{\(labels)}") == 3)
        recorder.handlerFinished(code: .ok, requestNanoseconds: 2_000_000, handlerNanoseconds: 1_000_000)
        recorder.handlerFinished(code: .ok, requestNanoseconds: 2_000_000, handlerNanoseconds: 1_000_000)
        recorder.handlerFinished(code: .notFound, requestNanoseconds: 500_000, handlerNanoseconds: 100_000)
        let output = text(metrics)
        #expect(value(output, "curec_rpc_in_flight{\(labels)}") == 0)
        #expect(value(output, "curec_rpc_request_success_total{\(labels)}") == 2)
        #expect(value(output, "curec_rpc_request_failure_total{\(labels),code=\"NOT_FOUND\"}") == 1)
        #expect(value(output, "curec_rpc_request_duration_seconds_count{\(labels)}") == 3)
        #expect(value(output, "curec_rpc_request_duration_seconds_bucket{\(labels),le=\"0.001\"}") == 1)
        let sum = value(output, "curec_rpc_handler_duration_seconds_sum{\(labels)}") ?? 0
        #expect(abs(sum - 0.0021) < 1e-9)
    }

    @Test func modelSeriesAreSharedPerModelAndMethodAndCountFailures() throws {
        let metrics = DaemonMetrics()
        let first = metrics.models.series(model: "bpr", method: "score")
        #expect(first === metrics.models.series(model: "bpr", method: "score"))
        #expect(first !== metrics.models.series(model: "bpr", method: "recommend"))
        let start = MonotonicClock.nanoseconds()
        let result = try first.measure(since: start, inferences: 5) { 42 }
        #expect(result == 42)
        struct Broken: Error {}
        #expect(throws: Broken.self) { try first.measure(since: start) { () throws -> Int in throw Broken() } }
        let output = text(metrics)
        let labels = #"model="bpr",method="score""#
        #expect(value(output, "curec_model_request_success_total{\(labels)}") == 1)
        #expect(value(output, "curec_model_request_failure_total{\(labels)}") == 1)
        #expect(value(output, "curec_model_executions_total{\(labels)}") == 1)
        #expect(value(output, "curec_model_inferences_total{\(labels)}") == 5)
        #expect(value(output, "curec_model_request_duration_seconds_count{\(labels)}") == 2)
        #expect(value(output, "curec_model_queue_duration_seconds_count{\(labels)}") == 2)
        #expect(value(output, "curec_model_compute_duration_seconds_count{\(labels)}") == 1)
        // Without metrics, the body still runs.
        let none: ModelMethodMetrics? = nil
        #expect(try none.measure(since: 0) { 7 } == 7)
    }

    @Test func modelSeriesLookupIsSafeFromManyThreads() async {
        let metrics = DaemonMetrics()
        await withTaskGroup(of: Void.self) { group in
            for worker in 0..<8 {
                group.addTask {
                    for index in 0..<200 {
                        let series = metrics.models.series(model: "m\(index % 10)", method: worker % 2 == 0 ? "score" : "recommend")
                        series.executed(inferences: 1, computeNanoseconds: 10)
                    }
                }
            }
        }
        let output = text(metrics)
        var total = 0.0
        for model in 0..<10 {
            for method in ["score", "recommend"] {
                total += value(output, "curec_model_executions_total{model=\"m\(model)\",method=\"\(method)\"}") ?? 0
            }
        }
        #expect(total == 1600)
    }

    @Test func scrapeReadsConnectionsJobsPluginsAndMemory() {
        let metrics = DaemonMetrics()
        var record = JobRecord(id: "j1", kind: "train", parameters: [:], state: .succeeded, createdMS: 0)
        record.startedMS = 1_000
        record.finishedMS = 4_000
        metrics.jobEnded(record)
        let output = text(metrics)
        #expect(value(output, "curec_open_connections") == 3)
        #expect(value(output, #"curec_jobs{kind="train",state="succeeded"}"#) == 2)
        #expect(value(output, #"curec_plugin_generation{model="bpr"}"#) == 4)
        #expect((value(output, "process_resident_memory_bytes") ?? 0) > 1_000_000)
        #expect(value(output, #"curec_jobs_ended_total{kind="train",state="succeeded"}"#) == 1)
        #expect(value(output, #"curec_job_duration_seconds_sum{kind="train",state="succeeded"}"#) == 3)
        // A plugin that was unloaded loses its series; a job state that emptied reads 0.
        let later = ScrapeSources(openConnections: { 0 }, jobCounts: { [:] }, pluginGenerations: { [] })
        let after = text(metrics, later)
        #expect(!after.contains("curec_plugin_generation{"))
        #expect(value(after, #"curec_jobs{kind="train",state="succeeded"}"#) == 0)
    }

    @Test func generationRecordsTokensAndRate() {
        let metrics = DaemonMetrics()
        metrics.generation.generated(tokens: 50, nanoseconds: 2_000_000_000)
        let output = text(metrics)
        #expect(value(output, "curec_generation_tokens_total") == 50)
        #expect(value(output, "curec_generation_seconds_total") == 2)
        #expect(value(output, "curec_generation_tokens_per_second_count") == 1)
        #expect(value(output, "curec_generation_tokens_per_second_sum") == 25)
    }

    @Test(arguments: [
        ("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", MetricsRequestHead.Outcome.metrics),
        ("GET /metrics?x=1 HTTP/1.0\r\n\r\n", .metrics),
        ("POST /metrics HTTP/1.1\r\n\r\n", .refused(405, "only GET is served")),
        ("GET / HTTP/1.1\r\n\r\n", .refused(404, "not found; metrics are at /metrics")),
        ("GET /metrics/../x HTTP/1.1\r\n\r\n", .refused(404, "not found; metrics are at /metrics")),
        ("GET /metrics HTTP/2.0\r\n\r\n", .refused(400, "malformed request line; expected GET /metrics HTTP/1.1")),
        ("GET  /metrics HTTP/1.1\r\n\r\n", .refused(400, "malformed request line; expected GET /metrics HTTP/1.1")),
        ("\u{16}\u{03}\u{01}\r\n\r\n", .refused(400, "malformed request line; expected GET /metrics HTTP/1.1")),
        ("GET /metrics HTTP/1.1\n\n\r\n\r\n", .refused(400, "malformed request line; expected GET /metrics HTTP/1.1")),
        ("GET /metrics HTTP/1.1\r", .refused(400, "incomplete request head")),
    ])
    func requestHeads(head: String, expected: MetricsRequestHead.Outcome) {
        #expect(MetricsRequestHead.parse(Array(head.utf8)) == expected)
    }

    /// Sends `bytes` (then half-closes when `finish`) and reads the response until the server closes.
    static func exchange(port: Int, _ bytes: [UInt8], finish: Bool = false) -> String {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { return "" }
        if !bytes.isEmpty { _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } }
        if finish { shutdown(fd, Int32(SHUT_WR)) }
        var response: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count <= 0 { break }
            response.append(contentsOf: chunk[0..<count])
        }
        return String(decoding: response, as: UTF8.self)
    }

    @Test func endpointServesMetricsAndRefusesEverythingElse() throws {
        var limits = MetricsHTTPServer.Limits()
        limits.readTimeout = .milliseconds(300)
        limits.maxRequestBytes = 1024
        let server = try MetricsHTTPServer(host: "127.0.0.1", port: 0, limits: limits, logger: Logger(label: "test")) {
            Array("curec_up 1\n".utf8)
        }
        defer { server.stop() }
        let ok = Self.exchange(port: server.port, Array("GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n".utf8))
        #expect(ok.hasPrefix("HTTP/1.1 200 OK\r\n"))
        #expect(ok.contains("Content-Type: text/plain; version=0.0.4"))
        #expect(ok.hasSuffix("\r\n\r\ncurec_up 1\n"))
        let post = Self.exchange(port: server.port, Array("POST /metrics HTTP/1.1\r\n\r\n".utf8))
        #expect(post.hasPrefix("HTTP/1.1 405 ") && post.contains("Allow: GET"))
        #expect(Self.exchange(port: server.port, Array("GET /x HTTP/1.1\r\n\r\n".utf8)).hasPrefix("HTTP/1.1 404 "))
        let huge = "GET /metrics HTTP/1.1\r\nX-Fill: " + String(repeating: "a", count: 4000) + "\r\n\r\n"
        let tooLarge = Self.exchange(port: server.port, Array(huge.utf8))
        #expect(tooLarge.hasPrefix("HTTP/1.1 431 "))
        #expect(!tooLarge.contains("aaaa"))
        // A peer that sends part of a head and then nothing gets 408 once the read timeout passes.
        #expect(Self.exchange(port: server.port, Array("GET /met".utf8)).hasPrefix("HTTP/1.1 408 "))
        // A peer that closes mid-head gets 400.
        #expect(Self.exchange(port: server.port, Array("GET /metrics HTTP/1.1\r\n".utf8), finish: true).hasPrefix("HTTP/1.1 400 "))
        #expect(Self.exchange(port: server.port, [], finish: true) == "")
        #expect(Self.exchange(port: server.port, Array("GET /metrics HTTP/1.1\r\n\r\n".utf8)).hasPrefix("HTTP/1.1 200 "))
    }

    @Test func settingIsOffByDefaultAndChecked() throws {
        #expect(DaemonConfiguration().metrics_listen.isEmpty)
        var configuration = DaemonConfiguration()
        let flag = try #require(DaemonConfiguration.setting("metrics_listen")?.flag)
        try configuration.applyFlags([flag: ["127.0.0.1:9464"]])
        #expect(configuration.metrics_listen == "127.0.0.1:9464")
        configuration.metrics_listen = "nowhere"
        #expect(throws: ConfigurationError.self) { try configuration.validate() }
    }
}

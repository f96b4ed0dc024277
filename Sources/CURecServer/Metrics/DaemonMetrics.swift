import Atomics
import CoreMetrics
import CURecJobs
import CURecPluginHost
import CURecRPC
import Foundation
import Prometheus

/// The daemon's metrics: one Prometheus registry fed through swift-metrics handles.
///
/// Handles are made once per series (per routed method at server start, per model and method
/// on first use) and kept, so recording is an atomic add: counters and gauges are
/// swift-prometheus's (atomic), duration histograms are ``AtomicDurationHistogram``s (a
/// bucket search and two atomic adds); no recording takes a lock. Values that are cheap to read
/// when scraped (open connections, jobs, plugin generations, RSS) are read then, through
/// ``ScrapeSources``. docs/metrics.md lists every series.
public final class DaemonMetrics: Sendable {
    /// The registry every series lives in.
    public let registry: PrometheusCollectorRegistry
    /// The swift-metrics factory: counters and gauges in ``registry``, timers in ``histograms``.
    let factory: DaemonMetricsFactory
    /// The duration histograms.
    let histograms: AtomicHistogramRegistry
    /// Per model and method: requests, durations, executions and inferences.
    public let models: ModelMetrics
    /// Calls per gRPC method, as the RPC server reports them.
    public let calls: CallMetrics
    /// Jobs that ended, by kind and state, and how long they ran.
    let jobs: JobMetrics
    /// Tokens written by `GenerationService.Generate`.
    public let generation: GenerationMetrics
    private let scrapeGauges: ScrapeGauges

    /// Bucket bounds of the request, queue and compute duration histograms, seconds.
    static let requestBuckets: [Duration] = [
        .microseconds(50), .microseconds(100), .microseconds(250), .microseconds(500),
        .milliseconds(1), .milliseconds(2.5), .milliseconds(5), .milliseconds(10), .milliseconds(25),
        .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500),
        .seconds(1), .seconds(2.5), .seconds(5), .seconds(10), .seconds(30), .seconds(60),
    ]
    /// Bucket bounds of job durations.
    static let jobBuckets: [Duration] = [
        .seconds(1), .seconds(5), .seconds(15), .seconds(60), .seconds(300), .seconds(900),
        .seconds(1800), .seconds(3600), .seconds(7200), .seconds(14400), .seconds(43200),
    ]

    public init() {
        let registry = PrometheusCollectorRegistry()
        var prometheus = PrometheusMetricsFactory(registry: registry)
        prometheus.defaultValueHistogramBuckets = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000]
        let histograms = AtomicHistogramRegistry()
        let factory = DaemonMetricsFactory(prometheus: prometheus, histograms: histograms,
                                           boundsByLabel: ["curec_job_duration_seconds": Self.jobBuckets],
                                           defaultBounds: Self.requestBuckets)
        self.registry = registry
        self.histograms = histograms
        self.factory = factory
        self.models = ModelMetrics(factory: factory)
        self.calls = CallMetrics(factory: factory)
        self.jobs = JobMetrics(factory: factory)
        self.generation = GenerationMetrics(factory: factory)
        self.scrapeGauges = ScrapeGauges(registry: registry)
    }

    /// The text exposition format (version 0.0.4) of every series, after reading `sources`.
    public func exposition(_ sources: ScrapeSources) -> [UInt8] {
        scrapeGauges.update(from: sources)
        var buffer: [UInt8] = []
        buffer.reserveCapacity(64 * 1024)
        registry.emit(into: &buffer)
        histograms.emit(into: &buffer)
        return buffer
    }

    /// Counts a job that ended and observes its duration.
    public func jobEnded(_ record: JobRecord) { jobs.ended(record) }
}

/// What a scrape reads from the running daemon.
public struct ScrapeSources: Sendable {
    /// Open connections of the RPC server.
    public var openConnections: @Sendable () -> Int
    /// Jobs by (kind, state) as stored now.
    public var jobCounts: @Sendable () -> [JobKindAndState: Int]
    /// Loaded plugin instances: (name, generation).
    public var pluginGenerations: @Sendable () -> [(String, UInt64)]

    public init(openConnections: @escaping @Sendable () -> Int,
                jobCounts: @escaping @Sendable () -> [JobKindAndState: Int],
                pluginGenerations: @escaping @Sendable () -> [(String, UInt64)]) {
        self.openConnections = openConnections
        self.jobCounts = jobCounts
        self.pluginGenerations = pluginGenerations
    }
}

/// Gauges set from ``ScrapeSources`` when a scrape comes.
final class ScrapeGauges: Sendable {
    private let registry: PrometheusCollectorRegistry
    private let openConnections: Prometheus.Gauge
    private let residentBytes: Prometheus.Gauge
    private let startTime: Prometheus.Gauge
    /// Label sets seen before, so a series that is gone (a job state emptied, a plugin
    /// unloaded) goes to 0 or is removed.
    private let seen = ScrapeBookkeeping()

    static var jobs: MetricNameDescriptor { MetricNameDescriptor(metricName: "curec_jobs", helpText: "Stored jobs by kind and state") }
    static var pluginGeneration: MetricNameDescriptor { MetricNameDescriptor(
        metricName: "curec_plugin_generation", helpText: "Generation of the loaded plugin instance (1 at load, +1 per reload)") }

    init(registry: PrometheusCollectorRegistry) {
        self.registry = registry
        openConnections = registry.makeGauge(descriptor: MetricNameDescriptor(metricName: "curec_open_connections", helpText: "RPC connections open now"))
        residentBytes = registry.makeGauge(descriptor: MetricNameDescriptor(metricName: "process_resident_memory_bytes", helpText: "Resident memory of the daemon"))
        startTime = registry.makeGauge(descriptor: MetricNameDescriptor(metricName: "process_start_time_seconds", helpText: "When the metrics started, UNIX seconds"))
        startTime.set(Date().timeIntervalSince1970)
    }

    func update(from sources: ScrapeSources) {
        openConnections.set(Double(sources.openConnections()))
        if let rss = ProcessMemory.residentBytes() { residentBytes.set(Double(rss)) }
        let counts = sources.jobCounts()
        let plugins = sources.pluginGenerations()
        seen.update { state in
            for key in Set(state.jobKeys).union(counts.keys) {
                let gauge = registry.makeGauge(descriptor: Self.jobs, labels: [("kind", key.kind), ("state", key.state)])
                gauge.set(Double(counts[key] ?? 0))
            }
            state.jobKeys = Array(Set(state.jobKeys).union(counts.keys))
            let current = Set(plugins.map(\.0))
            for name in state.pluginNames where !current.contains(name) {
                if let gauge = state.pluginGauges.removeValue(forKey: name) { registry.unregisterGauge(gauge) }
            }
            for (name, generation) in plugins {
                let gauge = state.pluginGauges[name] ?? registry.makeGauge(descriptor: Self.pluginGeneration, labels: [("model", name)])
                gauge.set(Double(generation))
                state.pluginGauges[name] = gauge
            }
            state.pluginNames = Array(current)
        }
    }
}

/// Scrape-time bookkeeping behind one lock (scrapes only, never calls).
final class ScrapeBookkeeping: @unchecked Sendable {
    struct State {
        var jobKeys: [JobKindAndState] = []
        var pluginNames: [String] = []
        var pluginGauges: [String: Prometheus.Gauge] = [:]
    }
    private let lock = NSLock()
    private var state = State()

    func update(_ body: (inout State) -> Void) {
        lock.lock()
        defer { lock.unlock() }
        body(&state)
    }
}

/// The resident set size of this process, from /proc/self/statm.
enum ProcessMemory {
    static func residentBytes() -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return nil }
        let fields = text.split(separator: " ")
        guard fields.count > 1, let pages = Int(fields[1]) else { return nil }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }
}

import Atomics
import CoreMetrics
import Prometheus
import Synchronization

/// A duration histogram whose recording takes no lock: one binary search over the bucket
/// bounds and two relaxed atomic adds (the bucket's count and the sum). Buckets are kept
/// per bound (not cumulative) and summed when scraped, so a recording touches one bucket.
final class AtomicDurationHistogram: CoreMetrics.TimerHandler, Sendable {
    let name: String
    /// `name="value",...` without braces, rendered once; empty without labels.
    let renderedLabels: String
    /// Upper bounds, nanoseconds, ascending.
    let bounds: [Int64]
    /// Per bound, then one past the last bound (+Inf).
    private let counts: [ManagedAtomic<Int>]
    private let sumNanoseconds = ManagedAtomic<Int64>(0)

    init(name: String, labels: [(String, String)], bounds: [Duration]) {
        self.name = name
        self.renderedLabels = labels.map { "\($0.0)=\"\(Self.escaped($0.1))\"" }.joined(separator: ",")
        self.bounds = bounds.map { Int64($0.components.seconds) * 1_000_000_000 + $0.components.attoseconds / 1_000_000_000 }
            .sorted()
        self.counts = (0...bounds.count).map { _ in ManagedAtomic(0) }
    }

    /// The first bucket whose bound holds `value` (the +Inf bucket when none does).
    @inline(__always)
    func bucket(of value: Int64) -> Int {
        var low = 0, high = bounds.count
        while low < high {
            let middle = (low + high) / 2
            if bounds[middle] >= value { high = middle } else { low = middle + 1 }
        }
        return low
    }

    func recordNanoseconds(_ duration: Int64) {
        let value = max(0, duration)
        counts[bucket(of: value)].wrappingIncrement(ordering: .relaxed)
        sumNanoseconds.wrappingIncrement(by: value, ordering: .relaxed)
    }

    /// The series' lines in the text exposition format: cumulative buckets, sum (seconds), count.
    func emit(into buffer: inout [UInt8]) {
        let separator = renderedLabels.isEmpty ? "" : renderedLabels + ","
        var cumulative = 0
        for (index, bound) in bounds.enumerated() {
            cumulative += counts[index].load(ordering: .relaxed)
            buffer.append(contentsOf: "\(name)_bucket{\(separator)le=\"\(Self.seconds(bound))\"} \(cumulative)\n".utf8)
        }
        cumulative += counts[bounds.count].load(ordering: .relaxed)
        buffer.append(contentsOf: "\(name)_bucket{\(separator)le=\"+Inf\"} \(cumulative)\n".utf8)
        let braces = renderedLabels.isEmpty ? "" : "{\(renderedLabels)}"
        buffer.append(contentsOf: "\(name)_sum\(braces) \(Self.seconds(sumNanoseconds.load(ordering: .relaxed)))\n".utf8)
        buffer.append(contentsOf: "\(name)_count\(braces) \(cumulative)\n".utf8)
    }

    static func seconds(_ nanoseconds: Int64) -> String { "\(Double(nanoseconds) / 1e9)" }

    static func escaped(_ value: String) -> String {
        value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            .replacingOccurrences(of: "\n", with: "\\n")
    }
}

/// Every ``AtomicDurationHistogram`` of the daemon, by name and labels. Making a series takes
/// the lock (once per series); recording never does; a scrape takes it to list the series.
final class AtomicHistogramRegistry: Sendable {
    private struct Family {
        var series: [String: AtomicDurationHistogram] = [:]
        var order: [String] = []
    }
    private let families = Mutex<[String: Family]>([:])
    private let names = Mutex<[String]>([])

    /// The histogram of `name` with `labels`, made with `bounds` on first use.
    func histogram(name: String, labels: [(String, String)], bounds: [Duration]) -> AtomicDurationHistogram {
        let made = AtomicDurationHistogram(name: name, labels: labels, bounds: bounds)
        return families.withLock { families in
            if families[name] == nil { names.withLock { $0.append(name) } }
            if let existing = families[name, default: Family()].series[made.renderedLabels] { return existing }
            families[name, default: Family()].series[made.renderedLabels] = made
            families[name, default: Family()].order.append(made.renderedLabels)
            return made
        }
    }

    /// Every family: a TYPE line, then its series.
    func emit(into buffer: inout [UInt8]) {
        let snapshot: [(String, [AtomicDurationHistogram])] = families.withLock { families in
            names.withLock { $0 }.map { name in
                let family = families[name] ?? Family()
                return (name, family.order.compactMap { family.series[$0] })
            }
        }
        for (name, series) in snapshot where !series.isEmpty {
            buffer.append(contentsOf: "# TYPE \(name) histogram\n".utf8)
            for histogram in series { histogram.emit(into: &buffer) }
        }
    }
}

/// The daemon's swift-metrics factory: timers are lock-free ``AtomicDurationHistogram``s;
/// counters, meters and recorders come from swift-prometheus (atomic already).
struct DaemonMetricsFactory: CoreMetrics.MetricsFactory {
    let prometheus: PrometheusMetricsFactory
    let histograms: AtomicHistogramRegistry
    /// Bucket bounds per timer label; others get `defaultBounds`.
    let boundsByLabel: [String: [Duration]]
    let defaultBounds: [Duration]

    func makeTimer(label: String, dimensions: [(String, String)]) -> any CoreMetrics.TimerHandler {
        histograms.histogram(name: label, labels: dimensions, bounds: boundsByLabel[label] ?? defaultBounds)
    }

    func makeCounter(label: String, dimensions: [(String, String)]) -> any CoreMetrics.CounterHandler {
        prometheus.makeCounter(label: label, dimensions: dimensions)
    }

    func makeFloatingPointCounter(label: String, dimensions: [(String, String)]) -> any CoreMetrics.FloatingPointCounterHandler {
        prometheus.makeFloatingPointCounter(label: label, dimensions: dimensions)
    }

    func makeMeter(label: String, dimensions: [(String, String)]) -> any CoreMetrics.MeterHandler {
        prometheus.makeMeter(label: label, dimensions: dimensions)
    }

    func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any CoreMetrics.RecorderHandler {
        prometheus.makeRecorder(label: label, dimensions: dimensions, aggregate: aggregate)
    }

    func destroyCounter(_ handler: any CoreMetrics.CounterHandler) { prometheus.destroyCounter(handler) }
    func destroyFloatingPointCounter(_ handler: any CoreMetrics.FloatingPointCounterHandler) {
        prometheus.destroyFloatingPointCounter(handler)
    }
    func destroyMeter(_ handler: any CoreMetrics.MeterHandler) { prometheus.destroyMeter(handler) }
    func destroyRecorder(_ handler: any CoreMetrics.RecorderHandler) { prometheus.destroyRecorder(handler) }
    /// Series stay for the life of the daemon (as swift-prometheus keeps them).
    func destroyTimer(_ handler: any CoreMetrics.TimerHandler) {}
}

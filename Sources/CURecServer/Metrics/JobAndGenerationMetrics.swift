import CoreMetrics
import CURecJobs
import Prometheus

/// Jobs that ended, by kind and final state, with their run time.
final class JobMetrics: Sendable {
    private let factory: DaemonMetricsFactory

    init(factory: DaemonMetricsFactory) { self.factory = factory }

    /// Observes a job that reached a final state (kinds are the daemon's registered kinds, so
    /// the label sets are bounded).
    func ended(_ record: JobRecord) {
        guard record.state.isFinal else { return }
        let dimensions = [("kind", record.kind), ("state", record.state.rawValue)]
        Counter(label: "curec_jobs_ended_total", dimensions: dimensions, factory: factory).increment()
        guard record.startedMS > 0, record.finishedMS >= record.startedMS else { return }
        Timer(label: "curec_job_duration_seconds", dimensions: dimensions, factory: factory)
            .recordMilliseconds(record.finishedMS - record.startedMS)
    }
}

/// Tokens `GenerationService.Generate` wrote and how fast.
public final class GenerationMetrics: Sendable {
    private let tokens: CoreMetrics.Counter
    private let seconds: CoreMetrics.FloatingPointCounter
    private let rate: CoreMetrics.Recorder

    init(factory: DaemonMetricsFactory) {
        tokens = Counter(label: "curec_generation_tokens_total", dimensions: [], factory: factory)
        seconds = FloatingPointCounter(label: "curec_generation_seconds_total", dimensions: [], factory: factory)
        rate = Recorder(label: "curec_generation_tokens_per_second", dimensions: [], aggregate: true, factory: factory)
    }

    /// One generation wrote `count` tokens in `nanoseconds` (prompt processing included).
    public func generated(tokens count: Int, nanoseconds: UInt64) {
        guard count > 0, nanoseconds > 0 else { return }
        let elapsed = Double(nanoseconds) / 1e9
        tokens.increment(by: Int64(count))
        seconds.increment(by: elapsed)
        rate.record(Double(count) / elapsed)
    }
}

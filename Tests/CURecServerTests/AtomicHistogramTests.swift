import Foundation
import Testing
@testable import CURecServer

@Suite struct AtomicHistogramTests {
    @Test func aValueCountsInTheFirstBucketThatHoldsItAndTheExpositionIsCumulative() {
        let histogram = AtomicDurationHistogram(name: "t_seconds", labels: [("method", "Score")],
                                                bounds: [.microseconds(100), .milliseconds(1), .milliseconds(10)])
        #expect(histogram.bucket(of: 0) == 0)
        #expect(histogram.bucket(of: 100_000) == 0)  // a bound holds its own value (le)
        #expect(histogram.bucket(of: 100_001) == 1)
        #expect(histogram.bucket(of: 10_000_000) == 2)
        #expect(histogram.bucket(of: 10_000_001) == 3)  // +Inf
        for nanoseconds: Int64 in [50_000, 100_000, 500_000, 20_000_000, -5] { histogram.recordNanoseconds(nanoseconds) }
        var buffer: [UInt8] = []
        histogram.emit(into: &buffer)
        #expect(String(decoding: buffer, as: UTF8.self) == """
            t_seconds_bucket{method="Score",le="0.0001"} 3
            t_seconds_bucket{method="Score",le="0.001"} 4
            t_seconds_bucket{method="Score",le="0.01"} 4
            t_seconds_bucket{method="Score",le="+Inf"} 5
            t_seconds_sum{method="Score"} 0.02065
            t_seconds_count{method="Score"} 5

            """)
    }

    @Test func concurrentRecordingLosesNothing() async {
        let registry = AtomicHistogramRegistry()
        let histogram = registry.histogram(name: "c_seconds", labels: [], bounds: DaemonMetrics.requestBuckets)
        #expect(registry.histogram(name: "c_seconds", labels: [], bounds: DaemonMetrics.requestBuckets) === histogram)
        await withTaskGroup(of: Void.self) { group in
            for task in 0..<8 {
                group.addTask {
                    for n in 0..<10_000 { histogram.recordNanoseconds(Int64((task * 10_000 + n) % 3) * 1_000_000) }
                }
            }
        }
        var buffer: [UInt8] = []
        registry.emit(into: &buffer)
        let text = String(decoding: buffer, as: UTF8.self)
        #expect(text.hasPrefix("# TYPE c_seconds histogram\n"))
        #expect(text.contains("c_seconds_count 80000\n"))
        #expect(text.contains("c_seconds_bucket{le=\"+Inf\"} 80000\n"))
    }
}

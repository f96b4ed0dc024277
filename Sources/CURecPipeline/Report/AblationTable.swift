import Foundation

/// Mean, sample standard deviation and number of runs of one metric of one variant.
public struct MetricSummary: Sendable, Equatable, Codable {
    /// The arithmetic mean over the runs.
    public var mean: Double
    /// The sample standard deviation (divisor n − 1); 0 for a single run.
    public var std: Double
    /// How many runs reported the metric.
    public var count: Int

    /// A summary with the given values.
    public init(mean: Double, std: Double, count: Int) {
        self.mean = mean
        self.std = std
        self.count = count
    }

    /// The summary of `values`; nil when `values` is empty.
    public init?(values: [Double]) {
        guard !values.isEmpty else { return nil }
        let mean = values.reduce(0, +) / Double(values.count)
        var std = 0.0
        if values.count > 1 {
            let squares = values.reduce(0) { $0 + ($1 - mean) * ($1 - mean) }
            std = (squares / Double(values.count - 1)).squareRoot()
        }
        self.init(mean: mean, std: std, count: values.count)
    }
}

/// Ablation results: per variant (e.g. "ID only", "+ content") and per seed, a dictionary of
/// metrics (e.g. "recall@10": 0.1234). Summarises each variant and metric over its seeds and
/// renders the Markdown table of the report.
///
/// Variants keep the order in which they were first added. Non-finite metric values are
/// dropped when added, so summaries and the JSON encoding only ever see finite numbers.
/// Encoded as JSON, the table holds its runs and, for readers, the computed summaries.
public struct AblationTable: Sendable, Equatable, Codable {
    /// One seed's metrics.
    public struct Run: Sendable, Equatable, Codable {
        /// The seed the run was trained with.
        public var seed: Int
        /// Metric name → value.
        public var metrics: [String: Double]

        /// A run of `seed` with `metrics`.
        public init(seed: Int, metrics: [String: Double]) {
            self.seed = seed
            self.metrics = metrics
        }
    }

    /// One variant's runs, in the order they were added.
    public struct Variant: Sendable, Equatable, Codable {
        /// The variant's name, as shown in the table's first column.
        public var name: String
        /// The runs, at most one per seed.
        public var runs: [Run]

        /// A variant called `name` with `runs`.
        public init(name: String, runs: [Run] = []) {
            self.name = name
            self.runs = runs
        }
    }

    /// The variants in insertion order.
    public private(set) var variants: [Variant]

    /// An empty table.
    public init() {
        variants = []
    }

    /// Records the metrics of `variant` trained with `seed`. A variant seen for the first time
    /// is appended; a second run with the same seed replaces the first. Non-finite values are dropped.
    public mutating func add(variant: String, seed: Int, metrics: [String: Double]) {
        let run = Run(seed: seed, metrics: metrics.filter { $0.value.isFinite })
        guard let index = variants.firstIndex(where: { $0.name == variant }) else {
            variants.append(Variant(name: variant, runs: [run]))
            return
        }
        if let existing = variants[index].runs.firstIndex(where: { $0.seed == seed }) {
            variants[index].runs[existing] = run
        } else {
            variants[index].runs.append(run)
        }
    }

    /// The variant names in insertion order.
    public var variantNames: [String] { variants.map(\.name) }

    /// Every metric name reported by any run, sorted.
    public var metricNames: [String] {
        Set(variants.flatMap { $0.runs.flatMap { $0.metrics.keys } }).sorted()
    }

    /// The summary of `metric` over the seeds of `variant`; nil when no run reported it.
    public func summary(variant: String, metric: String) -> MetricSummary? {
        guard let runs = variants.first(where: { $0.name == variant })?.runs else { return nil }
        return MetricSummary(values: runs.compactMap { $0.metrics[metric] })
    }

    /// Every metric's summary for `variant`, keyed by metric name.
    public func summaries(variant: String) -> [String: MetricSummary] {
        guard let runs = variants.first(where: { $0.name == variant })?.runs else { return [:] }
        let names = Set(runs.flatMap { $0.metrics.keys })
        var result: [String: MetricSummary] = [:]
        for name in names {
            result[name] = MetricSummary(values: runs.compactMap { $0.metrics[name] })
        }
        return result
    }

    /// Every summary: variant name → metric name → summary.
    public func allSummaries() -> [String: [String: MetricSummary]] {
        var result: [String: [String: MetricSummary]] = [:]
        for variant in variants { result[variant.name] = summaries(variant: variant.name) }
        return result
    }

    /// The variant with the best mean of `metric` (the first one on ties); nil when no variant has it.
    public func bestVariant(metric: String, higherIsBetter: Bool = true) -> String? {
        var best: (name: String, mean: Double)?
        for variant in variants {
            guard let mean = summary(variant: variant.name, metric: metric)?.mean else { continue }
            if let current = best, higherIsBetter ? mean <= current.mean : mean >= current.mean { continue }
            best = (variant.name, mean)
        }
        return best?.name
    }

    /// The relative change of the mean of `metric` from `baseline` to `variant`:
    /// (mean(variant) − mean(baseline)) / |mean(baseline)|, e.g. 0.12 for 12 % better.
    /// NaN when either variant lacks the metric or the baseline mean is 0.
    public func compare(variant: String, against baseline: String, metric: String) -> Double {
        guard let value = summary(variant: variant, metric: metric)?.mean,
              let reference = summary(variant: baseline, metric: metric)?.mean,
              reference != 0
        else { return .nan }
        return (value - reference) / abs(reference)
    }

    /// A Markdown table: one row per variant in insertion order, one column per entry of `metrics`
    /// in that order, cells "mean ± std" with `decimals` digits ("0.1234 ± 0.0056") and "—" where
    /// a variant lacks the metric. The best mean of each column is bold (every variant that shows
    /// the same rounded best); metrics in `lowerIsBetter` prefer the smallest mean. `headers` maps
    /// metric names to column titles (default: the metric name).
    public func markdown(metrics: [String], headers: [String: String] = [:], lowerIsBetter: Set<String> = [],
                         decimals: Int = 4, variantHeader: String = "Variant") -> String {
        let header = [variantHeader] + metrics.map { headers[$0] ?? $0 }
        var cells = variants.map { [$0.name] + Array(repeating: "—", count: metrics.count) }
        for (column, metric) in metrics.enumerated() {
            let values = variants.map { summary(variant: $0.name, metric: metric) }
            let means = values.compactMap { $0?.mean }
            let best = lowerIsBetter.contains(metric) ? means.min() : means.max()
            let bestText = best.map { ReportFormat.fixed($0, decimals: decimals) }
            for (row, summary) in values.enumerated() {
                guard let summary else { continue }
                let mean = ReportFormat.fixed(summary.mean, decimals: decimals)
                let text = mean + " ± " + ReportFormat.fixed(summary.std, decimals: decimals)
                cells[row][column + 1] = means.count > 1 && mean == bestText ? "**" + text + "**" : text
            }
        }
        let alignments = [MarkdownReport.Alignment.left] + Array(repeating: .right, count: metrics.count)
        return MarkdownReport.tableText(header: header, rows: cells, alignments: alignments)
    }

    /// A grouped bar chart of the table: one group per entry of `metrics` (titled through
    /// `headers`, default the metric name), one bar per variant showing mean ± std.
    public func barChart(title: String, metrics: [String], headers: [String: String] = [:],
                         yLabel: String = "") -> SVGBarChart {
        let chartVariants = variants.map { variant in
            SVGBarChart.Variant(name: variant.name, bars: metrics.map { metric in
                summary(variant: variant.name, metric: metric).map { SVGBarChart.Bar(mean: $0.mean, std: $0.std) }
            })
        }
        return SVGBarChart(title: title, yLabel: yLabel, categories: metrics.map { headers[$0] ?? $0 },
                           variants: chartVariants)
    }

    // MARK: - Codable

    private enum CodingKeys: String, CodingKey {
        case variants
        case summaries
    }

    /// Reads the runs; stored summaries are ignored and recomputed on demand.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        variants = try container.decode([Variant].self, forKey: .variants)
    }

    /// Writes the runs and, for readers of the file, the summaries.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(variants, forKey: .variants)
        try container.encode(allSummaries(), forKey: .summaries)
    }
}

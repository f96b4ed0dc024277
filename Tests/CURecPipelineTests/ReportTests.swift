import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import Testing
@testable import CURecPipeline

/// Parses an SVG document and records its elements, attributes and text.
private struct SVGProbe {
    struct Element {
        var name: String
        var attributes: [String: String]
    }

    private(set) var elements: [Element] = []
    private(set) var text = ""
    let parsed: Bool

    init(_ svg: String) {
        let parser = XMLParser(data: Data(svg.utf8))
        let collector = Collector()
        parser.delegate = collector
        parsed = parser.parse()
        elements = collector.elements
        text = collector.text
    }

    func all(_ name: String) -> [Element] { elements.filter { $0.name == name } }

    func all(_ name: String, class className: String) -> [Element] {
        elements.filter { $0.name == name && $0.attributes["class"] == className }
    }

    /// The frame of the plot area: x, y, width, height.
    func plotBox() -> (x: Double, y: Double, width: Double, height: Double)? {
        guard let rect = all("rect", class: "plot").first,
              let x = rect.double("x"), let y = rect.double("y"),
              let width = rect.double("width"), let height = rect.double("height")
        else { return nil }
        return (x, y, width, height)
    }

    private final class Collector: NSObject, XMLParserDelegate {
        var elements: [Element] = []
        var text = ""

        func parser(_ parser: XMLParser, didStartElement elementName: String, namespaceURI: String?,
                    qualifiedName qName: String?, attributes attributeDict: [String: String] = [:]) {
            elements.append(Element(name: elementName, attributes: attributeDict))
        }

        func parser(_ parser: XMLParser, foundCharacters string: String) {
            text += string
        }
    }
}

extension SVGProbe.Element {
    func double(_ attribute: String) -> Double? { attributes[attribute].flatMap(Double.init) }

    /// The points of a polyline as pairs.
    var points: [(x: Double, y: Double)] {
        (attributes["points"] ?? "").split(separator: " ").compactMap { pair in
            let parts = pair.split(separator: ",").compactMap { Double($0) }
            return parts.count == 2 ? (parts[0], parts[1]) : nil
        }
    }
}

private let hostile = #"A & B <tag> "quoted" 'single' &amp; ]]> \#u{1}"#

private func containsNonFinite(_ svg: String) -> Bool {
    let lower = svg.lowercased()
    return lower.contains("nan") || lower.contains("inf")
}

@Suite struct ReportFormatTests {
    @Test func fixedDecimalsAreLocaleIndependent() {
        #expect(ReportFormat.fixed(0.123456, decimals: 4) == "0.1235")
        #expect(ReportFormat.fixed(-0.00001, decimals: 4) == "0.0000")
        #expect(ReportFormat.fixed(-2.5, decimals: 2) == "-2.50")
        #expect(ReportFormat.fixed(1234.5, decimals: 1) == "1234.5")
        #expect(ReportFormat.fixed(2, decimals: 0) == "2")
        #expect(ReportFormat.fixed(0.004, decimals: 2) == "0.00")
        #expect(ReportFormat.fixed(1e17, decimals: 1) == "100000000000000000.0")
        #expect(ReportFormat.fixed(.nan, decimals: 2) == "NaN")
        #expect(ReportFormat.compact(64.0, maxDecimals: 2) == "64")
        #expect(ReportFormat.compact(12.504, maxDecimals: 2) == "12.5")
        #expect(ReportFormat.compact(-0.001, maxDecimals: 2) == "0")
        #expect(ReportFormat.signedPercent(0.1234) == "+12.3%")
        #expect(ReportFormat.signedPercent(-0.04) == "-4.0%")
        #expect(ReportFormat.signedPercent(0) == "0.0%")
        #expect(ReportFormat.signedPercent(.nan) == "n/a")
    }
}

@Suite struct NiceScaleTests {
    @Test func ticksAreNiceSteps() {
        let unit = NiceScale(min: 0, max: 1)
        #expect(unit.ticks == [0, 0.2, 0.4, 0.6, 0.8, 1.0])
        #expect(unit.ticks.map(unit.label) == ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"])

        #expect(NiceScale(min: 0, max: 10).ticks == [0, 2, 4, 6, 8, 10])
        let percent = NiceScale(min: 3, max: 97)
        #expect(percent.ticks == [0, 20, 40, 60, 80, 100])
        #expect(percent.label(40) == "40")
        #expect(NiceScale(min: -0.37, max: 0.92).ticks == [-0.5, 0, 0.5, 1.0])
        let small = NiceScale(min: 0.001, max: 0.0042)
        #expect(small.ticks == [0.001, 0.002, 0.003, 0.004, 0.005])
        #expect(small.label(0.003) == "0.003")
        #expect(NiceScale(min: 1200, max: 5300).ticks == [1000, 2000, 3000, 4000, 5000, 6000])
        let large = NiceScale(min: 0, max: 1.1e6)
        #expect(large.ticks.map(large.label) == ["0", "5e5", "1e6", "1.5e6"])
    }

    @Test func degenerateRangesArePadded() {
        let constant = NiceScale(min: 0.5, max: 0.5)
        #expect(constant.lower < 0.5 && constant.upper > 0.5)
        #expect(constant.ticks.count >= 3)
        let zero = NiceScale(min: 0, max: 0)
        #expect(zero.lower == -1 && zero.upper == 1)
        let swapped = NiceScale(min: 10, max: 0)
        #expect(swapped.lower == 0 && swapped.upper == 10)
        let broken = NiceScale(min: .nan, max: .infinity)
        #expect(broken.lower == 0 && broken.upper == 1)
        let huge = NiceScale(min: -1e308, max: 1e308)
        #expect(huge.ticks.allSatisfy { $0.isFinite })
        #expect(huge.fraction(huge.upper) == 1 && huge.fraction(huge.lower) == 0)
    }
}

@Suite struct SVGLineChartTests {
    private func chart(_ series: [SVGLineChart.Series], title: String = "Validation recall") -> String {
        SVGLineChart(title: title, xLabel: "epoch", yLabel: "Recall@10", series: series).render()
    }

    @Test func hostileTextIsEscaped() {
        let svg = SVGLineChart(title: hostile, xLabel: hostile, yLabel: hostile,
                               series: [.init(name: hostile, points: [(0, 1), (1, 2)])]).render()
        let probe = SVGProbe(svg)
        #expect(probe.parsed)
        #expect(probe.text.contains(#"A & B <tag> "quoted" 'single' &amp; ]]>"#))
    }

    @Test func extremesMapToPlotCorners() throws {
        let svg = chart([.init(name: "train", points: [(0, 0), (5, 0.5), (10, 1)])])
        let probe = SVGProbe(svg)
        #expect(probe.parsed)
        let box = try #require(probe.plotBox())
        let line = try #require(probe.all("polyline", class: "series").first)
        let points = line.points
        #expect(points.count == 3)
        #expect(abs(points[0].x - box.x) < 0.01 && abs(points[0].y - (box.y + box.height)) < 0.01)
        #expect(abs(points[1].x - (box.x + box.width / 2)) < 0.01 && abs(points[1].y - (box.y + box.height / 2)) < 0.01)
        #expect(abs(points[2].x - (box.x + box.width)) < 0.01 && abs(points[2].y - box.y) < 0.01)
        let yTicks = probe.all("text", class: "y-tick").count
        #expect(yTicks == 6)
    }

    @Test func nonFinitePointsAreSkipped() throws {
        let svg = chart([.init(name: "loss", points: [(0, 0), (1, .nan), (2, .infinity), (.nan, 3), (3, 1)])])
        let probe = SVGProbe(svg)
        #expect(probe.parsed)
        #expect(!containsNonFinite(svg))
        let line = try #require(probe.all("polyline", class: "series").first)
        #expect(line.points.count == 2)
    }

    @Test func singlePointAndConstantSeriesRender() {
        let single = chart([.init(name: "one", points: [(5, 0.3)])])
        #expect(SVGProbe(single).parsed)
        #expect(!containsNonFinite(single))
        #expect(SVGProbe(single).all("circle").count == 1)

        let constant = chart([.init(name: "flat", points: [(0, 2), (1, 2), (2, 2)]),
                              .init(name: "zero", points: [(0, 0), (1, 0)])])
        let probe = SVGProbe(constant)
        #expect(probe.parsed)
        #expect(!containsNonFinite(constant))
        #expect(probe.all("polyline", class: "series").count == 2)
        let colors = Set(probe.all("polyline", class: "series").compactMap { $0.attributes["stroke"] })
        #expect(colors.count == 2)
    }

    @Test func emptyChartsSayNoData() {
        for series in [[], [SVGLineChart.Series(name: "nothing", points: [(.nan, .nan)])]] {
            let svg = chart(series)
            let probe = SVGProbe(svg)
            #expect(probe.parsed)
            #expect(probe.all("text", class: "no-data").count == 1)
            #expect(probe.plotBox() != nil)
            #expect(!containsNonFinite(svg))
        }
    }

    @Test func legendHasOneEntryPerSeries() {
        let series = (0..<12).map { SVGLineChart.Series(name: "variant \($0)", points: [(0, Double($0)), (1, 1)]) }
        let probe = SVGProbe(chart(series))
        #expect(probe.all("text", class: "legend").count == 12)
        #expect(Set(probe.all("polyline").compactMap { $0.attributes["stroke"] }).count == 12)
    }
}

@Suite struct SVGBarChartTests {
    private let categories = ["Recall@10", "NDCG@10"]

    @Test func barsStandOnZeroWithWhiskers() throws {
        let chart = SVGBarChart(title: "Ablation", yLabel: "score", categories: categories, variants: [
            .init(name: "ID only", bars: [.init(mean: 0.10, std: 0.01), .init(mean: 0.05, std: 0.005)]),
            .init(name: "+ content", bars: [.init(mean: 0.12, std: 0.02), .init(mean: 0.06, std: 0)]),
        ])
        let probe = SVGProbe(chart.render())
        #expect(probe.parsed)
        let box = try #require(probe.plotBox())
        let bars = probe.all("rect", class: "bar")
        #expect(bars.count == 4)
        for bar in bars {
            let bottom = (bar.double("y") ?? 0) + (bar.double("height") ?? 0)
            #expect(abs(bottom - (box.y + box.height)) < 0.02)
        }
        // Three lines (stem and two caps) per bar with a positive std.
        #expect(probe.all("line", class: "whisker").count == 9)
        #expect(probe.all("text", class: "category").count == 2)
        #expect(probe.all("text", class: "legend").count == 2)
        #expect(Set(bars.compactMap { $0.attributes["fill"] }).count == 2)
    }

    @Test func hostileTextAndBrokenValues() {
        let svg = SVGBarChart(title: hostile, yLabel: hostile, xLabel: hostile, categories: [hostile, "NDCG@10"], variants: [
            .init(name: hostile, bars: [.init(mean: .nan, std: 0.1), .init(mean: 0.2, std: .infinity)]),
            .init(name: "short", bars: [nil]),
        ]).render()
        let probe = SVGProbe(svg)
        #expect(probe.parsed)
        #expect(!containsNonFinite(svg))
        #expect(probe.all("rect", class: "bar").count == 1)
        #expect(probe.all("line", class: "whisker").isEmpty)
    }

    @Test func emptyAndZeroCharts() {
        let empty = SVGBarChart(title: "nothing", categories: categories, variants: [
            .init(name: "a", bars: [.init(mean: .nan), nil]),
        ]).render()
        #expect(SVGProbe(empty).parsed)
        #expect(SVGProbe(empty).all("text", class: "no-data").count == 1)
        let none = SVGBarChart(title: "", categories: [], variants: []).render()
        #expect(SVGProbe(none).all("text", class: "no-data").count == 1)
        let zeros = SVGBarChart(title: "zeros", categories: categories, variants: [
            .init(name: "a", bars: [.init(mean: 0), .init(mean: 0)]),
        ]).render()
        #expect(SVGProbe(zeros).parsed)
        #expect(!containsNonFinite(zeros))
    }
}

@Suite struct AblationTableTests {
    private func sample() -> AblationTable {
        var table = AblationTable()
        table.add(variant: "ID only", seed: 1, metrics: ["recall@10": 0.10, "ndcg@10": 0.05])
        table.add(variant: "ID only", seed: 2, metrics: ["recall@10": 0.20, "ndcg@10": 0.07])
        table.add(variant: "ID only", seed: 3, metrics: ["recall@10": 0.30, "ndcg@10": 0.06])
        table.add(variant: "+ content | reasons", seed: 1, metrics: ["recall@10": 0.25, "ndcg@10": .nan])
        return table
    }

    @Test func meanAndSampleStd() throws {
        let table = sample()
        let recall = try #require(table.summary(variant: "ID only", metric: "recall@10"))
        #expect(abs(recall.mean - 0.2) < 1e-12)
        #expect(abs(recall.std - 0.1) < 1e-12)
        #expect(recall.count == 3)
        let ndcg = try #require(table.summary(variant: "ID only", metric: "ndcg@10"))
        #expect(abs(ndcg.mean - 0.06) < 1e-12)
        #expect(abs(ndcg.std - 0.01) < 1e-12)
        let single = try #require(table.summary(variant: "+ content | reasons", metric: "recall@10"))
        #expect(single == MetricSummary(mean: 0.25, std: 0, count: 1))
        #expect(table.summary(variant: "+ content | reasons", metric: "ndcg@10") == nil)
        #expect(table.variantNames == ["ID only", "+ content | reasons"])
        #expect(table.metricNames == ["ndcg@10", "recall@10"])
        #expect(table.bestVariant(metric: "recall@10") == "+ content | reasons")
        #expect(table.bestVariant(metric: "recall@10", higherIsBetter: false) == "ID only")
    }

    @Test func sameSeedReplacesTheRun() throws {
        var table = sample()
        table.add(variant: "ID only", seed: 3, metrics: ["recall@10": 0.0, "ndcg@10": 0.06])
        let recall = try #require(table.summary(variant: "ID only", metric: "recall@10"))
        #expect(recall.count == 3)
        #expect(abs(recall.mean - 0.1) < 1e-12)
    }

    @Test func compareIsRelativeChangeOfMeans() {
        let table = sample()
        #expect(abs(table.compare(variant: "+ content | reasons", against: "ID only", metric: "recall@10") - 0.25) < 1e-12)
        #expect(table.compare(variant: "+ content | reasons", against: "ID only", metric: "ndcg@10").isNaN)
        #expect(table.compare(variant: "missing", against: "ID only", metric: "recall@10").isNaN)
    }

    @Test func markdownBoldsTheBestAndEscapes() {
        let text = sample().markdown(metrics: ["recall@10", "ndcg@10"], headers: ["recall@10": "Recall@10"])
        let lines = text.split(separator: "\n").map(String.init)
        #expect(lines == [
            "| Variant | Recall@10 | ndcg@10 |",
            "| :--- | ---: | ---: |",
            "| ID only | 0.2000 ± 0.1000 | 0.0600 ± 0.0100 |",
            "| + content \\| reasons | **0.2500 ± 0.0000** | — |",
        ])
        let lower = sample().markdown(metrics: ["recall@10"], lowerIsBetter: ["recall@10"], decimals: 2)
        #expect(lower.contains("| ID only | **0.20 ± 0.10** |"))
    }

    @Test func jsonRoundTrip() throws {
        let table = sample()
        let data = try JSONEncoder().encode(table)
        let decoded = try JSONDecoder().decode(AblationTable.self, from: data)
        #expect(decoded == table)
        let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect(object["summaries"] != nil)
    }

    @Test func barChartFromTable() {
        let chart = sample().barChart(title: "Ablation", metrics: ["recall@10", "ndcg@10"])
        #expect(chart.categories == ["recall@10", "ndcg@10"])
        #expect(chart.variants.map(\.name) == ["ID only", "+ content | reasons"])
        #expect(chart.variants[1].bars[1] == nil)
        #expect(SVGProbe(chart.render()).all("rect", class: "bar").count == 3)
    }
}

@Suite struct MarkdownReportTests {
    @Test func buildsADocument() {
        var report = MarkdownReport()
        report.heading("CURec ablation")
        report.paragraph("Content features help.\n")
        report.bullets(["first", "second\nline"])
        report.table(header: ["name", "value"], rows: [["a|b", "1"], ["c"]], alignments: [.left, .right])
        report.image(alt: "Recall [curve]", file: "recall curve (val).svg")
        report.code("let x = 1\n", language: "swift")
        #expect(report.render() == """
        # CURec ablation

        Content features help.

        - first
        - second
          line

        | name | value |
        | :--- | ---: |
        | a\\|b | 1 |
        | c |  |

        ![Recall \\[curve\\]](recall%20curve%20%28val%29.svg)

        ```swift
        let x = 1
        ```

        """)
        #expect(MarkdownReport().render() == "")
    }
}

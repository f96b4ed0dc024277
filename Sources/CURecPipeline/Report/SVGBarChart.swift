import Foundation

/// A dependency-free grouped SVG bar chart with error bars: one group per category
/// (e.g. "Recall@10", "NDCG@10"), one coloured bar per variant in each group (e.g. "ID only",
/// "+ content"), each bar a mean with a ± standard deviation whisker.
///
/// The y axis starts at 0 (it extends below 0 only for negative values). Bars with a NaN or
/// infinite mean are skipped, a non-finite standard deviation draws no whisker, and a chart
/// without any finite bar shows an empty axis box with "no data". Every text is XML-escaped.
public struct SVGBarChart: Sendable {
    /// One bar: a mean and the standard deviation drawn as a ± whisker.
    public struct Bar: Sendable, Equatable, Codable {
        /// The bar's height.
        public var mean: Double
        /// Half the whisker's length; 0 draws no whisker, negative values count as their magnitude.
        public var std: Double

        /// A bar of height `mean` with a ± `std` whisker.
        public init(mean: Double, std: Double = 0) {
            self.mean = mean
            self.std = std
        }
    }

    /// One variant: a bar per category, in the order of ``SVGBarChart/categories``.
    public struct Variant: Sendable, Equatable {
        /// The legend entry.
        public var name: String
        /// One entry per category; nil (or a missing trailing entry) leaves a gap.
        public var bars: [Bar?]

        /// A variant called `name` with `bars[i]` in category `i`.
        public init(name: String, bars: [Bar?]) {
            self.name = name
            self.bars = bars
        }
    }

    /// The heading above the plot; empty for none.
    public var title: String
    /// The label along the y axis; empty for none.
    public var yLabel: String
    /// The label below the category names; empty for none.
    public var xLabel: String
    /// The groups along the x axis.
    public var categories: [String]
    /// The bars of each group, coloured in this order.
    public var variants: [Variant]
    /// The document width in pixels.
    public var width: Int
    /// The document height in pixels.
    public var height: Int

    /// A chart of `variants` over `categories`; `width` × `height` pixels.
    public init(title: String, yLabel: String = "", xLabel: String = "", categories: [String], variants: [Variant],
                width: Int = 640, height: Int = 360) {
        self.title = title
        self.yLabel = yLabel
        self.xLabel = xLabel
        self.categories = categories
        self.variants = variants
        self.width = width
        self.height = height
    }

    /// Category names longer than this are shortened with "…".
    static let maxCategoryLabelLength = 32

    /// The chart as a standalone SVG document.
    public func render() -> String {
        let layout = self.layout()
        var canvas = SVGCanvas(width: layout.width, height: layout.height)
        canvas.title(title)
        let box = layout.box
        if let scale = layout.yScale {
            canvas.yAxis(scale, box: box)
            let groupWidth = box.width / Double(categories.count)
            let barWidth = groupWidth * 0.8 / Double(max(variants.count, 1))
            let zeroY = box.y(scale.fraction(0))
            for (category, label) in layout.categoryLabels.enumerated() {
                let groupLeft = box.left + Double(category) * groupWidth
                let center = groupLeft + groupWidth / 2
                if layout.rotateLabels {
                    let y = box.bottom + 14
                    canvas.text(label, x: center, y: y, anchor: "end", attributes: [
                        ("class", "category"), ("transform", "rotate(-30 \(SVGCanvas.number(center)) \(SVGCanvas.number(y)))"),
                    ])
                } else {
                    canvas.text(label, x: center, y: box.bottom + 17, anchor: "middle", attributes: [("class", "category")])
                }
                for (index, variant) in variants.enumerated() {
                    guard category < variant.bars.count, let bar = variant.bars[category], bar.mean.isFinite else { continue }
                    let x = groupLeft + groupWidth * 0.1 + Double(index) * barWidth
                    let meanY = box.y(scale.fraction(bar.mean))
                    canvas.rect(x: x + barWidth * 0.05, y: min(zeroY, meanY), width: barWidth * 0.9, height: abs(zeroY - meanY),
                                attributes: [("class", "bar"), ("fill", ChartPalette.color(index))])
                    let spread = abs(bar.std)
                    guard spread.isFinite, spread > 0 else { continue }
                    let upper = box.y(scale.fraction(bar.mean + spread))
                    let lower = box.y(scale.fraction(bar.mean - spread))
                    // A whisker shorter than a pixel would only show as a stray cap.
                    guard lower - upper >= 1 else { continue }
                    let middle = x + barWidth / 2
                    let cap = min(barWidth * 0.2, 5)
                    let whisker: [(String, String)] = [("class", "whisker")]
                    canvas.line(x1: middle, y1: lower, x2: middle, y2: upper, stroke: "#222222", width: 1.2, extra: whisker)
                    canvas.line(x1: middle - cap, y1: upper, x2: middle + cap, y2: upper, stroke: "#222222", width: 1.2, extra: whisker)
                    canvas.line(x1: middle - cap, y1: lower, x2: middle + cap, y2: lower, stroke: "#222222", width: 1.2, extra: whisker)
                }
            }
            if scale.lower < 0 {
                canvas.line(x1: box.left, y1: zeroY, x2: box.right, y2: zeroY, stroke: "#444444")
            }
        } else {
            canvas.noData(box)
        }
        canvas.frame(box)
        canvas.axisLabels(x: xLabel, xLabelY: box.bottom + layout.categoryLabelHeight + 18, y: yLabel, box: box)
        canvas.legend(layout.legend, top: layout.legendTop, lineSwatch: false)
        return canvas.render(title: title)
    }

    // MARK: - Layout

    /// The y scale (nil without finite bars), plot box, category labels and legend position.
    struct Layout {
        var width: Int
        var height: Int
        var yScale: NiceScale?
        var box: PlotBox
        var categoryLabels: [String]
        var rotateLabels: Bool
        var categoryLabelHeight: Double
        var legend: LegendLayout
        var legendTop: Double
    }

    func layout() -> Layout {
        let width = max(self.width, 120)
        let height = max(self.height, 100)
        var low = 0.0
        var high = 0.0
        var anyBar = false
        for variant in variants {
            for bar in variant.bars.prefix(categories.count) {
                guard let bar, bar.mean.isFinite else { continue }
                anyBar = true
                let spread = abs(bar.std).isFinite ? abs(bar.std) : 0
                low = min(low, bar.mean - spread)
                high = max(high, bar.mean + spread)
            }
        }
        if anyBar && low == 0 && high == 0 { high = 1 }
        let yScale = anyBar ? NiceScale(min: low, max: high) : nil

        let labels = categories.map { label in
            label.count > Self.maxCategoryLabelLength ? String(label.prefix(Self.maxCategoryLabelLength - 1)) + "…" : label
        }
        let tickLabelWidth = (yScale?.ticks ?? []).map { SVGCanvas.textWidth(yScale?.label($0) ?? "", fontSize: 11) }.max() ?? 0
        let left = 10 + (yLabel.isEmpty ? 0 : 18) + tickLabelWidth + 10
        let right = Double(width) - 20
        let groupWidth = max(right - left, 1) / Double(max(categories.count, 1))
        let widest = labels.map { SVGCanvas.textWidth($0, fontSize: 11) }.max() ?? 0
        let rotate = widest > groupWidth * 0.95
        let labelHeight = rotate ? 14 + widest * 0.5 : 22
        let legend = LegendLayout(names: variants.map(\.name), left: left, width: max(right - left, 1))
        let top = title.isEmpty ? 14.0 : 38.0
        let belowPlot = labelHeight + (xLabel.isEmpty ? 0 : 20) + (legend.rows > 0 ? legend.height + 4 : 0) + 6
        var box = PlotBox(left: left, top: top, right: right, bottom: Double(height) - belowPlot)
        if box.width < 20 { box.right = box.left + 20 }
        if box.height < 20 { box.bottom = box.top + 20 }
        let legendTop = box.bottom + labelHeight + (xLabel.isEmpty ? 0 : 20)
        let drawable = yScale != nil && !categories.isEmpty
        return Layout(width: width, height: height, yScale: drawable ? yScale : nil, box: box, categoryLabels: labels,
                      rotateLabels: rotate, categoryLabelHeight: labelHeight, legend: legend, legendTop: legendTop)
    }
}

import Foundation

/// A dependency-free SVG line chart: numeric x and y axes with nice ticks, one polyline per
/// series, and a legend with a distinct colour per series.
///
/// Points with a NaN or infinite coordinate are skipped; a single point or a constant series
/// gets a padded axis range; a chart without any finite point shows an empty axis box with
/// "no data". Every text is XML-escaped.
public struct SVGLineChart: Sendable {
    /// One named line.
    public struct Series: Sendable {
        /// The legend entry.
        public var name: String
        /// The points in drawing order (they are not sorted by x).
        public var points: [(x: Double, y: Double)]

        /// A series called `name` through `points`, drawn in the given order.
        public init(name: String, points: [(x: Double, y: Double)]) {
            self.name = name
            self.points = points
        }
    }

    /// Series with at most this many finite points also get a dot per point.
    static let markerLimit = 40

    /// The heading above the plot; empty for none.
    public var title: String
    /// The label below the x axis; empty for none.
    public var xLabel: String
    /// The label along the y axis; empty for none.
    public var yLabel: String
    /// The lines, coloured in this order.
    public var series: [Series]
    /// The document width in pixels.
    public var width: Int
    /// The document height in pixels.
    public var height: Int

    /// A chart of `series`; `width` × `height` pixels.
    public init(title: String, xLabel: String = "", yLabel: String = "", series: [Series],
                width: Int = 640, height: Int = 360) {
        self.title = title
        self.xLabel = xLabel
        self.yLabel = yLabel
        self.series = series
        self.width = width
        self.height = height
    }

    /// The chart as a standalone SVG document.
    public func render() -> String {
        let layout = self.layout()
        var canvas = SVGCanvas(width: layout.width, height: layout.height)
        canvas.title(title)
        if let xScale = layout.xScale, let yScale = layout.yScale {
            canvas.yAxis(yScale, box: layout.box)
            canvas.xAxis(xScale, box: layout.box)
            for (index, points) in layout.finitePoints.enumerated() where !points.isEmpty {
                let color = ChartPalette.color(index)
                let pixels = points.map { point in
                    (layout.box.x(xScale.fraction(point.x)), layout.box.y(yScale.fraction(point.y)))
                }.filter { $0.0.isFinite && $0.1.isFinite }
                if pixels.count > 1 {
                    let list = pixels.map { SVGCanvas.number($0.0) + "," + SVGCanvas.number($0.1) }.joined(separator: " ")
                    canvas.element("polyline", [("class", "series"), ("points", list), ("fill", "none"), ("stroke", color),
                                                ("stroke-width", "2"), ("stroke-linejoin", "round")])
                }
                if pixels.count <= Self.markerLimit {
                    for (x, y) in pixels {
                        canvas.element("circle", [("cx", SVGCanvas.number(x)), ("cy", SVGCanvas.number(y)), ("r", "2.5"),
                                                  ("fill", color)])
                    }
                }
            }
        } else {
            canvas.noData(layout.box)
        }
        canvas.frame(layout.box)
        canvas.axisLabels(x: xLabel, xLabelY: layout.box.bottom + 36, y: yLabel, box: layout.box)
        canvas.legend(layout.legend, top: layout.legendTop, lineSwatch: true)
        return canvas.render(title: title)
    }

    // MARK: - Layout

    /// Scales, plot box and legend position; the scales are nil when there is no finite point.
    struct Layout {
        var width: Int
        var height: Int
        var finitePoints: [[(x: Double, y: Double)]]
        var xScale: NiceScale?
        var yScale: NiceScale?
        var box: PlotBox
        var legend: LegendLayout
        var legendTop: Double
    }

    func layout() -> Layout {
        let width = max(self.width, 120)
        let height = max(self.height, 100)
        let finite = series.map { $0.points.filter { $0.x.isFinite && $0.y.isFinite } }
        let xs = finite.joined().map(\.x)
        let ys = finite.joined().map(\.y)
        var xScale: NiceScale?
        var yScale: NiceScale?
        if let xMin = xs.min(), let xMax = xs.max(), let yMin = ys.min(), let yMax = ys.max() {
            xScale = NiceScale(min: xMin, max: xMax)
            yScale = NiceScale(min: yMin, max: yMax)
        }
        let tickLabelWidth = (yScale?.ticks ?? []).map { SVGCanvas.textWidth(yScale?.label($0) ?? "", fontSize: 11) }.max() ?? 0
        let left = 10 + (yLabel.isEmpty ? 0 : 18) + tickLabelWidth + 10
        let right = Double(width) - 20
        let legend = LegendLayout(names: series.map(\.name), left: left, width: max(right - left, 1))
        let top = title.isEmpty ? 14.0 : 38.0
        let belowPlot = 24 + (xLabel.isEmpty ? 0 : 20) + (legend.rows > 0 ? legend.height + 4 : 0) + 6
        var box = PlotBox(left: left, top: top, right: right, bottom: Double(height) - belowPlot)
        if box.width < 20 { box.right = box.left + 20 }
        if box.height < 20 { box.bottom = box.top + 20 }
        let legendTop = box.bottom + 24 + (xLabel.isEmpty ? 0 : 20)
        return Layout(width: width, height: height, finitePoints: finite, xScale: xScale, yScale: yScale,
                      box: box, legend: legend, legendTop: legendTop)
    }
}

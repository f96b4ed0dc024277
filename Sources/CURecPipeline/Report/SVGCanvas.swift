import Foundation

/// XML escaping for SVG text and attribute values.
enum XMLText {
    /// `text` with `& < > " '` replaced by entities, line breaks and tabs turned into spaces,
    /// and characters XML 1.0 forbids (other control characters, U+FFFE, U+FFFF) replaced by U+FFFD.
    static func escape(_ text: String) -> String {
        var out = String.UnicodeScalarView()
        for scalar in text.unicodeScalars {
            switch scalar {
            case "&": out.append(contentsOf: "&amp;".unicodeScalars)
            case "<": out.append(contentsOf: "&lt;".unicodeScalars)
            case ">": out.append(contentsOf: "&gt;".unicodeScalars)
            case "\"": out.append(contentsOf: "&quot;".unicodeScalars)
            case "'": out.append(contentsOf: "&apos;".unicodeScalars)
            case "\t", "\n", "\r": out.append(" ")
            default:
                if scalar.value < 0x20 || scalar.value == 0xFFFE || scalar.value == 0xFFFF {
                    out.append("\u{FFFD}")
                } else {
                    out.append(scalar)
                }
            }
        }
        return String(out)
    }
}

/// Distinct series colours: the ten Tableau colours, then hues spaced by the golden angle.
enum ChartPalette {
    private static let base = [
        "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
        "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
    ]

    /// The colour of series number `index` as "#rrggbb".
    static func color(_ index: Int) -> String {
        if index >= 0 && index < base.count { return base[index] }
        let hue = (Double(index) * 137.508).truncatingRemainder(dividingBy: 360)
        return hex(hue: hue, saturation: 0.65, lightness: index % 2 == 0 ? 0.42 : 0.55)
    }

    private static func hex(hue: Double, saturation: Double, lightness: Double) -> String {
        let chroma = (1 - abs(2 * lightness - 1)) * saturation
        let sector = hue / 60
        let second = chroma * (1 - abs(sector.truncatingRemainder(dividingBy: 2) - 1))
        let (r, g, b): (Double, Double, Double)
        switch sector {
        case ..<1: (r, g, b) = (chroma, second, 0)
        case ..<2: (r, g, b) = (second, chroma, 0)
        case ..<3: (r, g, b) = (0, chroma, second)
        case ..<4: (r, g, b) = (0, second, chroma)
        case ..<5: (r, g, b) = (second, 0, chroma)
        default: (r, g, b) = (chroma, 0, second)
        }
        let offset = lightness - chroma / 2
        let digits = Array("0123456789abcdef")
        var text = "#"
        for channel in [r, g, b] {
            let byte = min(max(Int(((channel + offset) * 255).rounded()), 0), 255)
            text.append(digits[byte / 16])
            text.append(digits[byte % 16])
        }
        return text
    }
}

/// The rectangle the data is drawn in, in SVG pixels (y grows downwards).
struct PlotBox: Equatable {
    var left: Double
    var top: Double
    var right: Double
    var bottom: Double

    var width: Double { right - left }
    var height: Double { bottom - top }

    /// The pixel x of a horizontal fraction (0 = left edge, 1 = right edge).
    func x(_ fraction: Double) -> Double { left + fraction * width }
    /// The pixel y of a vertical fraction (0 = bottom edge, 1 = top edge).
    func y(_ fraction: Double) -> Double { bottom - fraction * height }
}

/// Legend entries laid out in rows that wrap at the available width.
struct LegendLayout {
    struct Entry {
        var name: String
        var color: String
        var x: Double
        var row: Int
    }

    static let rowHeight = 18.0
    static let swatchWidth = 16.0

    var entries: [Entry] = []
    var rows = 0

    var height: Double { Double(rows) * Self.rowHeight }

    init(names: [String], left: Double, width: Double) {
        guard !names.isEmpty else { return }
        var x = left
        var row = 0
        for (index, name) in names.enumerated() {
            let entryWidth = Self.swatchWidth + 6 + SVGCanvas.textWidth(name, fontSize: 11) + 16
            if x > left && x + entryWidth > left + width {
                row += 1
                x = left
            }
            entries.append(Entry(name: name, color: ChartPalette.color(index), x: x, row: row))
            x += entryWidth
        }
        rows = row + 1
    }
}

/// Builds an SVG document element by element; every attribute value and text is escaped.
struct SVGCanvas {
    let width: Int
    let height: Int
    private var elements: [String] = []

    init(width: Int, height: Int) {
        self.width = width
        self.height = height
    }

    /// A rough width estimate of `text` in a sans-serif font, for layout only.
    static func textWidth(_ text: String, fontSize: Double) -> Double {
        Double(text.count) * fontSize * 0.6
    }

    /// A pixel coordinate with at most two decimals.
    static func number(_ value: Double) -> String { ReportFormat.compact(value, maxDecimals: 2) }

    /// Appends `<name attributes…/>` or, with `content`, `<name attributes…>content</name>`.
    mutating func element(_ name: String, _ attributes: [(String, String)], content: String? = nil) {
        var text = "<" + name
        for (key, value) in attributes { text += " \(key)=\"\(XMLText.escape(value))\"" }
        if let content {
            text += ">" + XMLText.escape(content) + "</\(name)>"
        } else {
            text += "/>"
        }
        elements.append(text)
    }

    mutating func line(x1: Double, y1: Double, x2: Double, y2: Double, stroke: String, width: Double = 1, extra: [(String, String)] = []) {
        element("line", [("x1", Self.number(x1)), ("y1", Self.number(y1)), ("x2", Self.number(x2)), ("y2", Self.number(y2)),
                         ("stroke", stroke), ("stroke-width", Self.number(width))] + extra)
    }

    mutating func rect(x: Double, y: Double, width: Double, height: Double, attributes: [(String, String)]) {
        element("rect", [("x", Self.number(x)), ("y", Self.number(y)), ("width", Self.number(max(width, 0))),
                         ("height", Self.number(max(height, 0)))] + attributes)
    }

    mutating func text(_ content: String, x: Double, y: Double, anchor: String = "start", size: Double = 11,
                       attributes: [(String, String)] = []) {
        element("text", [("x", Self.number(x)), ("y", Self.number(y)), ("text-anchor", anchor),
                         ("font-size", Self.number(size))] + attributes, content: content)
    }

    /// The chart title centred at the top.
    mutating func title(_ title: String) {
        guard !title.isEmpty else { return }
        text(title, x: Double(width) / 2, y: 22, anchor: "middle", size: 14, attributes: [("font-weight", "bold")])
    }

    /// The white background and the plot area's frame (`class="plot"`).
    mutating func frame(_ box: PlotBox) {
        rect(x: box.left, y: box.top, width: box.width, height: box.height,
             attributes: [("class", "plot"), ("fill", "none"), ("stroke", "#444444"), ("stroke-width", "1")])
    }

    /// Horizontal grid lines, tick marks and labels of a numeric y axis.
    mutating func yAxis(_ scale: NiceScale, box: PlotBox) {
        for tick in scale.ticks {
            let y = box.y(scale.fraction(tick))
            guard y.isFinite else { continue }
            line(x1: box.left, y1: y, x2: box.right, y2: y, stroke: "#e5e5e5")
            line(x1: box.left - 4, y1: y, x2: box.left, y2: y, stroke: "#444444")
            text(scale.label(tick), x: box.left - 7, y: y + 4, anchor: "end", attributes: [("class", "y-tick")])
        }
    }

    /// Vertical grid lines, tick marks and labels of a numeric x axis.
    mutating func xAxis(_ scale: NiceScale, box: PlotBox) {
        for tick in scale.ticks {
            let x = box.x(scale.fraction(tick))
            guard x.isFinite else { continue }
            line(x1: x, y1: box.top, x2: x, y2: box.bottom, stroke: "#e5e5e5")
            line(x1: x, y1: box.bottom, x2: x, y2: box.bottom + 4, stroke: "#444444")
            text(scale.label(tick), x: x, y: box.bottom + 17, anchor: "middle", attributes: [("class", "x-tick")])
        }
    }

    /// The x label below the axis and the y label rotated along the left edge.
    mutating func axisLabels(x xLabel: String, xLabelY: Double, y yLabel: String, box: PlotBox) {
        if !xLabel.isEmpty {
            text(xLabel, x: box.left + box.width / 2, y: xLabelY, anchor: "middle", size: 12)
        }
        if !yLabel.isEmpty {
            let x = 16.0
            let y = box.top + box.height / 2
            text(yLabel, x: x, y: y, anchor: "middle", size: 12,
                 attributes: [("transform", "rotate(-90 \(Self.number(x)) \(Self.number(y)))")])
        }
    }

    /// "no data" in the middle of the plot area.
    mutating func noData(_ box: PlotBox) {
        text("no data", x: box.left + box.width / 2, y: box.top + box.height / 2 + 5, anchor: "middle", size: 14,
             attributes: [("fill", "#888888"), ("class", "no-data")])
    }

    /// The legend rows starting at `top`; `swatch` draws a line (line charts) or a square (bar charts).
    mutating func legend(_ layout: LegendLayout, top: Double, lineSwatch: Bool) {
        for entry in layout.entries {
            let centerY = top + Double(entry.row) * LegendLayout.rowHeight + LegendLayout.rowHeight / 2
            if lineSwatch {
                line(x1: entry.x, y1: centerY, x2: entry.x + LegendLayout.swatchWidth, y2: centerY,
                     stroke: entry.color, width: 2.5)
            } else {
                rect(x: entry.x + 3, y: centerY - 5, width: 10, height: 10, attributes: [("fill", entry.color)])
            }
            text(entry.name, x: entry.x + LegendLayout.swatchWidth + 6, y: centerY + 4,
                 attributes: [("class", "legend")])
        }
    }

    /// The complete document; `title` also becomes the accessible `<title>` element.
    func render(title: String) -> String {
        var out = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        out += "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(width)\" height=\"\(height)\" "
        out += "viewBox=\"0 0 \(width) \(height)\" font-family=\"Helvetica, Arial, sans-serif\" role=\"img\">\n"
        if !title.isEmpty { out += "<title>\(XMLText.escape(title))</title>\n" }
        out += "<rect x=\"0\" y=\"0\" width=\"\(width)\" height=\"\(height)\" fill=\"#ffffff\"/>\n"
        for element in elements { out += element + "\n" }
        out += "</svg>\n"
        return out
    }
}

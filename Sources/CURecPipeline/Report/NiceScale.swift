import Foundation

/// An axis range rounded outwards to "nice" ticks: steps of 1, 2 or 5 × 10^k.
///
/// Degenerate input is made usable: equal bounds are padded (±10 %, or ±1 around zero),
/// swapped bounds are reordered, and non-finite bounds fall back to 0...1.
public struct NiceScale: Sendable, Equatable {
    /// The first tick; the lower end of the axis.
    public let lower: Double
    /// The last tick; the upper end of the axis.
    public let upper: Double
    /// Distance between neighbouring ticks.
    public let step: Double
    /// Tick positions from `lower` to `upper`, evenly spaced by `step`.
    public let ticks: [Double]

    /// The nice scale covering `min...max` with about `targetTickCount` ticks.
    public init(min: Double, max: Double, targetTickCount: Int = 5) {
        var low = Swift.min(min, max)
        var high = Swift.max(min, max)
        if !low.isFinite || !high.isFinite {
            (low, high) = (0, 1)
        }
        if high == low {
            let pad = low == 0 ? 1 : abs(low) * 0.1
            (low, high) = (low - pad, high + pad)
        }
        let span = high - low
        guard span.isFinite, span > 0 else {
            self = Self.fallback(lower: low, upper: high)
            return
        }
        let intervals = Double(Swift.max(targetTickCount, 2) - 1)
        let (mantissa, exponent) = Self.niceStep(Self.niceCeiling(span) / intervals)
        let step = Self.value(multiple: 1, mantissa: mantissa, exponent: exponent)
        let firstIndex = (low / step + 1e-9).rounded(.down)
        let lastIndex = (high / step - 1e-9).rounded(.up)
        guard step > 0, step.isFinite, abs(firstIndex) < 1e15, abs(lastIndex) < 1e15,
              lastIndex - firstIndex >= 1, lastIndex - firstIndex <= 1000
        else {
            self = Self.fallback(lower: low, upper: high)
            return
        }
        let ticks = (Int(firstIndex)...Int(lastIndex)).map {
            Self.value(multiple: $0, mantissa: mantissa, exponent: exponent)
        }
        self.lower = ticks[0]
        self.upper = ticks[ticks.count - 1]
        self.step = step
        self.ticks = ticks
    }

    private init(lower: Double, upper: Double, step: Double, ticks: [Double]) {
        self.lower = lower
        self.upper = upper
        self.step = step
        self.ticks = ticks
    }

    /// Two ticks at the given bounds; used when no nice step can be represented.
    private static func fallback(lower: Double, upper: Double) -> NiceScale {
        let low = lower.isFinite ? lower : 0
        let high = upper.isFinite && upper > low ? upper : low + 1
        return NiceScale(lower: low, upper: high, step: high / 2 - low / 2, ticks: [low, high])
    }

    /// Where `value` falls between `lower` (0) and `upper` (1); halves avoid overflow on huge ranges.
    public func fraction(_ value: Double) -> Double {
        (value / 2 - lower / 2) / (upper / 2 - lower / 2)
    }

    /// The tick label for `value`: fixed decimals matching the step, or scientific notation
    /// ("2.5e6") for very large or very small magnitudes.
    public func label(_ value: Double) -> String {
        let magnitude = Swift.max(abs(lower), abs(upper))
        if magnitude >= 1e6 || step < 1e-5 {
            return Self.scientific(value, step: step)
        }
        let decimals = Swift.max(0, -Int((log10(step) + 1e-9).rounded(.down)))
        return ReportFormat.fixed(value, decimals: decimals)
    }

    // MARK: - Helpers

    /// The smallest of 1, 2, 5 or 10 × 10^k that is at least `x` (Heckbert's nice number, unrounded).
    private static func niceCeiling(_ x: Double) -> Double {
        let exponent = (log10(x) + 1e-12).rounded(.down)
        let fractionPart = x / pow(10, exponent)
        let nice: Double = fractionPart <= 1 ? 1 : fractionPart <= 2 ? 2 : fractionPart <= 5 ? 5 : 10
        return nice * pow(10, exponent)
    }

    /// The rounded nice step for `raw`, as mantissa (1, 2 or 5) and power of ten.
    private static func niceStep(_ raw: Double) -> (mantissa: Int, exponent: Int) {
        let exponent = Int((log10(raw) + 1e-12).rounded(.down))
        let fractionPart = raw / pow(10, Double(exponent))
        switch fractionPart {
        case ..<1.5: return (1, exponent)
        case ..<3: return (2, exponent)
        case ..<7: return (5, exponent)
        default: return (1, exponent + 1)
        }
    }

    /// multiple × mantissa × 10^exponent, dividing by an exact power of ten for negative
    /// exponents so that ticks such as 0.6 come out as the closest double to 0.6.
    private static func value(multiple: Int, mantissa: Int, exponent: Int) -> Double {
        let integer = Double(multiple * mantissa)
        if exponent >= 0 {
            return exponent <= 22 ? integer * ReportFormat.powerOfTen(exponent) : integer * pow(10, Double(exponent))
        }
        return -exponent <= 22 ? integer / ReportFormat.powerOfTen(-exponent) : integer * pow(10, Double(exponent))
    }

    /// "2.5e6"-style label with as many mantissa decimals as the step needs.
    private static func scientific(_ value: Double, step: Double) -> String {
        if value == 0 { return "0" }
        let exponent = Int((log10(abs(value)) + 1e-9).rounded(.down))
        let mantissa = value / pow(10, Double(exponent))
        let stepDigits = Int((log10(abs(step)) + 1e-9).rounded(.down))
        let decimals = min(max(exponent - stepDigits, 0), 6)
        return ReportFormat.compact(mantissa, maxDecimals: decimals) + "e" + String(exponent)
    }
}

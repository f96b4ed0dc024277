import Foundation

/// Number formatting for reports and charts that never depends on the process locale:
/// the decimal separator is always ".", there is no grouping, and negative zero prints as zero.
public enum ReportFormat {
    /// `value` with exactly `decimals` digits after the point, e.g. `fixed(0.123456, decimals: 4)` is "0.1235".
    ///
    /// Non-finite values print as "NaN", "inf" and "-inf". `decimals` is clamped to 0...15.
    public static func fixed(_ value: Double, decimals: Int) -> String {
        guard value.isFinite else { return value.isNaN ? "NaN" : (value < 0 ? "-inf" : "inf") }
        let places = min(max(decimals, 0), 15)
        let scaled = (abs(value) * powerOfTen(places)).rounded()
        var text: String
        if scaled < 9.0e15 {
            let digits = String(UInt64(scaled))
            if places == 0 {
                text = digits
            } else {
                let padded = String(repeating: "0", count: max(0, places + 1 - digits.count)) + digits
                let split = padded.index(padded.endIndex, offsetBy: -places)
                text = String(padded[..<split]) + "." + String(padded[split...])
            }
        } else {
            // Too large for an integer; the POSIX locale keeps the output locale-independent.
            text = String(format: "%.\(places)f", locale: Locale(identifier: "en_US_POSIX"), abs(value))
        }
        if value < 0 && scaled != 0 { text = "-" + text }
        return text
    }

    /// `value` with at most `maxDecimals` digits after the point and trailing zeros removed
    /// ("12.5", "64", "0.25"). Non-finite values print as in ``fixed(_:decimals:)``.
    public static func compact(_ value: Double, maxDecimals: Int) -> String {
        let text = fixed(value, decimals: maxDecimals)
        guard value.isFinite, text.contains(".") else { return text }
        var trimmed = Substring(text)
        while trimmed.hasSuffix("0") { trimmed = trimmed.dropLast() }
        if trimmed.hasSuffix(".") { trimmed = trimmed.dropLast() }
        return trimmed == "-0" ? "0" : String(trimmed)
    }

    /// A relative change as a signed percentage, e.g. 0.1234 → "+12.3%", -0.04 → "-4.0%";
    /// "n/a" when the change is not finite.
    public static func signedPercent(_ change: Double, decimals: Int = 1) -> String {
        guard change.isFinite else { return "n/a" }
        let text = fixed(change * 100, decimals: decimals)
        let isZero = !text.contains { $0 != "0" && $0 != "." && $0 != "-" }
        if isZero { return text + "%" }
        return (text.hasPrefix("-") ? text : "+" + text) + "%"
    }

    /// 10^exponent for 0 ≤ exponent ≤ 22 (exact in binary floating point).
    static func powerOfTen(_ exponent: Int) -> Double {
        var result = 1.0
        for _ in 0..<max(exponent, 0) { result *= 10 }
        return result
    }
}

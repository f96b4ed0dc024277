/// Finds stop strings in text that grows as tokens are decoded, and says how much of it is
/// safe to show.
///
/// Token-level stop sequences cannot express a stop *string*: the same text has many
/// tokenizations. This type works on the decoded text instead. After each token the caller
/// passes the whole text decoded so far; the matcher reports the first stop string found
/// (and where it starts), and otherwise how long a prefix can be streamed: everything except
/// a tail that might still grow into a stop string.
public struct TextStopMatcher: Sendable, Equatable {
    /// The stop strings, as Unicode scalars (matching is exact, by scalars).
    public let stops: [[Unicode.Scalar]]

    /// A matcher for `stops` (empty strings are ignored).
    public init(stops: [String]) {
        self.stops = stops.map { Array($0.unicodeScalars) }.filter { !$0.isEmpty }
    }

    /// What the text decoded so far allows.
    public enum Verdict: Sendable, Equatable {
        /// No stop string yet: the first `safe` scalars may be shown.
        case running(safe: Int)
        /// A stop string starts at scalar offset `at`: the text ends there.
        case stopped(at: Int)
    }

    /// Checks `text` (all text generated so far).
    public func check(_ text: [Unicode.Scalar]) -> Verdict {
        var earliest: Int? = nil
        for stop in stops where stop.count <= text.count {
            var start = 0
            while start + stop.count <= text.count {
                if text[start] == stop[0] && Array(text[start..<(start + stop.count)]) == stop {
                    if earliest.map({ start < $0 }) ?? true { earliest = start }
                    break
                }
                start += 1
            }
        }
        if let earliest { return .stopped(at: earliest) }
        // Hold back the longest tail that is a proper prefix of some stop string.
        var held = 0
        for stop in stops {
            let longest = min(stop.count - 1, text.count)
            var length = longest
            while length > held {
                if Array(text[(text.count - length)...]) == Array(stop[0..<length]) {
                    held = length
                    break
                }
                length -= 1
            }
        }
        return .running(safe: text.count - held)
    }
}

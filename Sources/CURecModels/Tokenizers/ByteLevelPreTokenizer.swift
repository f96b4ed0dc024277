/// GPT-2's reversible map from bytes to printable Unicode scalars: printable Latin-1 bytes
/// map to themselves, the other 68 bytes (controls, space, …) to U+0100 and up, in byte order.
/// So every byte string becomes a string of visible characters (a space becomes `Ġ`).
public enum ByteLevelAlphabet {
    /// The scalar standing for each byte.
    public static let scalarForByte: [Unicode.Scalar] = {
        var table = [Unicode.Scalar](repeating: " ", count: 256)
        var next: UInt32 = 256
        for byte in 0..<256 {
            if (33...126).contains(byte) || (161...172).contains(byte) || (174...255).contains(byte) {
                table[byte] = Unicode.Scalar(UInt8(byte))
            } else {
                table[byte] = Unicode.Scalar(next).unsafelyUnwrapped
                next += 1
            }
        }
        return table
    }()

    /// The byte each alphabet scalar stands for (scalar value → byte), nil for other scalars.
    public static let byteForScalar: [UInt32: UInt8] = {
        var map: [UInt32: UInt8] = [:]
        for (byte, scalar) in scalarForByte.enumerated() { map[scalar.value] = UInt8(byte) }
        return map
    }()

    /// `bytes` written in the alphabet.
    public static func encode<Bytes: Sequence>(_ bytes: Bytes) -> String where Bytes.Element == UInt8 {
        var view = String.UnicodeScalarView()
        for byte in bytes { view.append(scalarForByte[Int(byte)]) }
        return String(view)
    }

    /// The bytes of an alphabet string, or nil if it holds a scalar outside the alphabet.
    public static func decode(_ text: String) -> [UInt8]? {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(text.unicodeScalars.count)
        for scalar in text.unicodeScalars {
            guard let byte = byteForScalar[scalar.value] else { return nil }
            bytes.append(byte)
        }
        return bytes
    }
}

/// GPT-2's pre-tokenization, written out by hand instead of with a regular expression. It
/// behaves like the pattern
/// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`:
/// English contractions; runs of letters, of numbers or of other symbols, each optionally
/// preceded by one space; and whitespace runs, which leave their last character to a
/// following word so that words keep their leading space.
public struct GPT2PreTokenizer: Sendable {
    /// Creates the pre-tokenizer.
    public init() {}

    /// The pieces of `text`, in order; concatenated they give `text` back.
    public func split(_ text: String) -> [String] {
        let scalars = Array(text.unicodeScalars)
        return pieceRanges(scalars).map { range in
            var view = String.UnicodeScalarView()
            view.append(contentsOf: scalars[range])
            return String(view)
        }
    }

    /// The pieces of `scalars` as index ranges.
    func pieceRanges(_ s: [Unicode.Scalar]) -> [Range<Int>] {
        var ranges: [Range<Int>] = []
        appendPieceRanges(s, in: 0..<s.count, to: &ranges)
        return ranges
    }

    /// Appends the pieces of `s[bounds]`, split as if `s[bounds]` were the whole text.
    func appendPieceRanges(_ s: [Unicode.Scalar], in bounds: Range<Int>, to ranges: inout [Range<Int>]) {
        var i = bounds.lowerBound
        while i < bounds.upperBound {
            let end = pieceEnd(s, from: i, limit: bounds.upperBound)
            ranges.append(i..<end)
            i = end
        }
    }

    /// Whether `scalar` is a number (`\p{N}`: decimal digits, letter numbers such as `Ⅻ`,
    /// other numbers such as `½` or `²`).
    static func isNumber(_ scalar: Unicode.Scalar) -> Bool {
        kind(scalar) == .number
    }

    private enum Kind { case letter, number, space, other }

    private static func kind(_ scalar: Unicode.Scalar) -> Kind {
        if scalar.isASCII {
            switch scalar.value {
            case 0x41...0x5A, 0x61...0x7A: return .letter
            case 0x30...0x39: return .number
            case 0x09...0x0D, 0x20: return .space
            default: return .other
            }
        }
        let properties = scalar.properties
        if properties.isWhitespace { return .space }
        switch properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter:
            return .letter
        case .decimalNumber, .letterNumber, .otherNumber:
            return .number
        default:
            return .other
        }
    }

    /// End of the piece starting at `i` (`i < n`), looking no further than `n`.
    private func pieceEnd(_ s: [Unicode.Scalar], from i: Int, limit n: Int) -> Int {
        // 's 't 're 've 'm 'll 'd
        if s[i] == "'" && i + 1 < n {
            switch s[i + 1] {
            case "s", "t", "m", "d": return i + 2
            case "r" where i + 2 < n && s[i + 2] == "e": return i + 3
            case "v" where i + 2 < n && s[i + 2] == "e": return i + 3
            case "l" where i + 2 < n && s[i + 2] == "l": return i + 3
            default: break
            }
        }
        // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`
        let start = s[i] == " " && i + 1 < n ? i + 1 : i
        let kind = Self.kind(s[start])
        if kind != .space {
            var end = start + 1
            while end < n && Self.kind(s[end]) == kind { end += 1 }
            return end
        }
        // `\s+(?!\S)` leaves the last whitespace to a following non-space; `\s+` otherwise.
        var end = i + 1
        while end < n && Self.kind(s[end]) == .space { end += 1 }
        if end < n && end - i >= 2 { return end - 1 }
        return end
    }
}

/// How a byte-level BPE tokenizer cuts text (between special tokens) into pieces that merges
/// never cross.
public enum BPEPreTokenization: String, Sendable, Equatable, CaseIterable {
    /// GPT-2's split (``GPT2PreTokenizer``).
    case gpt2
    /// Every number scalar (`\p{N}`) becomes a piece of its own, then the text between them
    /// gets GPT-2's split, as if it stood alone. Used by vocabularies trained with single-digit
    /// numbers (SmolLM, StarCoder); a Hugging Face `Digits(individual_digits)` pre-tokenizer
    /// followed by `ByteLevel`, and llama.cpp's pre-tokenizer type `smollm`.
    ///
    /// It differs from ``gpt2`` only around numbers: `"a  1"` is `a`, `␣␣`, `1` here (the spaces
    /// before a digit stay together) but `a`, `␣`, `␣1` with GPT-2's split.
    case gpt2IndividualDigits

    /// The pieces of `text`, in order; concatenated they give `text` back.
    public func split(_ text: String) -> [String] {
        let scalars = Array(text.unicodeScalars)
        return pieceRanges(scalars).map { range in
            var view = String.UnicodeScalarView()
            view.append(contentsOf: scalars[range])
            return String(view)
        }
    }

    /// The pieces of `scalars` as index ranges.
    func pieceRanges(_ s: [Unicode.Scalar]) -> [Range<Int>] {
        let gpt2 = GPT2PreTokenizer()
        switch self {
        case .gpt2:
            return gpt2.pieceRanges(s)
        case .gpt2IndividualDigits:
            var ranges: [Range<Int>] = []
            var start = 0
            for i in s.indices where GPT2PreTokenizer.isNumber(s[i]) {
                gpt2.appendPieceRanges(s, in: start..<i, to: &ranges)
                ranges.append(i..<(i + 1))
                start = i + 1
            }
            gpt2.appendPieceRanges(s, in: start..<s.count, to: &ranges)
            return ranges
        }
    }
}

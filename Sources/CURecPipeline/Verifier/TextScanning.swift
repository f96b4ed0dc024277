import CURecData

/// A word of a text: a maximal run of ASCII letters and digits (bytes above 0x7F, other than
/// typographic punctuation, count as letters). Offsets are UTF-8 byte offsets.
struct Word: Sendable {
    var start: Int
    var end: Int
    /// ASCII-lowercased text.
    var lower: String
    /// The first character is an uppercase ASCII letter.
    var capitalized: Bool
    /// Lowercase ASCII letter first.
    var lowercaseInitial: Bool
    var isDigits: Bool
}

enum TextScanning {
    /// Typographic punctuation starting with E2 80: dashes, quotes, ellipsis.
    static func punctuationLength(_ bytes: [UInt8], at index: Int) -> Int {
        if bytes[index] == 0xE2, index + 2 < bytes.count, bytes[index + 1] == 0x80 { return 3 }
        return 0
    }

    static func isWordByte(_ byte: UInt8) -> Bool {
        (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A) || byte >= 0x80
    }

    static func words(_ bytes: [UInt8]) -> [Word] {
        var result: [Word] = []
        var index = 0
        while index < bytes.count {
            let punct = punctuationLength(bytes, at: index)
            if punct > 0 { index += punct; continue }
            guard isWordByte(bytes[index]) else { index += 1; continue }
            let start = index
            var lower: [UInt8] = []
            var digits = true
            while index < bytes.count, isWordByte(bytes[index]), punctuationLength(bytes, at: index) == 0 {
                let byte = bytes[index]
                if !(byte >= 0x30 && byte <= 0x39) { digits = false }
                lower.append(byte >= 0x41 && byte <= 0x5A ? byte + 32 : byte)
                index += 1
            }
            let first = bytes[start]
            result.append(Word(start: start, end: index, lower: String(decoding: lower, as: UTF8.self),
                               capitalized: first >= 0x41 && first <= 0x5A,
                               lowercaseInitial: first >= 0x61 && first <= 0x7A, isDigits: digits))
        }
        return result
    }

    static func words(_ text: String) -> [Word] { words(Array(text.utf8)) }

    /// Lowercased words joined by single spaces: the key titles are matched by.
    static func key(_ text: String) -> String { words(text).map(\.lower).joined(separator: " ") }
}

/// Item titles of a catalogue, matched by their words (case-insensitive, punctuation
/// ignored), with variants: a trailing parenthetical dropped ("Seven (Se7en)" → "Seven") and a
/// trailing article moved to the front ("Usual Suspects, The" → "The Usual Suspects").
struct TitleIndex: Sendable {
    struct Entry: Sendable {
        var words: [String]
        /// Per word: true uppercase initial, false lowercase initial, nil neither.
        var capitals: [Bool?]
        var items: [Int32]
    }

    private(set) var itemsByKey: [String: [Int32]] = [:]
    private(set) var entriesByFirstWord: [String: [Entry]] = [:]

    static let articles = ["The", "A", "An", "Les", "La", "Le", "L'", "Il", "Das", "Der", "Die", "El", "Los", "Las"]

    init(items: [ItemInfo]) {
        var entries: [String: Entry] = [:]
        for (index, info) in items.enumerated() {
            for variant in Self.variants(of: info.title) {
                let words = TextScanning.words(variant)
                guard !words.isEmpty else { continue }
                let key = words.map(\.lower).joined(separator: " ")
                var entry = entries[key] ?? Entry(words: words.map(\.lower),
                                                  capitals: words.map { $0.capitalized ? true : ($0.lowercaseInitial ? false : nil) },
                                                  items: [])
                if !entry.items.contains(Int32(index)) { entry.items.append(Int32(index)) }
                entries[key] = entry
            }
        }
        for (key, entry) in entries {
            itemsByKey[key] = entry.items
            if let first = entry.words.first { entriesByFirstWord[first, default: []].append(entry) }
        }
        for first in entriesByFirstWord.keys {
            entriesByFirstWord[first]?.sort { $0.words.count != $1.words.count ? $0.words.count > $1.words.count : $0.words.lexicographicallyPrecedes($1.words) }
        }
    }

    static func variants(of title: String) -> [String] {
        var result = [title]
        var base = title.trimmingSpaces
        while base.hasSuffix(")"), let open = base.lastIndex(of: "("), open > base.startIndex {
            base = String(base[..<open]).trimmingSpaces
            if !base.isEmpty { result.append(base) }
        }
        for variant in result {
            for article in articles {
                let suffix = ", " + article
                if variant.hasSuffix(suffix) {
                    let rest = variant.dropLast(suffix.count)
                    result.append(article.hasSuffix("'") ? article + rest : article + " " + rest)
                }
            }
        }
        return result
    }

    /// Items whose title (or a variant) has exactly these words.
    func items(forKey key: String) -> [Int32] { itemsByKey[key] ?? [] }
}

/// Genre words: each genre token of the dataset in its base, plural and common adjective
/// forms ("comedy", "comedies", "comedic"; "sci-fi", "science fiction"; "romantic"...).
struct GenreLexicon: Sendable {
    struct Form: Sendable {
        var words: [String]
        var genre: String
    }

    private(set) var formsByFirstWord: [String: [Form]] = [:]

    init(genres: [String]) {
        var forms: [Form] = []
        for genre in Set(genres) where !genre.isEmpty && genre.lowercased() != "unknown" {
            let base = TextScanning.words(genre.lowercased()).map(\.lower)
            guard let last = base.last else { continue }
            var variants: [[String]] = [base]
            if last.count > 1, last != "s" {
                let plural = last.hasSuffix("y") ? String(last.dropLast()) + "ies" : (last.hasSuffix("s") ? last + "es" : last + "s")
                variants.append(base.dropLast() + [plural])
            }
            for extra in Self.extraForms[genre.lowercased()] ?? [] { variants.append(extra.split(separator: " ").map(String.init)) }
            for words in variants { forms.append(Form(words: words, genre: genre)) }
        }
        for form in forms { if let first = form.words.first { formsByFirstWord[first, default: []].append(form) } }
        for key in formsByFirstWord.keys { formsByFirstWord[key]?.sort { $0.words.count > $1.words.count } }
    }

    static let extraForms: [String: [String]] = [
        "animation": ["animated"],
        "romance": ["romantic"],
        "comedy": ["comedic", "comic"],
        "drama": ["dramatic"],
        "sci-fi": ["science fiction", "scifi"],
        "film-noir": ["noir", "noirs"],
        "children's": ["kids", "children"],
        "documentary": ["documentaries"],
        "horror": ["horrors"],
    ]

    /// The longest genre form starting at `index`, as (genre, word count).
    func match(_ words: [Word], at index: Int, usable: (Int) -> Bool) -> (genre: String, length: Int)? {
        guard let forms = formsByFirstWord[words[index].lower] else { return nil }
        for form in forms where index + form.words.count <= words.count {
            var matches = true
            for (offset, word) in form.words.enumerated() where words[index + offset].lower != word || !usable(index + offset) {
                matches = false
                break
            }
            if matches { return (form.genre, form.words.count) }
        }
        return nil
    }
}

extension String {
    var trimmingSpaces: String {
        var view = Substring(self)
        while view.first == " " { view = view.dropFirst() }
        while view.last == " " { view = view.dropLast() }
        return String(view)
    }
}

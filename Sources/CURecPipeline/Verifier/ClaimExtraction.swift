import CURecData

/// A claim found in reason text. Offsets are UTF-8 byte offsets into the text.
public struct ExtractedClaim: Sendable, Hashable {
    /// What is claimed.
    public enum Kind: Sendable, Hashable {
        /// A title of the catalogue is named (its matching items; duplicates share a title).
        case title(items: [Int32])
        /// A quoted phrase, or what follows "you watched", that names no catalogue title.
        case unknownTitle(String)
        /// The user is said to have watched these items ("because you watched X").
        case watched(items: [Int32])
        /// A release year.
        case year(Int)
        /// A release decade (1990 for "90s", "1990s", "1990's").
        case decade(Int)
        /// A genre token of the dataset.
        case genre(String)
    }

    /// Whom a year, decade or genre claim is about.
    public enum Subject: Sendable, Hashable {
        /// A title named in the same clause (or followed by the year in parentheses).
        case title(items: [Int32])
        /// The item the reason is about ("this film", "it is", "its").
        case target
        /// The user's taste (no title and no reference to the item in the clause).
        case user
        /// Not applicable (title claims).
        case none
    }

    public var kind: Kind
    public var subject: Subject
    /// UTF-8 offsets of the claim's text.
    public var span: Range<Int>
    /// The claim's text.
    public var text: String
    /// Index of the sentence holding the claim.
    public var sentence: Int
}

/// The claims and sentence layout of one text.
struct TextAnalysis {
    var bytes: [UInt8]
    var sentences: [Range<Int>]
    var claims: [ExtractedClaim]

    func substring(_ range: Range<Int>) -> String {
        String(decoding: bytes[max(0, range.lowerBound)..<min(bytes.count, range.upperBound)], as: UTF8.self)
    }
}

/// Finds title, history, year, decade and genre claims and attributes each year, decade
/// and genre to a subject. Rules (documented in docs/pipeline.md):
/// - titles: a quoted phrase ("..." or “...”) is a title claim (unknown if it matches no
///   title); unquoted titles match by words with the title's capitalisation (single-word
///   titles only mid-sentence and at least three letters);
/// - "you watched/liked/enjoyed/loved/saw X" marks X (and titles joined to it by "and" or
///   commas) as watched; a capitalised non-title there is an unknown title;
/// - `(1995)` right after a title is that title's year;
/// - other claims belong to: the item, when preceded by "this"/"its"/"it is"; else the
///   nearest title in the same clause; else the item when the clause refers to it ("this",
///   "it", "its", "the film"); else, for clauses made only of genre words, the previous
///   claim's subject; else the user's taste. Clauses end at , ; : dashes and at the words
///   and, but, or, while, whereas, so, because, since, though, although.
struct ClaimExtractor: Sendable {
    let titles: TitleIndex
    let genres: GenreLexicon

    static let clauseWords: Set<String> = ["and", "but", "or", "while", "whereas", "so", "because", "since", "though", "although"]
    static let watchVerbs: Set<String> = ["watched", "liked", "enjoyed", "loved", "saw", "rated", "chose", "picked"]
    static let fillerWords: Set<String> = ["and", "or", "film", "films", "title", "titles", "movie", "movies", "the", "a", "an", "s", "both", "as", "well", "too", "also", "is", "are", "release", "releases"]
    static let deicticNouns: Set<String> = ["film", "movie", "title", "picture"]

    private struct Mention {
        var words: Range<Int>
        var bytes: Range<Int>
        var items: [Int32]
        var quotedText: String?
    }

    func analyse(_ text: String) -> TextAnalysis {
        let bytes = Array(text.utf8)
        let words = TextScanning.words(bytes)
        var used = [Bool](repeating: false, count: words.count)
        var mentions: [Mention] = []

        // 1. Quoted phrases.
        for (open, close) in quotePairs(bytes) {
            let inner = words.indices.filter { words[$0].start >= open.upperBound && words[$0].end <= close.lowerBound }
            guard let first = inner.first, let last = inner.last else { continue }
            var key = inner.map { words[$0].lower }.joined(separator: " ")
            var items = titles.items(forKey: key)
            if items.isEmpty, inner.count > 1, words[last].isDigits, words[last].lower.count == 4 {
                key = inner.dropLast().map { words[$0].lower }.joined(separator: " ")
                items = titles.items(forKey: key)
            }
            for index in inner { used[index] = true }
            mentions.append(Mention(words: first..<(last + 1), bytes: open.lowerBound..<close.upperBound, items: items,
                                    quotedText: String(decoding: bytes[open.upperBound..<close.lowerBound], as: UTF8.self)))
        }
        // 2. Unquoted titles.
        var index = 0
        while index < words.count {
            defer { index += 1 }
            guard !used[index], let entries = titles.entriesByFirstWord[words[index].lower] else { continue }
            for entry in entries {
                let count = entry.words.count
                guard index + count <= words.count else { continue }
                if count == 1 && (entry.words[0].count < 3 || sentenceInitial(bytes, words[index].start)
                                  || genres.match(words, at: index, usable: { _ in true }) != nil) { continue }
                var ok = entry.capitals.contains(true)
                for offset in 0..<count where ok {
                    let word = words[index + offset]
                    if used[index + offset] || word.lower != entry.words[offset] { ok = false }
                    if let capital = entry.capitals[offset], capital != word.capitalized, capital || word.capitalized { ok = false }
                }
                guard ok else { continue }
                for offset in 0..<count { used[index + offset] = true }
                mentions.append(Mention(words: index..<(index + count), bytes: words[index].start..<words[index + count - 1].end,
                                        items: entry.items, quotedText: nil))
                index += count - 1
                break
            }
        }
        mentions.sort { $0.bytes.lowerBound < $1.bytes.lowerBound }

        // 3. Sentences and clauses (never split inside a title).
        let protected = mentions.map(\.bytes)
        let sentences = sentenceRanges(bytes, protected: protected)
        func sentenceOf(_ offset: Int) -> Int { sentences.firstIndex { $0.contains(offset) } ?? max(0, sentences.count - 1) }
        var clauseOfWord = [Int](repeating: 0, count: words.count)
        var clause = 0
        var previousEnd = 0
        var currentSentence = -1
        for (i, word) in words.enumerated() {
            let sentence = sentenceOf(word.start)
            if sentence != currentSentence { clause += 1; currentSentence = sentence; previousEnd = word.start }
            let between = bytes[previousEnd..<word.start]
            let insideTitle = mentions.contains { $0.words.contains(i) && $0.words.lowerBound < i }
            if !insideTitle {
                if between.contains(where: { $0 == 0x2C || $0 == 0x3B || $0 == 0x3A }) || containsDash(Array(between)) { clause += 1 }
                if !used[i], Self.clauseWords.contains(word.lower) { clause += 1 }
            }
            clauseOfWord[i] = clause
            previousEnd = word.end
        }

        var claims: [ExtractedClaim] = []
        func slice(_ range: Range<Int>) -> String { String(decoding: bytes[range], as: UTF8.self) }

        // 4. Title claims, parenthesised years, watched claims.
        var consumed = used
        for mention in mentions {
            let sentence = sentenceOf(mention.bytes.lowerBound)
            if mention.items.isEmpty {
                claims.append(ExtractedClaim(kind: .unknownTitle(mention.quotedText ?? slice(mention.bytes)), subject: .none,
                                             span: mention.bytes, text: slice(mention.bytes), sentence: sentence))
            } else {
                claims.append(ExtractedClaim(kind: .title(items: mention.items), subject: .none, span: mention.bytes,
                                             text: slice(mention.bytes), sentence: sentence))
            }
            let next = mention.words.upperBound
            if next < words.count, words[next].isDigits, words[next].lower.count == 4, let year = Int(words[next].lower),
               bytes[mention.bytes.upperBound..<words[next].start].allSatisfy({ $0 == 0x20 || $0 == 0x28 }),
               bytes[mention.bytes.upperBound..<words[next].start].contains(0x28) {
                consumed[next] = true
                let end = words[next].end < bytes.count && bytes[words[next].end] == 0x29 ? words[next].end + 1 : words[next].end
                claims.append(ExtractedClaim(kind: .year(year), subject: mention.items.isEmpty ? .none : .title(items: mention.items),
                                             span: mention.bytes.upperBound..<end, text: slice(mention.bytes.upperBound..<end).trimmingSpaces,
                                             sentence: sentence))
            }
        }
        for i in words.indices where i + 1 < words.count && words[i].lower == "you" && Self.watchVerbs.contains(words[i + 1].lower) {
            var position = i + 2
            if position < words.count, words[position].lower == "both" { position += 1 }
            guard position < words.count else { continue }
            let sentence = sentenceOf(words[i].start)
            if var mentionIndex = mentions.firstIndex(where: { $0.words.lowerBound == position }) {
                while true {
                    let mention = mentions[mentionIndex]
                    claims.append(ExtractedClaim(kind: .watched(items: mention.items), subject: .none, span: words[i].start..<mention.bytes.upperBound,
                                                 text: slice(words[i].start..<mention.bytes.upperBound), sentence: sentence))
                    // Titles chained by "and" or commas (skipping a parenthesised year).
                    var after = mention.words.upperBound
                    if after < words.count, consumed[after], words[after].isDigits, !used[after] { after += 1 }
                    if after < words.count, words[after].lower == "and" { after += 1 }
                    guard after < words.count, mentionIndex + 1 < mentions.count, mentions[mentionIndex + 1].words.lowerBound == after,
                          isChainGap(bytes[mention.bytes.upperBound..<mentions[mentionIndex + 1].bytes.lowerBound])
                    else { break }
                    mentionIndex += 1
                }
            } else if words[position].capitalized, !used[position], genres.match(words, at: position, usable: { _ in true }) == nil {
                var end = position
                while end + 1 < words.count, clauseOfWord[end + 1] == clauseOfWord[position], sentenceOf(words[end + 1].start) == sentence,
                      !words[end + 1].isDigits { end += 1 }
                let range = words[position].start..<words[end].end
                claims.append(ExtractedClaim(kind: .unknownTitle(slice(range)), subject: .none, span: range, text: slice(range), sentence: sentence))
                for k in position...end { consumed[k] = true }
            }
        }

        // 5. Genres, years and decades outside titles.
        struct Pending { var kind: ExtractedClaim.Kind; var words: Range<Int> }
        var pending: [Pending] = []
        var w = 0
        while w < words.count {
            if consumed[w] { w += 1; continue }
            if let match = genres.match(words, at: w, usable: { !consumed[$0] }) {
                pending.append(Pending(kind: .genre(match.genre), words: w..<(w + match.length)))
                w += match.length
                continue
            }
            let word = words[w]
            let lower = word.lower
            let apostropheS = w + 1 < words.count && words[w + 1].lower == "s" && isApostrophe(bytes, word.end, words[w + 1].start)
            if word.isDigits, lower.count == 4, let year = Int(lower), (1880...2035).contains(year) {
                if apostropheS && year % 10 == 0 {
                    pending.append(Pending(kind: .decade(year), words: w..<(w + 2)))
                    w += 2
                    continue
                }
                pending.append(Pending(kind: .year(year), words: w..<(w + 1)))
            } else if lower.count == 5, lower.hasSuffix("s"), let year = Int(lower.dropLast()), (1880...2030).contains(year), year % 10 == 0 {
                pending.append(Pending(kind: .decade(year), words: w..<(w + 1)))
            } else if lower.count == 3, lower.hasSuffix("s"), let two = Int(lower.dropLast()), two % 10 == 0 {
                pending.append(Pending(kind: .decade(two >= 20 ? 1900 + two : 2000 + two), words: w..<(w + 1)))
            } else if word.isDigits, lower.count == 2, apostropheS, let two = Int(lower), two % 10 == 0 {
                pending.append(Pending(kind: .decade(two >= 20 ? 1900 + two : 2000 + two), words: w..<(w + 2)))
                w += 2
                continue
            }
            w += 1
        }

        // 6. Attribution.
        let claimWords = Set(pending.flatMap { Array($0.words) })
        var previous: (sentence: Int, clause: Int, subject: ExtractedClaim.Subject)?
        for claim in pending {
            let first = claim.words.lowerBound
            let clauseID = clauseOfWord[first]
            let sentence = sentenceOf(words[first].start)
            var subject: ExtractedClaim.Subject = .user
            // a) determiner right before: "this comedy", "its 1990s", "it is a comedy".
            var back = first - 1
            while back >= 0, claimWords.contains(back) || ["a", "an"].contains(words[back].lower) { back -= 1 }
            let determiner = back >= 0 && clauseOfWord[back] == clauseID
                && (["this", "its"].contains(words[back].lower)
                    || (["is", "s", "was"].contains(words[back].lower) && back >= 1 && words[back - 1].lower == "it"))
            let clauseMentions = mentions.filter { clauseOfWord[$0.words.lowerBound] == clauseID && !$0.items.isEmpty }
            let clauseRange = words.indices.filter { clauseOfWord[$0] == clauseID }
            let refersToItem = clauseRange.contains { i in
                let lower = words[i].lower
                if used[i] { return false }
                if lower == "this" {
                    let next = i + 1 < words.count ? words[i + 1].lower : ""
                    return !["user", "viewer", "person", "profile"].contains(next)
                }
                if lower == "it" || lower == "its" { return true }
                return lower == "the" && i + 1 < words.count && Self.deicticNouns.contains(words[i + 1].lower)
            }
            let onlyClaims = clauseRange.allSatisfy { claimWords.contains($0) || Self.fillerWords.contains(words[$0].lower) }
            if determiner {
                subject = .target
            } else if !clauseMentions.isEmpty {
                let nearest = clauseMentions.min { abs($0.words.lowerBound - first) < abs($1.words.lowerBound - first) }
                subject = .title(items: nearest?.items ?? [])
            } else if refersToItem {
                subject = .target
            } else if onlyClaims, let previous, previous.sentence == sentence, previous.clause < clauseID {
                subject = previous.subject
            }
            previous = (sentence, clauseID, subject)
            let range = words[claim.words.lowerBound].start..<words[claim.words.upperBound - 1].end
            claims.append(ExtractedClaim(kind: claim.kind, subject: subject, span: range, text: slice(range), sentence: sentence))
        }
        claims.sort { $0.span.lowerBound != $1.span.lowerBound ? $0.span.lowerBound < $1.span.lowerBound : $0.span.count > $1.span.count }
        return TextAnalysis(bytes: bytes, sentences: sentences, claims: claims)
    }

    /// Pairs of quote marks: ASCII `"` pairs in order, and “ ” pairs.
    private func quotePairs(_ bytes: [UInt8]) -> [(Range<Int>, Range<Int>)] {
        var pairs: [(Range<Int>, Range<Int>)] = []
        var open: Range<Int>?
        var index = 0
        while index < bytes.count {
            var mark: (range: Range<Int>, opening: Bool?)?
            if bytes[index] == 0x22 { mark = (index..<(index + 1), nil) }
            else if bytes[index] == 0xE2, index + 2 < bytes.count, bytes[index + 1] == 0x80, bytes[index + 2] == 0x9C { mark = (index..<(index + 3), true) }
            else if bytes[index] == 0xE2, index + 2 < bytes.count, bytes[index + 1] == 0x80, bytes[index + 2] == 0x9D { mark = (index..<(index + 3), false) }
            if let mark {
                if let start = open, mark.opening != true {
                    pairs.append((start, mark.range))
                    open = nil
                } else if mark.opening != false {
                    open = mark.range
                }
                index = mark.range.upperBound
            } else {
                index += 1
            }
        }
        return pairs
    }

    /// Bytes allowed between chained titles: spaces, commas, parentheses, digits, "and".
    private func isChainGap(_ gap: ArraySlice<UInt8>) -> Bool {
        for byte in gap {
            let allowed: Bool = byte == 0x20 || byte == 0x2C || byte == 0x28 || byte == 0x29
                || (byte >= 0x30 && byte <= 0x39) || (byte >= 0x61 && byte <= 0x7A)
            if !allowed { return false }
        }
        return true
    }

    private func sentenceInitial(_ bytes: [UInt8], _ start: Int) -> Bool {
        var index = start - 1
        while index >= 0, bytes[index] == 0x20 || bytes[index] == 0x0A || bytes[index] == 0x22 { index -= 1 }
        return index < 0 || [0x2E, 0x21, 0x3F].contains(bytes[index])
    }

    private func containsDash(_ bytes: [UInt8]) -> Bool {
        guard bytes.count >= 3 else { return false }
        for i in 0..<(bytes.count - 2) where bytes[i] == 0xE2 && bytes[i + 1] == 0x80 && (bytes[i + 2] == 0x93 || bytes[i + 2] == 0x94) {
            return true
        }
        return false
    }

    private func isApostrophe(_ bytes: [UInt8], _ from: Int, _ to: Int) -> Bool {
        let between = Array(bytes[from..<to])
        return between == [0x27] || between == [0xE2, 0x80, 0x99]
    }

    /// Sentence ranges (trimmed): ends at . ! ? or newlines outside `protected` ranges, when
    /// followed by whitespace, a quote or the end.
    func sentenceRanges(_ bytes: [UInt8], protected: [Range<Int>]) -> [Range<Int>] {
        var result: [Range<Int>] = []
        var start = 0
        func push(_ end: Int) {
            var a = start, b = end
            while a < b, bytes[a] == 0x20 || bytes[a] == 0x0A || bytes[a] == 0x09 || bytes[a] == 0x0D { a += 1 }
            while b > a, bytes[b - 1] == 0x20 || bytes[b - 1] == 0x0A || bytes[b - 1] == 0x09 || bytes[b - 1] == 0x0D { b -= 1 }
            if a < b { result.append(a..<b) }
        }
        var index = 0
        while index < bytes.count {
            let byte = bytes[index]
            if byte == 0x0A {
                push(index)
                start = index + 1
            } else if byte == 0x2E || byte == 0x21 || byte == 0x3F, !protected.contains(where: { $0.contains(index) }) {
                var end = index + 1
                while end < bytes.count, [0x2E, 0x21, 0x3F, 0x22, 0x29].contains(bytes[end]) { end += 1 }
                if end >= bytes.count || bytes[end] == 0x20 || bytes[end] == 0x0A {
                    push(end)
                    start = end
                    index = end
                    continue
                }
            }
            index += 1
        }
        push(bytes.count)
        return result
    }
}

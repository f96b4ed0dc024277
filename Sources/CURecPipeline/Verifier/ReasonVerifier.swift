import CURecData

/// What a reason is about: the user (nil for item-only text), the item (nil for user-only
/// text) and the user's cut-off time (interactions after it are the user's future; nil: no
/// cut-off, every interaction is history).
public struct ReasonContext: Sendable, Hashable {
    public var user: Int32?
    public var item: Int32?
    public var cutoff: Int64?

    public init(user: Int32?, item: Int32?, cutoff: Int64?) {
        self.user = user
        self.item = item
        self.cutoff = cutoff
    }
}

/// The checks a verdict reports.
public enum ReasonCheck: String, Sendable, Hashable, CaseIterable, Codable {
    /// A named or quoted title exists in the catalogue.
    case titleExists = "title-exists"
    /// A named title is not one the user consumed only after the cut-off (a claim from the future).
    case notFromFuture = "not-from-future"
    /// "You watched X": X is in the user's history before the cut-off.
    case watchedBeforeCutoff = "watched-before-cutoff"
    /// A year attributed to an item is its release year.
    case itemYear = "item-year"
    /// A decade attributed to an item contains its release year.
    case itemDecade = "item-decade"
    /// A genre attributed to an item is one of its genres.
    case itemGenre = "item-genre"
    /// A genre, decade or year stated as the user's taste occurs in their history before the cut-off.
    case tasteSupported = "taste-supported"
    /// The text is not empty.
    case notEmpty = "not-empty"
    /// The text is within the character and sentence limits.
    case length = "length"
    /// No sentence repeats an earlier one.
    case noRepetition = "no-repetition"
    /// No leftover format markers ("###", "<|endoftext|>", "Reason:", numbered steps...).
    case noMarkers = "no-markers"
}

/// One check's outcome.
public struct CheckResult: Sendable, Hashable {
    public var check: ReasonCheck
    public var passed: Bool
    /// UTF-8 offsets of the text checked (nil for whole-text checks).
    public var span: Range<Int>?
    /// The text checked (the offending span for failures).
    public var text: String
    /// Why it failed or passed, in words.
    public var detail: String
    /// Index of the sentence the span lies in (nil for whole-text checks).
    public var sentence: Int?
}

/// The verdict on one text.
public struct ReasonVerdict: Sendable, Hashable {
    /// Failed checks, in text order.
    public var failures: [CheckResult]
    /// Passed checks, in text order.
    public var passed: [CheckResult]
    /// Sum of the failed checks' weights (0: clean).
    public var penalty: Double
    /// The claims found.
    public var claims: [ExtractedClaim]
    /// True when no check failed.
    public var isClean: Bool { failures.isEmpty }
}

/// A text with the sentences whose claims fail removed.
public struct FilteredReason: Sendable, Hashable {
    /// The kept sentences joined by single spaces.
    public var text: String
    /// Kept sentences in order.
    public var kept: [String]
    /// Removed sentences with the failures that removed them.
    public var removed: [(sentence: String, failures: [CheckResult])]

    public static func == (a: FilteredReason, b: FilteredReason) -> Bool {
        a.text == b.text && a.kept == b.kept && a.removed.map(\.sentence) == b.removed.map(\.sentence)
            && a.removed.map(\.failures) == b.removed.map(\.failures)
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(text)
        hasher.combine(kept)
        hasher.combine(removed.map(\.sentence))
    }
}

/// Settings of the verifier.
public struct VerifierOptions: Sendable, Hashable {
    /// Longest acceptable text in characters.
    public var maxCharacters = 400
    /// Most sentences acceptable.
    public var maxSentences = 3
    /// Run the whole-text format checks (empty, length, repetition, markers).
    public var checkFormat = true
    /// Penalty per failed check.
    public var weights: [ReasonCheck: Double] = [
        .titleExists: 1, .notFromFuture: 1, .watchedBeforeCutoff: 0.75, .itemYear: 0.5, .itemDecade: 0.5,
        .itemGenre: 0.5, .tasteSupported: 0.25, .notEmpty: 1, .length: 0.25, .noRepetition: 0.5, .noMarkers: 0.5,
    ]
    /// Markers that must not survive in a reason.
    public var markers = ["###", "<|", "|>", "</s>", "<s>", "[INST]", "Instruction:", "Reasoning:", "Reason:", "Response:"]

    public init() {}
}

/// Checks the claims of generated reason text against the dataset and the user's cut-off:
/// titles exist, years/decades/genres attributed to an item are the item's, titles the user
/// consumed only after the cut-off are not mentioned, "you watched X" holds before the
/// cut-off, taste claims occur in the history; plus format checks. See `ClaimExtractor` for
/// how claims are found and attributed.
public struct ReasonVerifier: Sendable {
    /// The dataset claims are checked against (all interactions: the future is known to the verifier).
    public let dataset: RecDataset
    public let options: VerifierOptions
    let extractor: ClaimExtractor
    /// Per user: item → earliest consumption time.
    private let firstTimeByUser: [[Int32: Int64]]
    private let genreSets: [Set<String>]

    /// Prepares a verifier for `dataset` (indexes titles, genres and per-user timelines).
    public init(dataset: RecDataset, options: VerifierOptions = VerifierOptions()) {
        self.dataset = dataset
        self.options = options
        extractor = ClaimExtractor(titles: TitleIndex(items: dataset.items),
                                   genres: GenreLexicon(genres: dataset.items.flatMap(\.genres)))
        var times = [[Int32: Int64]](repeating: [:], count: dataset.userCount)
        for interaction in dataset.interactions where Int(interaction.user) < dataset.userCount {
            let user = Int(interaction.user)
            if let known = times[user][interaction.item], known <= interaction.timestamp { continue }
            times[user][interaction.item] = interaction.timestamp
        }
        firstTimeByUser = times
        genreSets = dataset.items.map { Set($0.genres.filter { $0.lowercased() != "unknown" }) }
    }

    /// The claims of `text`, with subjects.
    public func claims(in text: String) -> [ExtractedClaim] { extractor.analyse(text).claims }

    /// Sentences of `text` as the verifier splits them.
    public func sentences(of text: String) -> [String] {
        let analysis = extractor.analyse(text)
        return analysis.sentences.map { analysis.substring($0) }
    }

    /// Checks `text` about `context`.
    public func verify(_ text: String, context: ReasonContext) -> ReasonVerdict {
        let analysis = extractor.analyse(text)
        var results = claimResults(analysis, context: context)
        if options.checkFormat { results += formatResults(text, analysis) }
        results.sort { ($0.span?.lowerBound ?? Int.max) < ($1.span?.lowerBound ?? Int.max) }
        let failures = results.filter { !$0.passed }
        let penalty = failures.reduce(0) { $0 + (options.weights[$1.check] ?? 0) }
        return ReasonVerdict(failures: failures, passed: results.filter(\.passed), penalty: penalty, claims: analysis.claims)
    }

    /// Removes every sentence holding a failed claim, a leftover marker, or repeating an
    /// earlier sentence; the rest are kept in order.
    public func filterSentences(_ text: String, context: ReasonContext) -> FilteredReason {
        let analysis = extractor.analyse(text)
        var bySentence = [[CheckResult]](repeating: [], count: analysis.sentences.count)
        for result in claimResults(analysis, context: context) + sentenceFormatResults(analysis) where !result.passed {
            if let sentence = result.sentence, sentence < bySentence.count { bySentence[sentence].append(result) }
        }
        var kept: [String] = []
        var removed: [(sentence: String, failures: [CheckResult])] = []
        for (index, range) in analysis.sentences.enumerated() {
            let sentence = analysis.substring(range)
            if bySentence[index].isEmpty { kept.append(sentence) } else { removed.append((sentence, bySentence[index])) }
        }
        return FilteredReason(text: kept.joined(separator: " "), kept: kept, removed: removed)
    }

    // MARK: - Claim checks

    private enum HistoryStatus { case before, after, never }

    private func status(_ items: [Int32], context: ReasonContext) -> HistoryStatus? {
        guard let user = context.user, Int(user) < firstTimeByUser.count else { return nil }
        let times = firstTimeByUser[Int(user)]
        var after = false
        for item in items {
            guard let time = times[item] else { continue }
            if context.cutoff.map({ time <= $0 }) ?? true { return .before }
            after = true
        }
        return after ? .after : .never
    }

    private func history(of context: ReasonContext) -> [Int32]? {
        guard let user = context.user, Int(user) < firstTimeByUser.count else { return nil }
        return firstTimeByUser[Int(user)].compactMap { item, time in context.cutoff.map { time <= $0 } ?? true ? item : nil }
    }

    private func claimResults(_ analysis: TextAnalysis, context: ReasonContext) -> [CheckResult] {
        var results: [CheckResult] = []
        var userHistory: [Int32]?
        func result(_ check: ReasonCheck, _ passed: Bool, _ claim: ExtractedClaim, _ detail: String) {
            results.append(CheckResult(check: check, passed: passed, span: claim.span, text: claim.text, detail: detail, sentence: claim.sentence))
        }
        for claim in analysis.claims {
            switch claim.kind {
            case .unknownTitle(let name):
                result(.titleExists, false, claim, "no title in the catalogue is called '\(name)'")
            case .title(let items):
                result(.titleExists, true, claim, "title of item \(items.map(String.init).joined(separator: ", "))")
                if let item = context.item, items.contains(item) { continue }
                // "You watched X" reports X's timing itself.
                let watchedClaim = analysis.claims.contains {
                    if case .watched = $0.kind { return $0.span.upperBound == claim.span.upperBound }
                    return false
                }
                if !watchedClaim, status(items, context: context) == .after {
                    result(.notFromFuture, false, claim, "the user consumed it only after the cut-off time")
                }
            case .watched(let items):
                guard !items.isEmpty else { continue }
                switch status(items, context: context) {
                case .before: result(.watchedBeforeCutoff, true, claim, "in the user's history before the cut-off")
                case .after: result(.watchedBeforeCutoff, false, claim, "the user consumed it only after the cut-off time")
                case .never: result(.watchedBeforeCutoff, false, claim, "the user never consumed it")
                case nil: break
                }
            case .year(let year):
                check(claim, context: context, history: &userHistory, check: .itemYear, describe: "\(year)") { item in
                    dataset.items[Int(item)].year.map { $0 == year }
                }
            case .decade(let decade):
                check(claim, context: context, history: &userHistory, check: .itemDecade, describe: "the \(decade)s") { item in
                    dataset.items[Int(item)].decade.map { $0 == decade }
                }
            case .genre(let genre):
                check(claim, context: context, history: &userHistory, check: .itemGenre, describe: genre) { item in
                    genreSets[Int(item)].isEmpty ? nil : genreSets[Int(item)].contains(genre)
                }
            }
        }
        return results

        /// `holds(item)`: nil when the item lacks the metadata (unchecked).
        func check(_ claim: ExtractedClaim, context: ReasonContext, history: inout [Int32]?, check: ReasonCheck,
                   describe: String, holds: (Int32) -> Bool?) {
            var subject = claim.subject
            if subject == .target && context.item == nil { subject = .user }
            switch subject {
            case .title(let items):
                let outcomes = items.compactMap(holds)
                guard !outcomes.isEmpty else { return }
                let ok = outcomes.contains(true)
                result(check, ok, claim, ok ? "\(describe) holds for the named title" : "\(describe) is wrong for the named title")
            case .target:
                guard let item = context.item, let ok = holds(item) else { return }
                result(check, ok, claim, ok ? "\(describe) holds for the item" : "\(describe) is wrong for the item")
            case .user:
                if history == nil { history = self.history(of: context) }
                guard let items = history else { return }
                let ok = items.contains { holds($0) == true }
                result(.tasteSupported, ok, claim, ok ? "\(describe) occurs in the user's history" : "\(describe) never occurs in the user's history before the cut-off")
            default:
                return
            }
        }
    }

    // MARK: - Format checks

    private func formatResults(_ text: String, _ analysis: TextAnalysis) -> [CheckResult] {
        var results: [CheckResult] = []
        let trimmed = String(text.drop { $0.isWhitespace }.reversed().drop { $0.isWhitespace }.reversed())
        results.append(CheckResult(check: .notEmpty, passed: !trimmed.isEmpty, span: nil, text: "",
                                   detail: trimmed.isEmpty ? "the text is empty" : "the text is not empty", sentence: nil))
        let characters = trimmed.count
        let tooLong = characters > options.maxCharacters || analysis.sentences.count > options.maxSentences
        results.append(CheckResult(check: .length, passed: !tooLong, span: nil, text: "",
                                   detail: "\(characters) characters (max \(options.maxCharacters)), \(analysis.sentences.count) sentences (max \(options.maxSentences))",
                                   sentence: nil))
        let sentenceResults = sentenceFormatResults(analysis)
        results += sentenceResults
        if !sentenceResults.contains(where: { $0.check == .noRepetition }) {
            results.append(CheckResult(check: .noRepetition, passed: true, span: nil, text: "", detail: "no repeated sentence", sentence: nil))
        }
        if !sentenceResults.contains(where: { $0.check == .noMarkers }) {
            results.append(CheckResult(check: .noMarkers, passed: true, span: nil, text: "", detail: "no leftover markers", sentence: nil))
        }
        return results
    }

    /// Repeated sentences and leftover markers, per sentence (failures only).
    private func sentenceFormatResults(_ analysis: TextAnalysis) -> [CheckResult] {
        var results: [CheckResult] = []
        var seen: Set<String> = []
        for (index, range) in analysis.sentences.enumerated() {
            let sentence = analysis.substring(range)
            let key = TextScanning.key(sentence)
            if !key.isEmpty, !seen.insert(key).inserted {
                results.append(CheckResult(check: .noRepetition, passed: false, span: range, text: sentence,
                                           detail: "repeats an earlier sentence", sentence: index))
            }
            var markers = options.markers.filter { sentence.contains($0) }
            // A numbered step ("2. ...") splits into a sentence "2." of its own.
            if let dot = sentence.firstIndex(of: "."), dot > sentence.startIndex,
               sentence[sentence.startIndex..<dot].allSatisfy({ $0.isASCII && $0.isNumber }),
               sentence.index(after: dot) == sentence.endIndex || sentence[sentence.index(after: dot)] == " " {
                markers.append("numbered step")
            }
            for marker in markers {
                results.append(CheckResult(check: .noMarkers, passed: false, span: range, text: sentence,
                                           detail: "leftover marker '\(marker)'", sentence: index))
            }
        }
        return results
    }
}

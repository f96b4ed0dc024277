import CURecData

/// Why a corpus cannot be built.
public enum CorpusError: Error, Sendable, CustomStringConvertible {
    /// The split was not made from this dataset (user counts differ).
    case splitMismatch(datasetUsers: Int, splitUsers: Int)
    /// A configuration value is out of range.
    case invalidConfiguration(String)

    public var description: String {
        switch self {
        case .splitMismatch(let datasetUsers, let splitUsers):
            return "the split has \(splitUsers) users but the dataset has \(datasetUsers): make the split from this dataset"
        case .invalidConfiguration(let detail): return "invalid corpus configuration: \(detail)"
        }
    }
}

/// Settings of stage 1 (corpus building).
public struct CorpusConfiguration: Sendable, Hashable {
    /// Seed of every wording choice and sampled position; same seed, same corpus.
    public var seed: UInt64 = 1
    /// Task types to build.
    public var tasks: Set<CorpusExample.Task> = Set(CorpusExample.Task.allCases)
    /// Most recent history titles listed in a prompt.
    public var historyShown: Int = 20
    /// Pair and next-item examples need at least this many earlier history items.
    public var minimumHistory: Int = 3
    /// Pair examples per user (the first targets the last training item, the rest are sampled).
    public var pairsPerUser: Int = 1
    /// Next-item examples per user (the first targets the last training item).
    public var nextItemsPerUser: Int = 1
    /// Items with fewer training users get no item-audience example.
    public var minimumAudience: Int = 5
    /// Co-consumed titles named in an item-audience example.
    public var neighboursShown: Int = 3
    /// A user's genre or decade share must be at least this multiple of the baseline to be an affinity.
    public var affinityLift: Double = 1.25
    /// An affinity or audience skew needs at least this many supporting items or users.
    public var minimumSupport: Int = 2
    /// Restrict user-based examples to these users (nil: all).
    public var users: [Int32]? = nil
    /// Restrict item-audience examples to these items (nil: all).
    public var items: [Int32]? = nil

    public init() {}
}

/// Progress of corpus building.
public struct CorpusProgress: Sendable, Hashable {
    /// The task being built.
    public var task: CorpusExample.Task
    /// Users or items done for this task.
    public var completed: Int
    /// Users or items for this task.
    public var total: Int
    /// Examples built so far across tasks.
    public var examples: Int
}

/// Stage 1: builds instruction + chain-of-thought examples from training interactions.
///
/// Targets come from `CollaborativeStatistics` (training data only). Every fact a step or
/// reason states is recorded in `CorpusExample.facts` with its numbers. Wording is chosen
/// among several templates per fact by a generator seeded from the configuration seed, the
/// task and the user/item, so the corpus is deterministic and independent of build order.
public struct CorpusBuilder: Sendable {
    /// The statistics the examples are built from.
    public let statistics: CollaborativeStatistics
    /// The configuration.
    public let configuration: CorpusConfiguration

    /// Prepares a builder: computes the training statistics of `split`.
    public init(dataset: RecDataset, split: LeaveOneOutSplit, configuration: CorpusConfiguration = CorpusConfiguration()) throws(CorpusError) {
        guard split.trainItemsByUser.count == dataset.userCount else {
            throw .splitMismatch(datasetUsers: dataset.userCount, splitUsers: split.trainItemsByUser.count)
        }
        guard configuration.minimumHistory >= 1 else { throw .invalidConfiguration("minimumHistory must be at least 1") }
        guard configuration.historyShown >= 1 else { throw .invalidConfiguration("historyShown must be at least 1") }
        guard configuration.affinityLift >= 1 else { throw .invalidConfiguration("affinityLift must be at least 1") }
        guard configuration.minimumSupport >= 1 else { throw .invalidConfiguration("minimumSupport must be at least 1") }
        self.configuration = configuration
        self.statistics = CollaborativeStatistics(dataset: dataset, split: split,
                                                  neighbourCount: max(configuration.neighboursShown, 1))
    }

    private var dataset: RecDataset { statistics.dataset }

    /// Builds every configured task's examples: user preference, item audience, pair, next
    /// item, in that order (users and items ascending).
    public func build(progress: (CorpusProgress) -> Void = { _ in }) -> [CorpusExample] {
        var examples: [CorpusExample] = []
        let users = (configuration.users ?? (0..<dataset.userCount).map { Int32($0) })
            .filter { $0 >= 0 && Int($0) < dataset.userCount }
        let items = (configuration.items ?? (0..<dataset.itemCount).map { Int32($0) })
            .filter { $0 >= 0 && Int($0) < dataset.itemCount }
        let step = 64
        for task in CorpusExample.Task.allCases where configuration.tasks.contains(task) {
            let subjects = task == .itemAudience ? items : users
            progress(CorpusProgress(task: task, completed: 0, total: subjects.count, examples: examples.count))
            for (done, subject) in subjects.enumerated() {
                switch task {
                case .userPreference: if let example = userPreference(user: subject) { examples.append(example) }
                case .itemAudience: if let example = itemAudience(item: subject) { examples.append(example) }
                case .pair: examples.append(contentsOf: pairs(user: subject))
                case .nextItem: examples.append(contentsOf: nextItems(user: subject))
                }
                if (done + 1) % step == 0 || done + 1 == subjects.count {
                    progress(CorpusProgress(task: task, completed: done + 1, total: subjects.count, examples: examples.count))
                }
            }
        }
        return examples
    }

    // MARK: - Shared pieces

    private func seed(_ task: CorpusExample.Task, _ subject: Int32, _ extra: Int = 0) -> UInt64 {
        let taskCode: UInt64
        switch task {
        case .userPreference: taskCode = 1
        case .itemAudience: taskCode = 2
        case .pair: taskCode = 3
        case .nextItem: taskCode = 4
        }
        return mixSeed(configuration.seed, taskCode, UInt64(UInt32(bitPattern: subject)), UInt64(extra))
    }

    func profileLine(_ user: Int32) -> String {
        let info = dataset.users[Int(user)]
        var parts: [String] = []
        parts.append(AgeBand(age: info.age).map { "age \($0.label)" } ?? "age unknown")
        parts.append(Phrasing.genderAdjective(info.gender) ?? "gender unknown")
        parts.append(info.occupation.isEmpty ? "occupation unknown" : "occupation \(info.occupation)")
        return "User: " + parts.joined(separator: ", ") + "."
    }

    func historyLines(_ history: ArraySlice<Int32>) -> String {
        let shown = history.suffix(configuration.historyShown)
        let titles = shown.map { Phrasing.title(dataset.items[Int($0)]) }.joined(separator: "; ")
        return "History (oldest first, last \(shown.count) of \(history.count)): \(titles)."
    }

    func itemLine(_ item: Int32) -> String {
        let info = dataset.items[Int(item)]
        let genres = statistics.itemGenres[Int(item)].map { statistics.genres[$0] }
        return "Item: \(Phrasing.title(info)); genres: \(genres.isEmpty ? "unknown" : genres.joined(separator: ", "))."
    }

    private func profileStep(_ user: Int32, _ chooser: inout TemplateChooser) -> (String, CorpusFact) {
        let info = dataset.users[Int(user)]
        let band = AgeBand(age: info.age)
        let gender = Phrasing.genderAdjective(info.gender)
        let occupation = Phrasing.occupationSingular(info.occupation)
        let bandText = band.map { "the \($0.label) age band" } ?? "an unknown age band"
        let text = chooser.choose([
            "The user is \(gender.map { "\($0), " } ?? "")\(occupation), in \(bandText).",
            "Profile: \(band.map { "aged \($0.label)" } ?? "age unknown"), \(gender ?? "gender unknown"), \(occupation).",
            "Profile summary: \(gender ?? "gender unknown"), \(band.map { "age \($0.label)" } ?? "age unknown"), occupation \(info.occupation.isEmpty ? "unknown" : info.occupation.lowercased()).",
        ]) ?? ""
        return (text, .profile(user: user, ageBand: band, gender: info.gender, occupation: info.occupation))
    }

    private struct Affinity {
        var genre: Int
        var count: Int
        var total: Int
        var baseline: Double
        var share: Double { Double(count) / Double(max(total, 1)) }
        var lift: Double { baseline > 0 ? share / baseline : 0 }
    }

    /// Genres well above the baseline, strongest lift first.
    private func genreAffinities(_ taste: Taste) -> [Affinity] {
        var result: [Affinity] = []
        for (genre, count) in taste.genreCounts.enumerated() where count >= configuration.minimumSupport {
            let affinity = Affinity(genre: genre, count: count, total: taste.total, baseline: statistics.genreBaseline[genre])
            if affinity.lift >= configuration.affinityLift { result.append(affinity) }
        }
        return result.sorted { $0.lift != $1.lift ? $0.lift > $1.lift : $0.genre < $1.genre }
    }

    /// A common genre the user rarely watches (at least once, at most half the baseline share).
    private func genreRarity(_ taste: Taste) -> Affinity? {
        var best: Affinity?
        for (genre, count) in taste.genreCounts.enumerated() where count >= 1 && statistics.genreBaseline[genre] >= 0.08 {
            let affinity = Affinity(genre: genre, count: count, total: taste.total, baseline: statistics.genreBaseline[genre])
            if affinity.lift <= 0.5, best.map({ affinity.lift < $0.lift }) ?? true { best = affinity }
        }
        return best
    }

    private struct DecadeAffinity {
        var decade: Int
        var count: Int
        var total: Int
        var baseline: Double
        var share: Double { Double(count) / Double(max(total, 1)) }
        var lift: Double { baseline > 0 ? share / baseline : 0 }
    }

    /// The decade with the highest lift among supported ones.
    private func decadeAffinity(_ taste: Taste) -> DecadeAffinity? {
        var best: DecadeAffinity?
        for (decade, count) in taste.decadeCounts.sorted(by: { $0.key < $1.key }) where count >= configuration.minimumSupport {
            let candidate = DecadeAffinity(decade: decade, count: count, total: taste.datedTotal,
                                           baseline: statistics.decadeBaseline[decade] ?? 0)
            guard candidate.lift >= configuration.affinityLift else { continue }
            if best.map({ candidate.lift > $0.lift }) ?? true { best = candidate }
        }
        return best
    }

    private func genreStep(_ a: Affinity, _ chooser: inout TemplateChooser) -> String {
        let name = statistics.genres[a.genre]
        let plural = Phrasing.genreForms(name).plural
        let noun = Phrasing.genreNoun(name)
        let share = Phrasing.percent(a.share), base = Phrasing.percent(a.baseline), lift = Phrasing.lift(a.lift)
        return chooser.choose([
            "\(noun.capitalizedFirst) makes up \(share) of their history against \(base) of all views (\(lift)).",
            "\(a.count) of their \(a.total) titles are \(plural): \(share), versus a baseline of \(base).",
            "They over-index on \(plural), \(lift) the population share (\(share) against \(base)).",
            "Compared with the average viewer (\(base)), \(noun) is strongly represented for them at \(share).",
        ]) ?? ""
    }

    private func rarityStep(_ a: Affinity, _ chooser: inout TemplateChooser) -> String {
        let name = statistics.genres[a.genre]
        let plural = Phrasing.genreForms(name).plural
        let share = Phrasing.percent(a.share), base = Phrasing.percent(a.baseline)
        return chooser.choose([
            "They seldom pick \(plural): \(share) of their history against \(base) of all views.",
            "\(Phrasing.genreNoun(name).capitalizedFirst) is rare for them (\(a.count) of \(a.total) titles, \(share) versus \(base)).",
        ]) ?? ""
    }

    private func decadeStep(_ d: DecadeAffinity, _ chooser: inout TemplateChooser) -> String {
        let label = Phrasing.decadeLabel(d.decade)
        let share = Phrasing.percent(d.share), base = Phrasing.percent(d.baseline), lift = Phrasing.lift(d.lift)
        return chooser.choose([
            "Films from the \(label) account for \(share) of their dated titles against \(base) overall.",
            "Their viewing leans to the \(label): \(share) of dated titles, \(lift) the usual share.",
            "The \(label) are over-represented for them (\(d.count) of \(d.total) dated titles, baseline \(base)).",
        ]) ?? ""
    }

    /// A step describing an item's year and genres, attributed with "it"/"the film".
    private func itemStep(_ item: Int32, _ chooser: inout TemplateChooser) -> String {
        let info = dataset.items[Int(item)]
        let genres = statistics.itemGenres[Int(item)].map { Phrasing.genreNoun(statistics.genres[$0]) }
        let list = Phrasing.list(genres)
        if genres.isEmpty {
            guard let year = info.year else { return "Its genres are not recorded." }
            return chooser.choose(["It is a \(year) release.", "The film came out in \(year)."]) ?? ""
        }
        if let year = info.year {
            return chooser.choose([
                "It is a \(year) release listed under \(list).",
                "The film came out in \(year) and its genres are \(list).",
                "It is a \(year) title filed under \(list).",
            ]) ?? ""
        }
        return chooser.choose(["Its genres are \(list).", "It is filed under \(list)."]) ?? ""
    }

    private func itemFacts(_ item: Int32) -> [CorpusFact] {
        var facts: [CorpusFact] = []
        let genres = statistics.itemGenres[Int(item)].map { statistics.genres[$0] }
        if !genres.isEmpty { facts.append(.itemGenres(item: item, genres: genres)) }
        if let year = dataset.items[Int(item)].year { facts.append(.itemYear(item: item, year: year)) }
        return facts
    }

    /// "comedy", "sci-fi action": the item's first two genres as adjectives.
    private func genreAdjectives(_ item: Int32) -> String? {
        let names = statistics.itemGenres[Int(item)].prefix(2).map { Phrasing.genreForms(statistics.genres[$0]).adjective }
        return names.isEmpty ? nil : names.joined(separator: " ")
    }

    // MARK: - User preference

    func userPreference(user: Int32) -> CorpusExample? {
        let history = statistics.historyByUser[Int(user)]
        guard let cutoff = statistics.timesByUser[Int(user)].last else { return nil }
        var chooser = TemplateChooser(seed: seed(.userPreference, user))
        let taste = statistics.taste(of: history[...])
        var steps: [String] = []
        var facts: [CorpusFact] = []
        let (profile, profileFact) = profileStep(user, &chooser)
        steps.append(profile)
        facts.append(profileFact)

        let recent = history.suffix(3)
        let recentTitles = Phrasing.list(recent.map { Phrasing.title(dataset.items[Int($0)]) })
        steps.append(chooser.choose([
            "Their history has \(history.count) titles; the latest are \(recentTitles).",
            "They have watched \(history.count) titles, most recently \(recentTitles).",
            "Across \(history.count) titles, the most recent picks are \(recentTitles).",
        ]) ?? "")
        for item in recent {
            let position = history.lastIndex(of: item) ?? 0
            facts.append(.watched(user: user, item: item, timestamp: statistics.timesByUser[Int(user)][position]))
        }

        let affinities = Array(genreAffinities(taste).prefix(3))
        for affinity in affinities {
            steps.append(genreStep(affinity, &chooser))
            facts.append(.genreAffinity(user: user, genre: statistics.genres[affinity.genre], count: affinity.count,
                                        total: affinity.total, baseline: affinity.baseline))
        }
        let rarity = genreRarity(taste)
        if let rarity {
            steps.append(rarityStep(rarity, &chooser))
            facts.append(.genreRarity(user: user, genre: statistics.genres[rarity.genre], count: rarity.count,
                                      total: rarity.total, baseline: rarity.baseline))
        }
        let decade = decadeAffinity(taste)
        if let decade {
            steps.append(decadeStep(decade, &chooser))
            facts.append(.decadeAffinity(user: user, decade: decade.decade, count: decade.count,
                                         total: decade.total, baseline: decade.baseline))
        }

        let plurals = affinities.map { Phrasing.genreForms(statistics.genres[$0.genre]).plural }
        let g1 = plurals.first
        let g2 = plurals.count > 1 ? plurals[1] : nil
        let both = g1.map { first in g2.map { "\(first) and \($0)" } ?? first }
        let era = decade.map { Phrasing.decadeLabel($0.decade) }
        // A history title carrying the strongest genre, as an anchor.
        let anchor = affinities.first.flatMap { top in
            history.last { statistics.itemGenres[Int($0)].contains(top.genre) }
        }
        let anchorTitle = anchor.map { Phrasing.title(dataset.items[Int($0)]) }

        if let both {
            steps.append(chooser.choose([
                "Together this points to a taste for \(both)\(era.map { ", with a lean toward the \($0)" } ?? "").",
                "So the strongest signals are \(both)\(era.map { " and films from the \($0)" } ?? "").",
                "In short, \(both) stand out against the population\(era.map { ", as do the \($0)" } ?? "").",
            ]) ?? "")
        }
        // The reason: one to three pieces of evidence (genres, era, an anchor title), each with
        // several phrasings, in a seeded order, so reasons do not repeat a few fixed sentences.
        var pieces: [[String]] = []
        if let both, let g1 {
            var genre = [
                "You gravitate toward \(both), watching them far more often than the typical viewer.",
                "Your taste leans to \(both).",
                "\(both.capitalizedFirst) stand out in what you watch, well above the average viewer.",
                "You seek out \(both) more than most people do.",
                "Most of all, you come back to \(g1).",
            ]
            if let g2 { genre.append("At heart you are a fan of \(g1); \(g2) also feature well above the norm in what you watch.") }
            pieces.append(genre)
        }
        if let era {
            pieces.append([
                "You have a soft spot for films from the \(era).",
                "Films from the \(era) come up often in your history, more than for most viewers.",
                "You favour titles from the \(era).",
            ])
        }
        if both != nil, let anchorTitle {
            pieces.append([
                "\(anchorTitle) is typical of what you enjoy.",
                "A film from your history such as \(anchorTitle) sums up that taste.",
            ])
        }
        let reason = pieces.isEmpty
            ? ((recent.last.map { "Your taste is broad; lately you chose \(Phrasing.title(dataset.items[Int($0)]))." })
                ?? "Your taste is broad, with no genre or era far above the typical viewer.")
            : compose(pieces, &chooser)
        if let anchor, let anchorTitle, both != nil, reason.contains(anchorTitle) {
            let position = history.lastIndex(of: anchor) ?? 0
            facts.append(.watched(user: user, item: anchor, timestamp: statistics.timesByUser[Int(user)][position]))
        }

        let prompt = chooser.choose([
            "Describe what this user enjoys, from their profile and viewing history.",
            "From the profile and history below, explain this user's taste in films.",
            "What kind of films does this user like? Use the profile and history.",
        ]) ?? ""
        return CorpusExample(task: .userPreference, user: user, item: nil,
                             prompt: prompt + "\n" + profileLine(user) + "\n" + historyLines(history[...]),
                             steps: steps, reason: reason, facts: facts, cutoff: cutoff, historyLength: history.count)
    }

    // MARK: - Item audience

    private struct Skew {
        var label: String
        var count: Int
        var audience: Int
        var baseline: Double
        var share: Double { Double(count) / Double(max(audience, 1)) }
        var lift: Double { baseline > 0 ? share / baseline : 0 }
    }

    func itemAudience(item: Int32) -> CorpusExample? {
        let audienceSize = statistics.audienceByItem[Int(item)].count
        guard audienceSize >= configuration.minimumAudience else { return nil }
        var chooser = TemplateChooser(seed: seed(.itemAudience, item))
        let profile = statistics.audienceProfile(of: item)
        var steps: [String] = [itemStep(item, &chooser)]
        var facts = itemFacts(item)
        let support = max(configuration.minimumSupport, 3)

        let neighbours = Array(statistics.neighbours[Int(item)].prefix(configuration.neighboursShown))
        let neighbourTitles = neighbours.map { Phrasing.title(dataset.items[Int($0.item)]) }
        if neighbours.isEmpty {
            steps.append("It has \(audienceSize) viewers in the training data and no strong co-viewing pattern.")
        } else {
            let counts = Phrasing.list(neighbours.map { "\($0.shared)" })
            var pairedParts: [String] = []
            for (offset, neighbour) in neighbours.enumerated() {
                pairedParts.append(offset == 0 ? "\(neighbour.shared) also watched \(neighbourTitles[offset])"
                                                : "\(neighbour.shared) \(neighbourTitles[offset])")
            }
            let paired = Phrasing.list(pairedParts)
            steps.append(chooser.choose([
                "Its most co-watched titles are \(Phrasing.list(neighbourTitles)), shared by \(counts) of its \(audienceSize) viewers.",
                "Of its \(audienceSize) viewers, \(paired).",
                "Viewers of it overlap most with \(Phrasing.list(zip(neighbours, neighbourTitles).map { "\($1) (\($0.shared) shared)" })), out of \(audienceSize).",
            ]) ?? "")
            for neighbour in neighbours {
                facts.append(.coOccurrence(item: item, neighbour: neighbour.item, shared: neighbour.shared, audience: audienceSize))
            }
        }

        // Age band with the highest lift.
        var age: (band: AgeBand, skew: Skew)?
        for band in AgeBand.allCases {
            let skew = Skew(label: band.label, count: profile.ageCounts[band.rawValue], audience: audienceSize,
                            baseline: statistics.ageBaseline[band.rawValue])
            guard skew.count >= support, skew.lift >= 1.1 else { continue }
            if age.map({ skew.lift > $0.skew.lift }) ?? true { age = (band, skew) }
        }
        if let age {
            let s = age.skew
            steps.append(chooser.choose([
                "Viewers aged \(s.label) make up \(Phrasing.percent(s.share)) of its audience against \(Phrasing.percent(s.baseline)) of all views (\(Phrasing.lift(s.lift))).",
                "Its audience skews to ages \(s.label): \(s.count) of \(s.audience) viewers, \(Phrasing.lift(s.lift)) the usual share.",
            ]) ?? "")
            facts.append(.audienceAge(item: item, band: age.band, count: s.count, audience: audienceSize, baseline: s.baseline))
        }
        var gender: (token: String, skew: Skew)?
        for (token, count) in profile.genderCounts.sorted(by: { $0.key < $1.key }) {
            let skew = Skew(label: token, count: count, audience: audienceSize, baseline: statistics.genderBaseline[token] ?? 0)
            guard count >= support, skew.lift >= 1.1 else { continue }
            if gender.map({ skew.lift > $0.skew.lift }) ?? true { gender = (token, skew) }
        }
        if let gender {
            let s = gender.skew
            let who = Phrasing.genderPlural(gender.token)
            steps.append(chooser.choose([
                "\(who.capitalizedFirst) account for \(Phrasing.percent(s.share)) of its viewers, compared with \(Phrasing.percent(s.baseline)) of all views.",
                "The audience is \(Phrasing.percent(s.share)) \(who), \(Phrasing.lift(s.lift)) their overall share.",
            ]) ?? "")
            facts.append(.audienceGender(item: item, gender: gender.token, count: s.count, audience: audienceSize, baseline: s.baseline))
        }
        var occupations: [(token: String, skew: Skew)] = []
        for (token, count) in profile.occupationCounts where count >= support {
            let skew = Skew(label: token, count: count, audience: audienceSize, baseline: statistics.occupationBaseline[token] ?? 0)
            if skew.lift >= 1.2 { occupations.append((token, skew)) }
        }
        occupations.sort { $0.skew.lift != $1.skew.lift ? $0.skew.lift > $1.skew.lift : $0.token < $1.token }
        occupations = Array(occupations.prefix(2))
        if !occupations.isEmpty {
            let described = occupations.map { "\(Phrasing.occupationPlural($0.token)) (\(Phrasing.percent($0.skew.share)), \(Phrasing.lift($0.skew.lift)))" }
            steps.append(chooser.choose([
                "Over-represented occupations among its viewers: \(Phrasing.list(described)).",
                "By occupation, \(Phrasing.list(described)) watch it more than their overall share predicts.",
            ]) ?? "")
            for occupation in occupations {
                facts.append(.audienceOccupation(item: item, occupation: occupation.token, count: occupation.skew.count,
                                                 audience: audienceSize, baseline: occupation.skew.baseline))
            }
        }

        let fans = neighbourTitles.isEmpty ? nil : Phrasing.list(Array(neighbourTitles.prefix(2)))
        let occupationText = occupations.isEmpty ? nil : Phrasing.list(occupations.map { Phrasing.occupationPlural($0.token) })
        let bandText = age?.skew.label
        let adjectives = genreAdjectives(item)
        let kind = adjectives.map { "\($0) film" } ?? "film"
        let year = dataset.items[Int(item)].year
        let itemTitle = Phrasing.title(dataset.items[Int(item)])
        var pieces: [[String]] = []
        if let fans {
            pieces.append([
                "Viewers who liked \(fans) are the natural audience for this \(kind).",
                "Fans of \(fans) should enjoy \(itemTitle).",
                "It is often watched by people who also saw \(fans).",
                "Anyone who liked \(fans) is a good match for this \(kind).",
            ])
        }
        if let bandText {
            pieces.append([
                "It appeals most to viewers aged \(bandText).",
                "Its audience skews toward people aged \(bandText).",
                "Viewers aged \(bandText) watch it more than most titles.",
            ])
        }
        if let occupationText {
            pieces.append([
                "It draws \(occupationText) more than most titles do.",
                "\(occupationText.capitalizedFirst) are over-represented among its viewers.",
            ])
        }
        if let gender {
            let who = Phrasing.genderPlural(gender.token)
            pieces.append(["\(who.capitalizedFirst) in particular watch it.", "It finds more of its audience among \(who) than most films do."])
        }
        let reason = pieces.isEmpty
            ? "This \(year.map { "\($0) " } ?? "")\(kind) has a broad audience without a strong skew."
            : compose(pieces, &chooser)

        let prompt = chooser.choose([
            "Who would enjoy this item, and why? Use its metadata, co-watched titles and audience.",
            "Describe the audience this film appeals to, from the data below.",
            "Explain which viewers are likely to enjoy this title.",
        ]) ?? ""
        var input = itemLine(item)
        if !neighbours.isEmpty {
            input += "\nCo-watched: " + zip(neighbours, neighbourTitles).map { "\($1) (\($0.shared) shared)" }.joined(separator: "; ") + "."
        }
        input += "\nAudience: \(audienceSize) viewers; " + audienceSummary(profile) + "."
        return CorpusExample(task: .itemAudience, user: nil, item: item, prompt: prompt + "\n" + input,
                             steps: steps, reason: reason, facts: facts, cutoff: nil, historyLength: 0)
    }

    private func audienceSummary(_ profile: AudienceProfile) -> String {
        let size = Double(max(profile.size, 1))
        let ages = AgeBand.allCases.filter { profile.ageCounts[$0.rawValue] > 0 }
            .map { "\($0.label) \(Phrasing.percent(Double(profile.ageCounts[$0.rawValue]) / size))" }
        let genders = profile.genderCounts.sorted { $0.key < $1.key }
            .map { "\(Phrasing.genderPlural($0.key)) \(Phrasing.percent(Double($0.value) / size))" }
        let occupations = profile.occupationCounts.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }
            .prefix(3).map { "\($0.key) \(Phrasing.percent(Double($0.value) / size))" }
        return "ages " + ages.joined(separator: ", ") + "; " + genders.joined(separator: ", ")
            + "; top occupations " + occupations.joined(separator: ", ")
    }

    // MARK: - Pair and next item

    /// Target positions in a user's history: the last one first, then distinct sampled ones.
    private func targetPositions(user: Int32, count: Int, task: CorpusExample.Task) -> [Int] {
        let length = statistics.historyByUser[Int(user)].count
        guard count > 0, length > configuration.minimumHistory else { return [] }
        var positions = [length - 1]
        var chooser = TemplateChooser(seed: seed(task, user, 1))
        let candidates = length - 1 - configuration.minimumHistory
        var attempts = 0
        while positions.count < min(count, candidates + 1) && attempts < 8 * count {
            attempts += 1
            let position = configuration.minimumHistory + chooser.index(candidates)
            if !positions.contains(position) { positions.append(position) }
        }
        return positions
    }

    /// The history item (among the last 50) sharing the most training users with `target`.
    private func strongestLink(_ target: Int32, in history: ArraySlice<Int32>) -> (item: Int32, shared: Int)? {
        var best: (item: Int32, shared: Int)?
        for item in history.suffix(50).reversed() where item != target {
            let shared = statistics.sharedAudience(target, item)
            if shared >= configuration.minimumSupport, best.map({ shared > $0.shared }) ?? true { best = (item, shared) }
        }
        return best
    }

    func pairs(user: Int32) -> [CorpusExample] {
        targetPositions(user: user, count: configuration.pairsPerUser, task: .pair).enumerated().compactMap { index, position in
            pair(user: user, position: position, variant: index)
        }
    }

    private func pair(user: Int32, position: Int, variant: Int) -> CorpusExample? {
        let fullHistory = statistics.historyByUser[Int(user)]
        guard position >= 1, position < fullHistory.count else { return nil }
        return pair(user: user, target: fullHistory[position], position: position, variant: variant)
    }

    /// The pair example for `target` after the first `position` items of the user's training
    /// history (a training position, or the whole history for an item the user has not seen).
    func pair(user: Int32, target: Int32, position: Int, variant: Int) -> CorpusExample? {
        let fullHistory = statistics.historyByUser[Int(user)]
        let times = statistics.timesByUser[Int(user)]
        guard position >= 1, position <= fullHistory.count else { return nil }
        let history = fullHistory[..<position]
        let cutoff = times[position - 1]
        var chooser = TemplateChooser(seed: seed(.pair, user, 100 + variant))
        var steps: [String] = []
        var facts: [CorpusFact] = []
        let (profile, profileFact) = profileStep(user, &chooser)
        steps.append(profile)
        facts.append(profileFact)

        let taste = statistics.taste(of: history)
        let affinities = genreAffinities(taste)
        if let top = affinities.first {
            steps.append(genreStep(top, &chooser))
            facts.append(.genreAffinity(user: user, genre: statistics.genres[top.genre], count: top.count, total: top.total, baseline: top.baseline))
        }
        steps.append(itemStep(target, &chooser))
        facts += itemFacts(target)

        let link = strongestLink(target, in: history)
        let linkTitle = link.map { Phrasing.title(dataset.items[Int($0.item)]) }
        let audienceSize = statistics.audienceByItem[Int(target)].count
        if let link, let linkTitle {
            steps.append(chooser.choose([
                "\(linkTitle), which they watched, shares \(link.shared) of its viewers with it.",
                "\(link.shared) viewers watched both \(linkTitle), from their history, and this title.",
                "From their history, \(linkTitle) has the strongest overlap with it: \(link.shared) shared viewers out of \(audienceSize).",
            ]) ?? "")
            facts.append(.coOccurrence(item: target, neighbour: link.item, shared: link.shared, audience: audienceSize))
            let linkPosition = fullHistory.firstIndex(of: link.item) ?? 0
            facts.append(.watched(user: user, item: link.item, timestamp: times[linkPosition]))
        }

        let targetGenres = Set(statistics.itemGenres[Int(target)])
        var overlap: Affinity? = affinities.first { targetGenres.contains($0.genre) }
        if overlap == nil {
            for genre in targetGenres.sorted() where taste.genreCounts[genre] >= configuration.minimumSupport {
                let candidate = Affinity(genre: genre, count: taste.genreCounts[genre], total: taste.total,
                                         baseline: statistics.genreBaseline[genre])
                guard candidate.lift >= 1 else { continue }
                if overlap.map({ candidate.lift > $0.lift }) ?? true { overlap = candidate }
            }
        }
        if let overlap {
            let name = statistics.genres[overlap.genre]
            let forms = Phrasing.genreForms(name)
            steps.append(chooser.choose([
                "Its \(forms.adjective) side matches their \(Phrasing.percent(overlap.share)) share of \(forms.plural).",
                "It is \(article(forms.adjective)) \(forms.adjective) title, and \(forms.plural) are \(Phrasing.percent(overlap.share)) of what they watch (baseline \(Phrasing.percent(overlap.baseline))).",
            ]) ?? "")
            if overlap.genre != affinities.first?.genre {
                facts.append(overlap.lift >= configuration.affinityLift
                    ? .genreAffinity(user: user, genre: name, count: overlap.count, total: overlap.total, baseline: overlap.baseline)
                    : .genreShare(user: user, genre: name, count: overlap.count, total: overlap.total, baseline: overlap.baseline))
            }
        }

        let info = dataset.users[Int(user)]
        let targetProfile = statistics.audienceProfile(of: target)
        var bandSkew: Skew?
        if let band = AgeBand(age: info.age) {
            let skew = Skew(label: band.label, count: targetProfile.ageCounts[band.rawValue], audience: audienceSize,
                            baseline: statistics.ageBaseline[band.rawValue])
            if skew.count >= configuration.minimumSupport && skew.lift >= 1.1 {
                bandSkew = skew
                steps.append(chooser.choose([
                    "Viewers aged \(band.label), like them, make up \(Phrasing.percent(skew.share)) of its audience (\(Phrasing.lift(skew.lift)) the usual share).",
                    "Its audience over-represents their age band, \(band.label): \(skew.count) of \(audienceSize) viewers.",
                ]) ?? "")
                facts.append(.audienceAge(item: target, band: band, count: skew.count, audience: audienceSize, baseline: skew.baseline))
            }
        }

        let overlapForms = overlap.map { Phrasing.genreForms(statistics.genres[$0.genre]) }
        let year = dataset.items[Int(target)].year.map { "\($0) " } ?? ""
        let kind = (genreAdjectives(target).map { "\($0) " } ?? "") + "film"
        let targetTitle = Phrasing.title(dataset.items[Int(target)])
        var pieces: [[String]] = []
        if let link, let linkTitle {
            pieces.append([
                "\(targetTitle) was also chosen by \(link.shared) viewers of \(linkTitle), a film from your history.",
                "Since you watched \(linkTitle) before, this \(kind) is a close fit: \(link.shared) viewers watched both films.",
                "\(targetTitle) is worth a look because you watched \(linkTitle) earlier; many of its viewers watched both films.",
                "Among the viewers of \(linkTitle), a film from your history, \(link.shared) also chose \(targetTitle).",
            ])
        }
        if let overlap, let forms = overlapForms {
            pieces.append([
                "It is \(article(forms.adjective)) \(forms.adjective) title, and \(forms.plural) are \(Phrasing.percent(overlap.share)) of what you watch.",
                "Your taste for \(forms.plural) makes this \(year)\(forms.adjective) title a natural pick.",
                "\(forms.plural.capitalizedFirst) make up \(Phrasing.percent(overlap.share)) of your viewing, above the usual \(Phrasing.percent(overlap.baseline)).",
                "It matches your interest in \(forms.plural).",
            ])
        }
        if let bandSkew {
            pieces.append([
                "It is especially popular with viewers aged \(bandSkew.label), like you.",
                "Viewers in your age group, \(bandSkew.label), watch it more than most films.",
                "Its audience leans toward people aged \(bandSkew.label), your age group.",
            ])
        }
        let reason = pieces.isEmpty
            ? "This \(year)\(kind) fits the mix of films you have been watching."
            : compose(pieces, &chooser)

        let prompt = chooser.choose([
            "Explain why this user would like this item.",
            "Why would this user enjoy the item below? Reason from their history.",
            "Give the reason this item suits this user.",
        ]) ?? ""
        return CorpusExample(task: .pair, user: user, item: target,
                             prompt: prompt + "\n" + profileLine(user) + "\n" + historyLines(history) + "\n" + itemLine(target),
                             steps: steps, reason: reason, facts: facts, cutoff: cutoff, historyLength: position)
    }

    func nextItems(user: Int32) -> [CorpusExample] {
        targetPositions(user: user, count: configuration.nextItemsPerUser, task: .nextItem).enumerated().compactMap { index, position in
            nextItem(user: user, position: position, variant: index)
        }
    }

    private func nextItem(user: Int32, position: Int, variant: Int) -> CorpusExample? {
        let fullHistory = statistics.historyByUser[Int(user)]
        let times = statistics.timesByUser[Int(user)]
        guard position >= 1, position < fullHistory.count else { return nil }
        let target = fullHistory[position]
        let history = fullHistory[..<position]
        let cutoff = times[position - 1]
        var chooser = TemplateChooser(seed: seed(.nextItem, user, 100 + variant))
        var steps: [String] = []
        var facts: [CorpusFact] = []
        let targetTitle = Phrasing.title(dataset.items[Int(target)])

        let recent = history.suffix(3)
        steps.append(chooser.choose([
            "Their latest titles are \(Phrasing.list(recent.map { Phrasing.title(dataset.items[Int($0)]) }))",
            "Most recently they watched \(Phrasing.list(recent.map { Phrasing.title(dataset.items[Int($0)]) }))",
        ]).map { $0 + "." } ?? "")
        for (offset, item) in zip(recent.indices, recent) { facts.append(.watched(user: user, item: item, timestamp: times[offset])) }

        let window = history.suffix(5)
        let windowTaste = statistics.taste(of: window)
        var recentGenre: Int?
        for (genre, count) in windowTaste.genreCounts.enumerated() where count >= 2 {
            if recentGenre.map({ count > windowTaste.genreCounts[$0] }) ?? true { recentGenre = genre }
        }
        if let recentGenre {
            let plural = Phrasing.genreForms(statistics.genres[recentGenre]).plural
            let count = windowTaste.genreCounts[recentGenre]
            steps.append(chooser.choose([
                "Recently they have leaned toward \(plural) (\(count) of their last \(window.count)).",
                "\(count) of their last \(window.count) titles are \(plural).",
            ]) ?? "")
        }
        let link = strongestLink(target, in: window)
        let audienceSize = statistics.audienceByItem[Int(target)].count
        if let link {
            let linkTitle = Phrasing.title(dataset.items[Int(link.item)])
            steps.append(chooser.choose([
                "\(link.shared) viewers of \(linkTitle), a recent pick, also watched \(targetTitle).",
                "Among titles co-watched with \(linkTitle), \(targetTitle) is shared by \(link.shared) viewers.",
            ]) ?? "")
            facts.append(.coOccurrence(item: target, neighbour: link.item, shared: link.shared, audience: audienceSize))
        } else {
            steps.append("\(targetTitle) has \(audienceSize) viewers in the training data.")
        }
        if let recentGenre, statistics.itemGenres[Int(target)].contains(recentGenre) {
            let adjective = Phrasing.genreForms(statistics.genres[recentGenre]).adjective
            steps.append("\(targetTitle) is also \(article(adjective)) \(adjective) title.")
        }
        facts += itemFacts(target)
        facts.append(.nextItem(user: user, item: target, timestamp: times[position]))
        let reason = chooser.choose([
            "Next: \(targetTitle).",
            "They will most likely watch \(targetTitle) next.",
            "The next title is \(targetTitle).",
            "Most likely next pick: \(targetTitle).",
        ]) ?? targetTitle
        let prompt = chooser.choose([
            "Predict the next title this user will watch.",
            "Which title will this user watch next? Reason from the recent history.",
            "Given the history, name the user's next title.",
        ]) ?? ""
        return CorpusExample(task: .nextItem, user: user, item: target,
                             prompt: prompt + "\n" + profileLine(user) + "\n" + historyLines(history),
                             steps: steps, reason: reason, facts: facts, cutoff: cutoff, historyLength: position)
    }

    /// A reason from pieces of evidence (each a list of phrasings): one or two pieces (the
    /// first kept first half of the time, the rest in seeded order), each in a seeded phrasing.
    private func compose(_ pieces: [[String]], _ chooser: inout TemplateChooser) -> String {
        var order = Array(pieces.indices)
        for i in stride(from: order.count - 1, to: 0, by: -1) { order.swapAt(i, chooser.index(i + 1)) }
        if chooser.index(2) == 0, let first = order.firstIndex(of: 0) { order.swapAt(0, first) }
        let count = pieces.count >= 2 && chooser.index(3) > 0 ? 2 : 1
        return order.prefix(count).map { pieces[$0][chooser.index(pieces[$0].count)] }.joined(separator: " ")
    }

    private func article(_ word: String) -> String {
        "aeiou".contains(word.first ?? "x") ? "an" : "a"
    }
}

extension String {
    /// The string with its first character uppercased.
    var capitalizedFirst: String {
        guard let first else { return self }
        return first.uppercased() + dropFirst()
    }
}

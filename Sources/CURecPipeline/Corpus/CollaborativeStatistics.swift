import CURecData

/// Collaborative statistics of a dataset's TRAINING interactions only (a leave-one-out
/// split's `trainItemsByUser`): population baselines of genres, decades and demographics,
/// item audiences, and co-occurrence neighbours. Validation and test interactions are never
/// read, so every fact derived from these statistics is a fact about the training data.
///
/// Repeated (user, item) pairs count once; a user's history keeps first occurrences in
/// chronological order.
public struct CollaborativeStatistics: Sendable {
    /// One co-occurrence neighbour of an item.
    public struct Neighbour: Sendable, Hashable {
        /// The neighbouring item.
        public var item: Int32
        /// Training users who consumed both items.
        public var shared: Int
    }

    /// The dataset the statistics describe.
    public let dataset: RecDataset
    /// Each user's training items, first occurrences, chronological (index = user).
    public let historyByUser: [[Int32]]
    /// Timestamps aligned with `historyByUser`.
    public let timesByUser: [[Int64]]
    /// Each item's training users, ascending (index = item).
    public let audienceByItem: [[Int32]]
    /// Genre tokens of the dataset, sorted, without `unknown`.
    public let genres: [String]
    /// Each item's genre indices into `genres`.
    public let itemGenres: [[Int]]
    /// Number of distinct training (user, item) pairs.
    public let pairCount: Int
    /// Share of training pairs whose item has each genre (aligned with `genres`).
    public let genreBaseline: [Double]
    /// Share of training pairs (with a known year) whose item is from each decade (e.g. 1990).
    public let decadeBaseline: [Int: Double]
    /// Share of training pairs by the consuming user's age band (aligned with `AgeBand.allCases`).
    public let ageBaseline: [Double]
    /// Share of training pairs by the consuming user's gender token.
    public let genderBaseline: [String: Double]
    /// Share of training pairs by the consuming user's occupation token.
    public let occupationBaseline: [String: Double]
    /// Each item's most co-consumed items, most shared first (ties: lower index first).
    public let neighbours: [[Neighbour]]

    /// Computes the statistics of `split`'s training part of `dataset`.
    ///
    /// - Parameters:
    ///   - neighbourCount: neighbours kept per item.
    ///   - minimumShared: a neighbour needs at least this many shared users.
    public init(dataset: RecDataset, split: LeaveOneOutSplit, neighbourCount: Int = 5, minimumShared: Int = 2) {
        self.dataset = dataset
        let userCount = dataset.userCount
        let itemCount = dataset.itemCount
        var history = [[Int32]](repeating: [], count: userCount)
        var times = [[Int64]](repeating: [], count: userCount)
        var audience = [[Int32]](repeating: [], count: itemCount)
        var seen = [Int32](repeating: -1, count: itemCount)
        var pairs = 0
        for user in 0..<min(userCount, split.trainItemsByUser.count) {
            let items = split.trainItemsByUser[user]
            let stamps = user < split.trainTimesByUser.count ? split.trainTimesByUser[user] : []
            for (position, item) in items.enumerated() where Int(item) < itemCount && item >= 0 {
                guard seen[Int(item)] != Int32(user) else { continue }
                seen[Int(item)] = Int32(user)
                history[user].append(item)
                times[user].append(position < stamps.count ? stamps[position] : 0)
                audience[Int(item)].append(Int32(user))
                pairs += 1
            }
        }
        historyByUser = history
        timesByUser = times
        audienceByItem = audience
        pairCount = pairs

        let genreList = Array(Set(dataset.items.flatMap(\.genres))).filter { $0.lowercased() != "unknown" && !$0.isEmpty }.sorted()
        let genreIndex = Dictionary(uniqueKeysWithValues: genreList.enumerated().map { ($1, $0) })
        genres = genreList
        let itemGenreIDs = dataset.items.map { info in Array(Set(info.genres.compactMap { genreIndex[$0] })).sorted() }
        itemGenres = itemGenreIDs

        var genreCounts = [Double](repeating: 0, count: genreList.count)
        var decadeCounts: [Int: Double] = [:]
        var dated = 0.0
        var ageCounts = [Double](repeating: 0, count: AgeBand.allCases.count)
        var aged = 0.0
        var genderCounts: [String: Double] = [:]
        var gendered = 0.0
        var occupationCounts: [String: Double] = [:]
        var occupied = 0.0
        for (item, users) in audience.enumerated() {
            let weight = Double(users.count)
            guard weight > 0 else { continue }
            for genre in itemGenreIDs[item] { genreCounts[genre] += weight }
            if let decade = dataset.items[item].decade { decadeCounts[decade, default: 0] += weight; dated += weight }
            for user in users {
                let info = dataset.users[Int(user)]
                if let band = AgeBand(age: info.age) { ageCounts[band.rawValue] += 1; aged += 1 }
                if !info.gender.isEmpty { genderCounts[info.gender, default: 0] += 1; gendered += 1 }
                if !info.occupation.isEmpty { occupationCounts[info.occupation, default: 0] += 1; occupied += 1 }
            }
        }
        let total = Double(max(pairs, 1))
        genreBaseline = genreCounts.map { $0 / total }
        decadeBaseline = decadeCounts.mapValues { $0 / max(dated, 1) }
        ageBaseline = ageCounts.map { $0 / max(aged, 1) }
        genderBaseline = genderCounts.mapValues { $0 / max(gendered, 1) }
        occupationBaseline = occupationCounts.mapValues { $0 / max(occupied, 1) }
        neighbours = Self.coOccurrence(history: history, audience: audience, itemCount: itemCount,
                                       keep: neighbourCount, minimumShared: minimumShared)
    }

    /// Top neighbours per item with one scratch counter array: cost is the sum over users of
    /// their history length squared, memory O(items).
    private static func coOccurrence(history: [[Int32]], audience: [[Int32]], itemCount: Int,
                                     keep: Int, minimumShared: Int) -> [[Neighbour]] {
        var result = [[Neighbour]](repeating: [], count: itemCount)
        guard keep > 0 else { return result }
        var counts = [Int32](repeating: 0, count: itemCount)
        var touched: [Int32] = []
        counts.withUnsafeMutableBufferPointer { counter in
            for item in 0..<itemCount {
                touched.removeAll(keepingCapacity: true)
                for user in audience[item] {
                    history[Int(user)].withUnsafeBufferPointer { items in
                        for other in items where Int(other) != item {
                            if counter[Int(other)] == 0 { touched.append(other) }
                            counter[Int(other)] += 1
                        }
                    }
                }
                var best: [Neighbour] = []
                for other in touched {
                    let shared = Int(counter[Int(other)])
                    counter[Int(other)] = 0
                    guard shared >= minimumShared else { continue }
                    let candidate = Neighbour(item: other, shared: shared)
                    if best.count == keep, let last = best.last, !Self.ranksBefore(candidate, last) { continue }
                    let position = best.firstIndex { Self.ranksBefore(candidate, $0) } ?? best.count
                    best.insert(candidate, at: position)
                    if best.count > keep { best.removeLast() }
                }
                result[item] = best
            }
        }
        return result
    }

    private static func ranksBefore(_ a: Neighbour, _ b: Neighbour) -> Bool {
        a.shared != b.shared ? a.shared > b.shared : a.item < b.item
    }

    /// Training users who consumed both items (sorted-list intersection).
    public func sharedAudience(_ a: Int32, _ b: Int32) -> Int {
        let left = audienceByItem[Int(a)], right = audienceByItem[Int(b)]
        var i = 0, j = 0, count = 0
        while i < left.count && j < right.count {
            if left[i] == right[j] { count += 1; i += 1; j += 1 } else if left[i] < right[j] { i += 1 } else { j += 1 }
        }
        return count
    }

    /// Genre and decade counts of a history (a prefix of a user's training history).
    public func taste(of history: ArraySlice<Int32>) -> Taste {
        var genreCounts = [Int](repeating: 0, count: genres.count)
        var decadeCounts: [Int: Int] = [:]
        var dated = 0
        for item in history {
            for genre in itemGenres[Int(item)] { genreCounts[genre] += 1 }
            if let decade = dataset.items[Int(item)].decade { decadeCounts[decade, default: 0] += 1; dated += 1 }
        }
        return Taste(total: history.count, genreCounts: genreCounts, datedTotal: dated, decadeCounts: decadeCounts)
    }

    /// Audience make-up of an item's training users.
    public func audienceProfile(of item: Int32) -> AudienceProfile {
        var ages = [Int](repeating: 0, count: AgeBand.allCases.count)
        var genders: [String: Int] = [:]
        var occupations: [String: Int] = [:]
        for user in audienceByItem[Int(item)] {
            let info = dataset.users[Int(user)]
            if let band = AgeBand(age: info.age) { ages[band.rawValue] += 1 }
            if !info.gender.isEmpty { genders[info.gender, default: 0] += 1 }
            if !info.occupation.isEmpty { occupations[info.occupation, default: 0] += 1 }
        }
        return AudienceProfile(size: audienceByItem[Int(item)].count, ageCounts: ages, genderCounts: genders, occupationCounts: occupations)
    }
}

/// Genre and decade counts of one history.
public struct Taste: Sendable, Hashable {
    /// Items in the history.
    public var total: Int
    /// Items per genre (aligned with `CollaborativeStatistics.genres`).
    public var genreCounts: [Int]
    /// Items with a known year.
    public var datedTotal: Int
    /// Items per decade.
    public var decadeCounts: [Int: Int]
}

/// Demographic make-up of one item's training audience.
public struct AudienceProfile: Sendable, Hashable {
    /// Training users who consumed the item.
    public var size: Int
    /// Users per age band (aligned with `AgeBand.allCases`).
    public var ageCounts: [Int]
    /// Users per gender token.
    public var genderCounts: [String: Int]
    /// Users per occupation token.
    public var occupationCounts: [String: Int]
}

/// Age bands used in prompts and audience facts.
public enum AgeBand: Int, CaseIterable, Sendable, Hashable, Codable {
    case under18, from18to24, from25to34, from35to44, from45to54, over55

    /// The band of `age`, or nil when unknown.
    public init?(age: Int?) {
        guard let age, age > 0 else { return nil }
        switch age {
        case ..<18: self = .under18
        case 18...24: self = .from18to24
        case 25...34: self = .from25to34
        case 35...44: self = .from35to44
        case 45...54: self = .from45to54
        default: self = .over55
        }
    }

    /// Label used in text, e.g. `25-34`.
    public var label: String {
        switch self {
        case .under18: return "under 18"
        case .from18to24: return "18-24"
        case .from25to34: return "25-34"
        case .from35to44: return "35-44"
        case .from45to54: return "45-54"
        case .over55: return "55 and over"
        }
    }
}

extension ItemInfo {
    /// The release decade (e.g. 1990), when the year is known.
    public var decade: Int? { year.map { $0 - (($0 % 10) + 10) % 10 } }
}

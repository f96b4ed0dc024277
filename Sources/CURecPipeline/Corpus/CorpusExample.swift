/// One structured fact a corpus example states, with the numbers behind it so that it can be
/// re-checked against the training data. Shares are fractions in [0, 1].
public enum CorpusFact: Sendable, Hashable, Codable {
    /// The user's profile as shown in the prompt.
    case profile(user: Int32, ageBand: AgeBand?, gender: String, occupation: String)
    /// `count` of the user's `total` history items have `genre`; across all training pairs
    /// the share is `baseline`. Stated as an affinity (count/total well above baseline).
    case genreAffinity(user: Int32, genre: String, count: Int, total: Int, baseline: Double)
    /// As `genreAffinity`, stated as a rarely watched genre (share well below baseline).
    case genreRarity(user: Int32, genre: String, count: Int, total: Int, baseline: Double)
    /// As `genreAffinity`, stated only as a share at or above the baseline.
    case genreShare(user: Int32, genre: String, count: Int, total: Int, baseline: Double)
    /// `count` of the user's `total` dated history items are from `decade` (e.g. 1990).
    case decadeAffinity(user: Int32, decade: Int, count: Int, total: Int, baseline: Double)
    /// The item's genres (dataset metadata).
    case itemGenres(item: Int32, genres: [String])
    /// The item's release year (dataset metadata).
    case itemYear(item: Int32, year: Int)
    /// `shared` of the item's `audience` training users also consumed `neighbour`.
    case coOccurrence(item: Int32, neighbour: Int32, shared: Int, audience: Int)
    /// `count` of the item's `audience` training users are in `band`; baseline share over all pairs.
    case audienceAge(item: Int32, band: AgeBand, count: Int, audience: Int, baseline: Double)
    /// `count` of the item's `audience` training users have `gender`.
    case audienceGender(item: Int32, gender: String, count: Int, audience: Int, baseline: Double)
    /// `count` of the item's `audience` training users have `occupation`.
    case audienceOccupation(item: Int32, occupation: String, count: Int, audience: Int, baseline: Double)
    /// The user consumed `item` in training at `timestamp` (part of the shown history).
    case watched(user: Int32, item: Int32, timestamp: Int64)
    /// The item the user consumed next in training (the target of a next-item example).
    case nextItem(user: Int32, item: Int32, timestamp: Int64)
}

/// One instruction + chain-of-thought training example.
public struct CorpusExample: Sendable, Hashable {
    /// The four task types of alignment pretraining.
    public enum Task: String, Sendable, Hashable, CaseIterable, Codable {
        /// Profile + history → what the user enjoys.
        case userPreference = "user-preference"
        /// Item metadata + co-consumed items + audience → who would enjoy it.
        case itemAudience = "item-audience"
        /// (user, item) → why this user would like this item.
        case pair = "pair"
        /// History → the next title.
        case nextItem = "next-item"
    }

    /// The task type.
    public var task: Task
    /// The user the example is about (nil for item-audience examples).
    public var user: Int32?
    /// The item the example is about (nil for user-preference examples).
    public var item: Int32?
    /// The instruction and its input (profile, history, item metadata...).
    public var prompt: String
    /// Reasoning steps, without numbers (the rendering numbers them).
    public var steps: [String]
    /// The final reason: one or two sentences.
    public var reason: String
    /// Every fact the steps and reason state.
    public var facts: [CorpusFact]
    /// Timestamp of the last history item shown (the user's cut-off time); nil without a user.
    public var cutoff: Int64?
    /// Number of the user's training history items (from the start) the example draws on.
    public var historyLength: Int

    /// Marker lines of the rendered format.
    public enum Marker {
        public static let task = "### Task: "
        public static let instruction = "### Instruction"
        public static let reasoning = "### Reasoning"
        public static let reason = "### Reason"
        public static let end = "### End"
    }

    /// The prompt half of the rendering: task and instruction blocks, then the reasoning
    /// marker line. An LM is conditioned on this and trained on `completionText`.
    public var promptText: String {
        "\(Marker.task)\(task.rawValue)\n\(Marker.instruction)\n\(prompt)\n\(Marker.reasoning)\n"
    }

    /// The completion half: numbered steps, the reason block and the end marker.
    public var completionText: String {
        var text = ""
        for (index, step) in steps.enumerated() { text += "\(index + 1). \(step)\n" }
        return text + "\(Marker.reason)\n\(reason)\n\(Marker.end)\n"
    }

    /// The full text for LM training: `promptText + completionText`.
    public var text: String { promptText + completionText }
}

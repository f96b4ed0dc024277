/// The chronological leave-one-out split: each user's last interaction is the test
/// interaction, the one before it the validation interaction, the rest training.
///
/// Interactions are ordered by timestamp; equal timestamps keep file order. A user with two
/// interactions has no validation one; a user with one has only training.
public struct LeaveOneOutSplit: Sendable {
    /// Training interactions, in chronological order per user.
    public let train: [Interaction]
    /// At most one validation interaction per user.
    public let validation: [Interaction]
    /// At most one test interaction per user.
    public let test: [Interaction]
    /// Each user's training items, in chronological order (index = user).
    public let trainItemsByUser: [[Int32]]
    /// Each user's training interactions' timestamps, aligned with `trainItemsByUser`.
    public let trainTimesByUser: [[Int64]]

    /// Splits `dataset`.
    public init(_ dataset: RecDataset) {
        var byUser = [[(offset: Int, interaction: Interaction)]](repeating: [], count: dataset.userCount)
        for (offset, interaction) in dataset.interactions.enumerated() {
            byUser[Int(interaction.user)].append((offset, interaction))
        }
        var train: [Interaction] = []
        var validation: [Interaction] = []
        var test: [Interaction] = []
        var trainItems = [[Int32]](repeating: [], count: dataset.userCount)
        var trainTimes = [[Int64]](repeating: [], count: dataset.userCount)
        train.reserveCapacity(dataset.interactions.count)
        for user in 0..<dataset.userCount {
            let ordered = byUser[user].sorted {
                ($0.interaction.timestamp, $0.offset) < ($1.interaction.timestamp, $1.offset)
            }.map(\.interaction)
            var trainPart = ordered[...]
            if ordered.count >= 2, let last = trainPart.popLast() { test.append(last) }
            if ordered.count >= 3, let last = trainPart.popLast() { validation.append(last) }
            train.append(contentsOf: trainPart)
            trainItems[user] = trainPart.map(\.item)
            trainTimes[user] = trainPart.map(\.timestamp)
        }
        self.train = train
        self.validation = validation
        self.test = test
        self.trainItemsByUser = trainItems
        self.trainTimesByUser = trainTimes
    }
}

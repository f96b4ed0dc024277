import CURecData
import CURecPluginHost

/// The dataset the daemon serves and trains on, with fast id lookups for request validation.
public final class ServingData: Sendable {
    public let dataset: RecDataset
    public let split: LeaveOneOutSplit
    /// Each user's training items, oldest first (the history passed to recommenders).
    public let histories: [[UInt32]]
    /// Content features of items (genres and decade), used until reason embeddings exist.
    public let contentFeatures: ContentFeatures
    /// `0..<itemCount`, the candidates of a full-catalogue ranking.
    public let allItems: [UInt32]

    public init(dataset: RecDataset) {
        self.dataset = dataset
        let split = LeaveOneOutSplit(dataset)
        self.split = split
        self.histories = split.trainItemsByUser.map { $0.map { UInt32(bitPattern: $0) } }
        self.contentFeatures = ContentFeatures(dataset: dataset)
        self.allItems = (0..<UInt32(dataset.itemCount)).map { $0 }
    }

    /// The dense index of `userID`, or NOT_FOUND / INVALID_ARGUMENT naming the field.
    public func user(_ userID: String, field: @autoclosure () -> String = "user_id") throws(ServingError) -> UInt32 {
        guard !userID.isEmpty else { throw ServingError.invalidArgument("\(field()) is empty; give a user id of dataset \(dataset.name)") }
        guard let index = dataset.userIndex(userID) else {
            throw ServingError.notFound("\(field()) '\(ChatModelStore.shortened(userID))' is not a user of dataset \(dataset.name) (\(dataset.userCount) users)")
        }
        return UInt32(index)
    }

    /// The dense index of `itemID`, or NOT_FOUND / INVALID_ARGUMENT naming the field.
    public func item(_ itemID: String, field: @autoclosure () -> String) throws(ServingError) -> UInt32 {
        guard !itemID.isEmpty else { throw ServingError.invalidArgument("\(field()) is empty; give an item id of dataset \(dataset.name)") }
        guard let index = dataset.itemIndex(itemID) else {
            throw ServingError.notFound("\(field()) '\(ChatModelStore.shortened(itemID))' is not an item of dataset \(dataset.name) (\(dataset.itemCount) items)")
        }
        return UInt32(index)
    }

    /// Training data for plugins: the training split with content features.
    public func trainingData() -> PluginTrainingData {
        let train = split.train
        return PluginTrainingData(
            userCount: dataset.userCount, itemCount: dataset.itemCount,
            users: train.map { UInt32(bitPattern: $0.user) }, items: train.map { UInt32(bitPattern: $0.item) },
            ratings: train.map(\.rating), timestamps: train.map(\.timestamp),
            itemFeatures: contentFeatures.values, itemFeatureDimension: contentFeatures.dimension,
            validationUsers: split.validation.map { UInt32(bitPattern: $0.user) },
            validationItems: split.validation.map { UInt32(bitPattern: $0.item) })
    }
}

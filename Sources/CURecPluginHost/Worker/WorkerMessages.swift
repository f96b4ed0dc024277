import CURecPluginABI

/// The payloads of ``WorkerFrame`` kinds that carry more than one value, each written and
/// read in one place so the two sides cannot drift apart.
enum WorkerMessages {
    /// Bounds on what a worker accepts from the daemon (the daemon's own checks come first;
    /// these keep a confused peer from making either side allocate without bound).
    static let maximumCandidates = 16 << 20
    static let maximumTriples = 1 << 20
    static let maximumEmbedding = 1 << 16
    static let maximumMessage = Int(CUREC_ERROR_MESSAGE_CAPACITY)

    // MARK: description

    static func write(_ description: PluginDescription, to writer: inout WireWriter) {
        writer.string(description.pluginName)
        writer.string(description.pluginVersion)
        writer.u32(description.kind == .rewardModel ? 2 : 1)
        writer.u32(UInt32(clamping: description.itemFeatureDimension))
        writer.u32(UInt32(clamping: description.userFeatureDimension))
        writer.u32(UInt32(clamping: description.reasonEmbeddingDimension))
        writer.u32(description.isTrained ? 1 : 0)
    }

    static func readDescription(_ reader: inout WireReader) throws(WireError) -> PluginDescription {
        let name = try reader.string("the plugin name", limit: 256)
        let version = try reader.string("the plugin version", limit: 256)
        let kind = try reader.u32("the kind")
        guard kind == 1 || kind == 2 else { throw WireError("plugin kind \(kind) is neither 1 nor 2") }
        let description = PluginDescription(
            pluginName: name, pluginVersion: version, kind: kind == 2 ? .rewardModel : .recommender,
            itemFeatureDimension: Int(try reader.u32()), userFeatureDimension: Int(try reader.u32()),
            reasonEmbeddingDimension: Int(try reader.u32()), isTrained: try reader.u32() != 0)
        try reader.finish("a description")
        return description
    }

    // MARK: failure

    static func failure(code: Int32, message: String) -> [UInt8] {
        var writer = WireWriter(.failed, capacity: 16 + message.utf8.count)
        writer.i32(code)
        writer.string(String(decoding: message.utf8.prefix(maximumMessage), as: UTF8.self))
        return writer.finish()
    }

    static func readFailure(_ reader: inout WireReader) throws(WireError) -> (code: Int32, message: String) {
        let code = try reader.i32("the status code")
        let message = try reader.string("the message", limit: maximumMessage)
        try reader.finish("a failure")
        guard code > 0, code <= 16 else { throw WireError("status code \(code) is not a gRPC error code") }
        return (code, message)
    }

    // MARK: reward triples

    static func write(_ inputs: [PluginInstance.RewardInput], to writer: inout WireWriter) {
        writer.u32(UInt32(inputs.count))
        for input in inputs {
            writer.u32(input.user)
            writer.u32(input.item)
            writer.floats(input.embedding)
        }
    }

    static func readRewardInputs(_ reader: inout WireReader) throws(WireError) -> [PluginInstance.RewardInput] {
        let count = Int(try reader.u32("the triple count"))
        guard count <= maximumTriples else { throw WireError("\(count) triples, at most \(maximumTriples) allowed") }
        var inputs: [PluginInstance.RewardInput] = []
        inputs.reserveCapacity(min(count, 4096))
        for _ in 0..<count {
            let user = try reader.u32("a triple's user")
            let item = try reader.u32("a triple's item")
            let embedding = try reader.floats("a reason embedding", limit: maximumEmbedding)
            inputs.append(.init(user: user, item: item, embedding: embedding))
        }
        try reader.finish("the triples")
        return inputs
    }

    // MARK: training

    static func write(_ data: PluginTrainingData, checkpointDirectory: String?, to writer: inout WireWriter) {
        writer.u32(UInt32(clamping: data.userCount))
        writer.u32(UInt32(clamping: data.itemCount))
        writer.array(data.users)
        writer.array(data.items)
        writer.floats(data.ratings)
        writer.array(data.timestamps)
        writer.u32(UInt32(clamping: data.itemFeatureDimension))
        writer.floats(data.itemFeatures)
        writer.u32(UInt32(clamping: data.userFeatureDimension))
        writer.floats(data.userFeatures)
        writer.array(data.validationUsers)
        writer.array(data.validationItems)
        writer.string(checkpointDirectory ?? "")
    }

    static func readTraining(_ reader: inout WireReader) throws(WireError) -> (PluginTrainingData, String?) {
        let userCount = Int(try reader.u32("the user count"))
        let itemCount = Int(try reader.u32("the item count"))
        let users = try reader.array(of: UInt32.self, "users")
        let items = try reader.array(of: UInt32.self, "items")
        let ratings = try reader.floats("ratings")
        let timestamps = try reader.array(of: Int64.self, "timestamps")
        guard items.count == users.count, ratings.count == users.count, timestamps.count == users.count else {
            throw WireError("interaction arrays differ in length")
        }
        let itemDimension = Int(try reader.u32("the item feature dimension"))
        let itemFeatures = try reader.floats("item features")
        let userDimension = Int(try reader.u32("the user feature dimension"))
        let userFeatures = try reader.floats("user features")
        let validationUsers = try reader.array(of: UInt32.self, "validation users")
        let validationItems = try reader.array(of: UInt32.self, "validation items")
        guard validationUsers.count == validationItems.count else { throw WireError("validation arrays differ in length") }
        let checkpoint = try reader.string("the checkpoint directory", limit: 4096)
        try reader.finish("the training data")
        // Feature sizes are checked against count x dimension by PluginInstance.train.
        return (PluginTrainingData(
            userCount: userCount, itemCount: itemCount, users: users, items: items, ratings: ratings,
            timestamps: timestamps, itemFeatures: itemFeatures, itemFeatureDimension: itemDimension,
            userFeatures: userFeatures, userFeatureDimension: userDimension,
            validationUsers: validationUsers, validationItems: validationItems),
            checkpoint.isEmpty ? nil : checkpoint)
    }
}

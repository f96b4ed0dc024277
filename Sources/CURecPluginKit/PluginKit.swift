import CURecPluginABI
import Foundation

/// An error a Swift plugin reports through the C ABI: a status code and a message.
public struct PluginFailure: Error, Sendable {
    public var code: CURecStatus
    public var message: String

    public init(_ code: CURecStatus, _ message: String) {
        self.code = code
        self.message = message
    }
}

/// Static facts a Swift plugin reports from `describe`.
public struct PluginFacts: Sendable {
    public var name: String
    public var version: String
    public var kind: CURecPluginKind
    public var itemFeatureDimension: Int = 0
    public var userFeatureDimension: Int = 0
    public var reasonEmbeddingDimension: Int = 0
    public var isTrained: Bool = false
    /// Recommenders: the most requests ``SwiftPlugin/scoreRecommenderBatch(_:scores:results:)``
    /// takes in one call (ABI 1.2). 0 (the default) tells the host to call
    /// ``SwiftPlugin/scoreRecommender(user:history:candidates:scores:)`` one request at a time.
    public var maxBatchSize: Int = 0

    public init(name: String, version: String, kind: CURecPluginKind) {
        self.name = name
        self.version = version
        self.kind = kind
    }
}

/// Training data as a Swift plugin sees it: buffers borrowed from the host for the duration
/// of `train`.
public struct TrainingView {
    public let userCount: Int
    public let itemCount: Int
    public let users: UnsafeBufferPointer<UInt32>
    public let items: UnsafeBufferPointer<UInt32>
    public let ratings: UnsafeBufferPointer<Float>
    public let timestamps: UnsafeBufferPointer<Int64>
    /// Row-major `[itemCount x itemFeatureDimension]`; empty when the dataset has none.
    public let itemFeatures: UnsafeBufferPointer<Float>
    public let itemFeatureDimension: Int
    /// Row-major `[userCount x userFeatureDimension]`; empty when the dataset has none.
    public let userFeatures: UnsafeBufferPointer<Float>
    public let userFeatureDimension: Int
    public let validationUsers: UnsafeBufferPointer<UInt32>
    public let validationItems: UnsafeBufferPointer<UInt32>

    init(_ view: CURecDatasetView) {
        let count = Int(view.interaction_count)
        userCount = Int(view.user_count)
        itemCount = Int(view.item_count)
        users = UnsafeBufferPointer(start: view.users, count: view.users == nil ? 0 : count)
        items = UnsafeBufferPointer(start: view.items, count: view.items == nil ? 0 : count)
        ratings = UnsafeBufferPointer(start: view.ratings, count: view.ratings == nil ? 0 : count)
        timestamps = UnsafeBufferPointer(start: view.timestamps, count: view.timestamps == nil ? 0 : count)
        itemFeatureDimension = view.item_features == nil ? 0 : Int(view.item_feature_dim)
        itemFeatures = UnsafeBufferPointer(start: view.item_features, count: Int(view.item_count) * itemFeatureDimension)
        userFeatureDimension = view.user_features == nil ? 0 : Int(view.user_feature_dim)
        userFeatures = UnsafeBufferPointer(start: view.user_features, count: Int(view.user_count) * userFeatureDimension)
        let validation = Int(view.validation_count)
        validationUsers = UnsafeBufferPointer(start: view.validation_users, count: view.validation_users == nil ? 0 : validation)
        validationItems = UnsafeBufferPointer(start: view.validation_items, count: view.validation_items == nil ? 0 : validation)
    }
}

/// Progress reporting and cancellation during `train`.
public struct TrainingHooks {
    let callbacks: CURecTrainCallbacks?

    /// Reports `step` of `total` with metrics (encoded as a JSON object).
    public func progress(step: Int, total: Int, metrics: [String: Double]) {
        guard let callbacks, let report = callbacks.progress else { return }
        let json = "{" + metrics.sorted { $0.key < $1.key }.map { "\"\($0.key)\":\($0.value.isFinite ? "\($0.value)" : "null")" }
            .joined(separator: ",") + "}"
        json.withCString { report(callbacks.context, UInt64(step), UInt64(total), $0) }
    }

    /// A directory for training checkpoints that survives restarts (ABI 1.1), or nil.
    public var checkpointDirectory: String? {
        guard let callbacks,
              Int(callbacks.struct_size) >= MemoryLayout<CURecTrainCallbacks>.offset(of: \.checkpoint_directory)!
                + MemoryLayout<UnsafePointer<CChar>?>.size,
              let directory = callbacks.checkpoint_directory else { return nil }
        return String(cString: directory)
    }

    /// True when the host asked training to stop.
    public var isCancelled: Bool {
        guard let callbacks, let check = callbacks.is_cancelled else { return false }
        return check(callbacks.context) != 0
    }
}

/// A plugin written in Swift. The plugin library exports the C entry points by forwarding
/// each to ``PluginExports`` (see docs/plugin-guide.md).
///
/// Threading follows curec_plugin.h: scoring may run concurrently; train and load are
/// exclusive.
public protocol SwiftPlugin: AnyObject {
    /// Creates an instance from the config bytes given to `curec_plugin_create`.
    init(config: [UInt8]) throws(PluginFailure)
    /// Facts for `describe`.
    var facts: PluginFacts { get }
    func train(_ data: TrainingView, hooks: TrainingHooks) throws(PluginFailure)
    /// Recommenders: one score per candidate.
    func scoreRecommender(user: UInt32, history: UnsafeBufferPointer<UInt32>, candidates: UnsafeBufferPointer<UInt32>,
                          scores: UnsafeMutableBufferPointer<Float>) throws(PluginFailure)
    /// Recommenders declaring ``PluginFacts/maxBatchSize`` (ABI 1.2): scores every request
    /// into its own buffer and returns one outcome per request (nil: its scores were written;
    /// a failure: that request alone failed). The default scores them one by one.
    func scoreRecommenderBatch(_ requests: [RecommenderBatchRequest], scores: [UnsafeMutableBufferPointer<Float>])
        -> [PluginFailure?]
    /// Reward models: one reward per triple.
    func scoreReward(_ triples: UnsafeBufferPointer<CURecRewardTriple>, rewards: UnsafeMutableBufferPointer<Float>) throws(PluginFailure)
    func save(directory: String) throws(PluginFailure)
    func load(directory: String) throws(PluginFailure)
}

/// One request of a batched recommender call: buffers borrowed from the host for the call.
public struct RecommenderBatchRequest {
    public let user: UInt32
    public let history: UnsafeBufferPointer<UInt32>
    public let candidates: UnsafeBufferPointer<UInt32>

    init(_ request: CURecRecommendRequest) {
        user = request.user
        history = UnsafeBufferPointer(start: request.history, count: request.history == nil ? 0 : Int(request.history_count))
        candidates = UnsafeBufferPointer(start: request.candidates, count: request.candidates == nil ? 0 : Int(request.candidate_count))
    }
}

extension SwiftPlugin {
    public func scoreRecommenderBatch(_ requests: [RecommenderBatchRequest], scores: [UnsafeMutableBufferPointer<Float>])
        -> [PluginFailure?]
    {
        zip(requests, scores).map { request, output in
            do throws(PluginFailure) {
                try scoreRecommender(user: request.user, history: request.history, candidates: request.candidates, scores: output)
                return nil
            } catch {
                return error
            }
        }
    }

    public func scoreRecommender(user: UInt32, history: UnsafeBufferPointer<UInt32>, candidates: UnsafeBufferPointer<UInt32>,
                                 scores: UnsafeMutableBufferPointer<Float>) throws(PluginFailure) {
        throw PluginFailure(CUREC_STATUS_UNIMPLEMENTED, "\(facts.name) is not a recommender")
    }

    public func scoreReward(_ triples: UnsafeBufferPointer<CURecRewardTriple>,
                            rewards: UnsafeMutableBufferPointer<Float>) throws(PluginFailure) {
        throw PluginFailure(CUREC_STATUS_UNIMPLEMENTED, "\(facts.name) is not a reward model")
    }
}

/// The instance behind a `CURecPlugin*`: the Swift object plus C strings for describe.
final class PluginBox<Plugin: SwiftPlugin> {
    let plugin: Plugin
    private var name: UnsafeMutablePointer<CChar>?
    private var version: UnsafeMutablePointer<CChar>?

    init(_ plugin: Plugin) {
        self.plugin = plugin
        name = strdup(plugin.facts.name)
        version = strdup(plugin.facts.version)
    }

    deinit {
        free(name)
        free(version)
    }

    func fill(_ info: inout CURecPluginInfo) {
        let facts = plugin.facts
        info.name = UnsafePointer(name)
        info.version = UnsafePointer(version)
        info.kind = Int32(facts.kind.rawValue)
        info.item_feature_dim = UInt32(facts.itemFeatureDimension)
        info.user_feature_dim = UInt32(facts.userFeatureDimension)
        info.reason_embedding_dim = UInt32(facts.reasonEmbeddingDimension)
        info.is_trained = facts.isTrained ? 1 : 0
        // A field added in 1.2: written only into a struct the host made large enough.
        if Int(info.struct_size) >= MemoryLayout<CURecPluginInfo>.offset(of: \.max_batch_size)! + MemoryLayout<UInt32>.size {
            info.max_batch_size = UInt32(clamping: max(0, facts.maxBatchSize))
        }
    }
}

/// Implementations of every C entry point for a ``SwiftPlugin`` type.
public enum PluginExports<Plugin: SwiftPlugin> {
    private static func box(_ pointer: OpaquePointer?) -> PluginBox<Plugin>? {
        guard let pointer else { return nil }
        return Unmanaged<PluginBox<Plugin>>.fromOpaque(UnsafeRawPointer(pointer)).takeUnretainedValue()
    }

    private static func report(_ failure: PluginFailure, _ errorOut: UnsafeMutablePointer<CURecError>?) -> Int32 {
        let code = Int32(failure.code.rawValue)
        guard let errorOut else { return code }
        errorOut.pointee.code = code
        withUnsafeMutableBytes(of: &errorOut.pointee.message) { raw in
            let bytes = Array(failure.message.utf8.prefix(raw.count - 1))
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        return code
    }

    private static func missingInstance(_ errorOut: UnsafeMutablePointer<CURecError>?) -> Int32 {
        report(PluginFailure(CUREC_STATUS_INVALID_ARGUMENT, "the plugin instance pointer is NULL"), errorOut)
    }

    public static func create(_ config: UnsafePointer<UInt8>?, _ size: Int, _ out: UnsafeMutablePointer<OpaquePointer?>?,
                              _ errorOut: UnsafeMutablePointer<CURecError>?) -> Int32 {
        guard let out else { return report(PluginFailure(CUREC_STATUS_INVALID_ARGUMENT, "out is NULL"), errorOut) }
        let bytes = config.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
        do {
            let plugin = try Plugin(config: bytes)
            out.pointee = OpaquePointer(Unmanaged.passRetained(PluginBox(plugin)).toOpaque())
            return 0
        } catch {
            return report(error, errorOut)
        }
    }

    public static func describe(_ plugin: OpaquePointer?, _ info: UnsafeMutablePointer<CURecPluginInfo>?) -> Int32 {
        guard let box = box(plugin), let info else { return Int32(CUREC_STATUS_INVALID_ARGUMENT.rawValue) }
        box.fill(&info.pointee)
        return 0
    }

    public static func train(_ plugin: OpaquePointer?, _ dataset: UnsafePointer<CURecDatasetView>?,
                             _ callbacks: UnsafePointer<CURecTrainCallbacks>?, _ errorOut: UnsafeMutablePointer<CURecError>?) -> Int32 {
        guard let box = box(plugin) else { return missingInstance(errorOut) }
        guard let dataset else { return report(PluginFailure(CUREC_STATUS_INVALID_ARGUMENT, "dataset is NULL"), errorOut) }
        do {
            try box.plugin.train(TrainingView(dataset.pointee), hooks: TrainingHooks(callbacks: callbacks?.pointee))
            return 0
        } catch {
            return report(error, errorOut)
        }
    }

    public static func scoreRecommender(_ plugin: OpaquePointer?, _ request: UnsafePointer<CURecRecommendRequest>?,
                                        _ scores: UnsafeMutablePointer<Float>?, _ errorOut: UnsafeMutablePointer<CURecError>?) -> Int32 {
        guard let box = box(plugin) else { return missingInstance(errorOut) }
        guard let request, let scores else {
            return report(PluginFailure(CUREC_STATUS_INVALID_ARGUMENT, "request or scores is NULL"), errorOut)
        }
        let value = request.pointee
        do {
            try box.plugin.scoreRecommender(
                user: value.user,
                history: UnsafeBufferPointer(start: value.history, count: value.history == nil ? 0 : Int(value.history_count)),
                candidates: UnsafeBufferPointer(start: value.candidates, count: value.candidates == nil ? 0 : Int(value.candidate_count)),
                scores: UnsafeMutableBufferPointer(start: scores, count: Int(value.candidate_count)))
            return 0
        } catch {
            return report(error, errorOut)
        }
    }

    public static func scoreRecommenderBatch(_ plugin: OpaquePointer?, _ requests: UnsafePointer<CURecRecommendRequest>?, _ count: Int,
                                             _ scores: UnsafePointer<UnsafeMutablePointer<Float>?>?,
                                             _ results: UnsafeMutablePointer<CURecError>?,
                                             _ errorOut: UnsafeMutablePointer<CURecError>?) -> Int32 {
        guard let box = box(plugin) else { return missingInstance(errorOut) }
        guard count > 0, let requests, let scores, let results else {
            return report(PluginFailure(CUREC_STATUS_INVALID_ARGUMENT, "requests, scores or results is NULL or count is 0"), errorOut)
        }
        let limit = box.plugin.facts.maxBatchSize
        guard count <= limit else {
            return report(PluginFailure(CUREC_STATUS_INVALID_ARGUMENT, "a batch of \(count) requests; at most \(limit) per call"), errorOut)
        }
        var views: [RecommenderBatchRequest] = []
        var outputs: [UnsafeMutableBufferPointer<Float>] = []
        views.reserveCapacity(count)
        outputs.reserveCapacity(count)
        for index in 0..<count {
            let request = requests[index]
            let output = scores[index]
            guard output != nil || request.candidate_count == 0 else {
                return report(PluginFailure(CUREC_STATUS_INVALID_ARGUMENT, "scores[\(index)] is NULL"), errorOut)
            }
            views.append(RecommenderBatchRequest(request))
            outputs.append(UnsafeMutableBufferPointer(start: output, count: Int(request.candidate_count)))
        }
        let outcomes = box.plugin.scoreRecommenderBatch(views, scores: outputs)
        for index in 0..<count {
            if index < outcomes.count, outcomes[index] == nil {
                results[index].code = 0
                results[index].message.0 = 0
            } else {
                _ = report(index < outcomes.count ? outcomes[index]!
                                                  : PluginFailure(CUREC_STATUS_INTERNAL, "the plugin gave no outcome for request \(index)"),
                           results + index)
            }
        }
        return 0
    }

    public static func scoreReward(_ plugin: OpaquePointer?, _ triples: UnsafePointer<CURecRewardTriple>?, _ count: Int,
                                   _ rewards: UnsafeMutablePointer<Float>?, _ errorOut: UnsafeMutablePointer<CURecError>?) -> Int32 {
        guard let box = box(plugin) else { return missingInstance(errorOut) }
        guard count == 0 || (triples != nil && rewards != nil) else {
            return report(PluginFailure(CUREC_STATUS_INVALID_ARGUMENT, "triples or rewards is NULL"), errorOut)
        }
        do {
            try box.plugin.scoreReward(UnsafeBufferPointer(start: triples, count: count),
                                       rewards: UnsafeMutableBufferPointer(start: rewards, count: count))
            return 0
        } catch {
            return report(error, errorOut)
        }
    }

    public static func save(_ plugin: OpaquePointer?, _ directory: UnsafePointer<CChar>?, _ errorOut: UnsafeMutablePointer<CURecError>?) -> Int32 {
        guard let box = box(plugin) else { return missingInstance(errorOut) }
        guard let directory else { return report(PluginFailure(CUREC_STATUS_INVALID_ARGUMENT, "directory is NULL"), errorOut) }
        do {
            try box.plugin.save(directory: String(cString: directory))
            return 0
        } catch {
            return report(error, errorOut)
        }
    }

    public static func load(_ plugin: OpaquePointer?, _ directory: UnsafePointer<CChar>?, _ errorOut: UnsafeMutablePointer<CURecError>?) -> Int32 {
        guard let box = box(plugin) else { return missingInstance(errorOut) }
        guard let directory else { return report(PluginFailure(CUREC_STATUS_INVALID_ARGUMENT, "directory is NULL"), errorOut) }
        do {
            try box.plugin.load(directory: String(cString: directory))
            return 0
        } catch {
            return report(error, errorOut)
        }
    }

    public static func destroy(_ plugin: OpaquePointer?) {
        guard let plugin else { return }
        Unmanaged<PluginBox<Plugin>>.fromOpaque(UnsafeRawPointer(plugin)).release()
    }
}

/// Little-endian float32 array files, the artifact format of the bundled Swift plugins.
public enum FloatArrayFile {
    public static func write(_ values: [Float], to path: String) throws(PluginFailure) {
        let data = values.withUnsafeBufferPointer { Data(buffer: $0) }
        do {
            try data.write(to: URL(fileURLWithPath: path), options: .atomic)
        } catch {
            throw PluginFailure(CUREC_STATUS_INTERNAL, "cannot write \(path): \(error.localizedDescription)")
        }
    }

    public static func read(_ path: String, expectedCount: Int) throws(PluginFailure) -> [Float] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw PluginFailure(CUREC_STATUS_NOT_FOUND, "artifact file \(path) is missing")
        }
        guard data.count == expectedCount * 4 else {
            throw PluginFailure(CUREC_STATUS_INVALID_ARGUMENT,
                                "artifact file \(path) holds \(data.count / 4) floats, expected \(expectedCount)")
        }
        return data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
    }
}

/// Small JSON artifact files (metadata beside the float arrays) with plugin errors.
public enum JSONArtifactFile {
    /// Writes `value` as JSON to `path`, atomically.
    public static func write<Value: Encodable>(_ value: Value, to path: String) throws(PluginFailure) {
        do {
            try JSONEncoder().encode(value).write(to: URL(fileURLWithPath: path), options: .atomic)
        } catch {
            throw PluginFailure(CUREC_STATUS_INTERNAL, "cannot write \(path): \(error.localizedDescription)")
        }
    }

    /// Reads JSON from `path`: NOT_FOUND naming `what` when the file is missing,
    /// INVALID_ARGUMENT when it does not decode.
    public static func read<Value: Decodable>(_ type: Value.Type, from path: String, what: String) throws(PluginFailure) -> Value {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw PluginFailure(CUREC_STATUS_NOT_FOUND, "\(path) is missing: not \(what)")
        }
        do {
            return try JSONDecoder().decode(Value.self, from: data)
        } catch {
            throw PluginFailure(CUREC_STATUS_INVALID_ARGUMENT, "\(path) is malformed: \(error)")
        }
    }
}

/// SplitMix64: a small, fast, seedable generator for deterministic plugin training. Its whole
/// state is one word, so checkpoints can store and restore it exactly.
public struct SplitMix64: Sendable {
    public private(set) var state: UInt64

    public init(seed: UInt64) { state = seed }
    public init(state: UInt64) { self.state = state }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A standard normal sample (Box–Muller).
    public mutating func nextGaussian() -> Float {
        let u1 = max(Double(next() >> 11) / Double(1 << 53), 1e-12)
        let u2 = Double(next() >> 11) / Double(1 << 53)
        return Float((-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2))
    }
}

/// Parses a JSON object config (empty bytes mean `{}`).
public func decodeJSONConfig<Config: Decodable>(_ type: Config.Type, from bytes: [UInt8], plugin: String) throws(PluginFailure) -> Config {
    let data = bytes.isEmpty ? Data("{}".utf8) : Data(bytes)
    do {
        return try JSONDecoder().decode(Config.self, from: data)
    } catch {
        throw PluginFailure(CUREC_STATUS_INVALID_ARGUMENT, "\(plugin) config is not valid: \(error)")
    }
}

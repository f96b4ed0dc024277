import CURecPluginABI
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// One dlopen-ed plugin library with its resolved entry points.
///
/// The host loads every library from a private copy of the file, so a new build of the same
/// path can be loaded beside the old one (dlopen would otherwise return the loaded copy).
/// When the last instance using it is gone the handle is released and the copy deleted, but
/// the code stays mapped (RTLD_NODELETE): language runtimes, Swift's among them, keep
/// pointers into a loaded image's metadata for the life of the process, so unmapping a
/// library would leave them dangling. ``PluginHost`` therefore opens each build of a file
/// once and shares it among the instances made from it; only a new build costs a mapping.
final class PluginLibrary: @unchecked Sendable {
    typealias AbiVersion = @convention(c) () -> UInt32
    typealias Create = @convention(c) (UnsafePointer<UInt8>?, Int, UnsafeMutablePointer<OpaquePointer?>?, UnsafeMutablePointer<CURecError>?) -> Int32
    typealias Describe = @convention(c) (OpaquePointer?, UnsafeMutablePointer<CURecPluginInfo>?) -> Int32
    typealias Train = @convention(c) (OpaquePointer?, UnsafePointer<CURecDatasetView>?, UnsafePointer<CURecTrainCallbacks>?, UnsafeMutablePointer<CURecError>?) -> Int32
    typealias ScoreRecommender = @convention(c) (OpaquePointer?, UnsafePointer<CURecRecommendRequest>?, UnsafeMutablePointer<Float>?, UnsafeMutablePointer<CURecError>?) -> Int32
    typealias ScoreRecommenderBatch = @convention(c) (OpaquePointer?, UnsafePointer<CURecRecommendRequest>?, Int, UnsafePointer<UnsafeMutablePointer<Float>?>?, UnsafeMutablePointer<CURecError>?, UnsafeMutablePointer<CURecError>?) -> Int32
    typealias ScoreReward = @convention(c) (OpaquePointer?, UnsafePointer<CURecRewardTriple>?, Int, UnsafeMutablePointer<Float>?, UnsafeMutablePointer<CURecError>?) -> Int32
    typealias Directory = @convention(c) (OpaquePointer?, UnsafePointer<CChar>?, UnsafeMutablePointer<CURecError>?) -> Int32
    typealias Destroy = @convention(c) (OpaquePointer?) -> Void

    /// The file the library was loaded for (not the private copy).
    let path: String
    let abiMajor: UInt32
    let abiMinor: UInt32
    let create: Create
    let describe: Describe
    let train: Train
    let scoreRecommender: ScoreRecommender?
    let scoreReward: ScoreReward?
    /// The batched recommender entry point (ABI 1.2), looked up only in plugins of minor 2 on.
    let scoreRecommenderBatch: ScoreRecommenderBatch?
    let save: Directory
    let load: Directory
    let destroy: Destroy
    private let handle: UnsafeMutableRawPointer
    private let loadedCopy: String

    /// The ABI version of this host.
    static let hostMajor = UInt32(CUREC_PLUGIN_ABI_VERSION_MAJOR)
    static let hostMinor = UInt32(CUREC_PLUGIN_ABI_VERSION_MINOR)

    /// Opens `path` (through a private copy in `cacheDirectory`) and checks the ABI.
    init(path: String, cacheDirectory: String) throws(PluginHostError) {
        self.path = path
        let copy = (cacheDirectory as NSString).appendingPathComponent(
            "\(UUID().uuidString)-\((path as NSString).lastPathComponent)")
        do {
            try FileManager.default.createDirectory(atPath: cacheDirectory, withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: path, toPath: copy)
        } catch {
            throw .host("cannot stage plugin library \(path) for loading: \(error.localizedDescription)")
        }
        guard let handle = dlopen(copy, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE) else {
            let reason = dlerror().map { String(cString: $0) } ?? "unknown dlopen error"
            try? FileManager.default.removeItem(atPath: copy)
            throw .notASharedLibrary(path: path, reason: reason.replacingOccurrences(of: copy, with: path))
        }
        func symbol<T>(_ name: String, as type: T.Type, required: Bool = true) throws(PluginHostError) -> T? {
            guard let address = dlsym(handle, name) else {
                if required {
                    dlclose(handle)
                    try? FileManager.default.removeItem(atPath: copy)
                    throw .missingSymbol(path: path, symbol: name)
                }
                return nil
            }
            return unsafeBitCast(address, to: type)
        }
        guard let abiVersion = try symbol("curec_plugin_abi_version", as: AbiVersion.self) else {
            throw .missingSymbol(path: path, symbol: "curec_plugin_abi_version")
        }
        let packed = abiVersion()
        let major = packed >> 16
        let minor = packed & 0xFFFF
        guard major == Self.hostMajor, minor <= Self.hostMinor else {
            dlclose(handle)
            try? FileManager.default.removeItem(atPath: copy)
            throw .incompatibleABI(path: path, pluginMajor: major, pluginMinor: minor,
                                   hostMajor: Self.hostMajor, hostMinor: Self.hostMinor)
        }
        self.abiMajor = major
        self.abiMinor = minor
        // Required entry points, then the kind-specific ones.
        guard let create = try symbol("curec_plugin_create", as: Create.self),
              let describe = try symbol("curec_plugin_describe", as: Describe.self),
              let train = try symbol("curec_plugin_train", as: Train.self),
              let save = try symbol("curec_plugin_save", as: Directory.self),
              let load = try symbol("curec_plugin_load", as: Directory.self),
              let destroy = try symbol("curec_plugin_destroy", as: Destroy.self) else {
            throw .host("unreachable: a required symbol resolved to nil")
        }
        self.create = create
        self.describe = describe
        self.train = train
        self.save = save
        self.load = load
        self.destroy = destroy
        self.scoreRecommender = try symbol("curec_plugin_score_recommender", as: ScoreRecommender.self, required: false)
        self.scoreReward = try symbol("curec_plugin_score_reward", as: ScoreReward.self, required: false)
        self.scoreRecommenderBatch = minor >= 2
            ? try symbol("curec_plugin_score_recommender_batch", as: ScoreRecommenderBatch.self, required: false) : nil
        self.handle = handle
        self.loadedCopy = copy
    }

    deinit {
        dlclose(handle)
        try? FileManager.default.removeItem(atPath: loadedCopy)
    }
}

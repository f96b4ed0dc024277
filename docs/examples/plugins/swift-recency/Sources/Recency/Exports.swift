import CURecPluginABI
import CURecPluginKit

// The C entry points, each forwarding to the generic implementation in CURecPluginKit.

@_cdecl("curec_plugin_abi_version")
public func abiVersion() -> UInt32 { UInt32(CUREC_PLUGIN_ABI_VERSION_MAJOR << 16 | CUREC_PLUGIN_ABI_VERSION_MINOR) }

@_cdecl("curec_plugin_create")
public func create(_ config: UnsafePointer<UInt8>?, _ size: Int, _ out: UnsafeMutablePointer<OpaquePointer?>?,
                   _ error: UnsafeMutablePointer<CURecError>?) -> Int32 {
    PluginExports<Recency>.create(config, size, out, error)
}

@_cdecl("curec_plugin_describe")
public func describe(_ plugin: OpaquePointer?, _ info: UnsafeMutablePointer<CURecPluginInfo>?) -> Int32 {
    PluginExports<Recency>.describe(plugin, info)
}

@_cdecl("curec_plugin_train")
public func train(_ plugin: OpaquePointer?, _ data: UnsafePointer<CURecDatasetView>?,
                  _ callbacks: UnsafePointer<CURecTrainCallbacks>?, _ error: UnsafeMutablePointer<CURecError>?) -> Int32 {
    PluginExports<Recency>.train(plugin, data, callbacks, error)
}

@_cdecl("curec_plugin_score_recommender")
public func score(_ plugin: OpaquePointer?, _ request: UnsafePointer<CURecRecommendRequest>?,
                  _ scores: UnsafeMutablePointer<Float>?, _ error: UnsafeMutablePointer<CURecError>?) -> Int32 {
    PluginExports<Recency>.scoreRecommender(plugin, request, scores, error)
}

@_cdecl("curec_plugin_save")
public func save(_ plugin: OpaquePointer?, _ directory: UnsafePointer<CChar>?, _ error: UnsafeMutablePointer<CURecError>?) -> Int32 {
    PluginExports<Recency>.save(plugin, directory, error)
}

@_cdecl("curec_plugin_load")
public func load(_ plugin: OpaquePointer?, _ directory: UnsafePointer<CChar>?, _ error: UnsafeMutablePointer<CURecError>?) -> Int32 {
    PluginExports<Recency>.load(plugin, directory, error)
}

@_cdecl("curec_plugin_destroy")
public func destroy(_ plugin: OpaquePointer?) {
    PluginExports<Recency>.destroy(plugin)
}

import CURecPluginABI
import CURecPluginKit

// The C entry points of the sasrec plugin library (see curec_plugin.h).

@_cdecl("curec_plugin_abi_version")
public func curecPluginABIVersion() -> UInt32 { UInt32(CUREC_PLUGIN_ABI_VERSION_MAJOR << 16 | CUREC_PLUGIN_ABI_VERSION_MINOR) }

@_cdecl("curec_plugin_create")
public func curecPluginCreate(_ config: UnsafePointer<UInt8>?, _ size: Int, _ out: UnsafeMutablePointer<OpaquePointer?>?,
                              _ error: UnsafeMutablePointer<CURecError>?) -> Int32 {
    PluginExports<SASRecPlugin>.create(config, size, out, error)
}

@_cdecl("curec_plugin_describe")
public func curecPluginDescribe(_ plugin: OpaquePointer?, _ info: UnsafeMutablePointer<CURecPluginInfo>?) -> Int32 {
    PluginExports<SASRecPlugin>.describe(plugin, info)
}

@_cdecl("curec_plugin_train")
public func curecPluginTrain(_ plugin: OpaquePointer?, _ dataset: UnsafePointer<CURecDatasetView>?,
                             _ callbacks: UnsafePointer<CURecTrainCallbacks>?, _ error: UnsafeMutablePointer<CURecError>?) -> Int32 {
    PluginExports<SASRecPlugin>.train(plugin, dataset, callbacks, error)
}

@_cdecl("curec_plugin_score_recommender")
public func curecPluginScoreRecommender(_ plugin: OpaquePointer?, _ request: UnsafePointer<CURecRecommendRequest>?,
                                        _ scores: UnsafeMutablePointer<Float>?, _ error: UnsafeMutablePointer<CURecError>?) -> Int32 {
    PluginExports<SASRecPlugin>.scoreRecommender(plugin, request, scores, error)
}

@_cdecl("curec_plugin_save")
public func curecPluginSave(_ plugin: OpaquePointer?, _ directory: UnsafePointer<CChar>?, _ error: UnsafeMutablePointer<CURecError>?) -> Int32 {
    PluginExports<SASRecPlugin>.save(plugin, directory, error)
}

@_cdecl("curec_plugin_load")
public func curecPluginLoad(_ plugin: OpaquePointer?, _ directory: UnsafePointer<CChar>?, _ error: UnsafeMutablePointer<CURecError>?) -> Int32 {
    PluginExports<SASRecPlugin>.load(plugin, directory, error)
}

@_cdecl("curec_plugin_destroy")
public func curecPluginDestroy(_ plugin: OpaquePointer?) {
    PluginExports<SASRecPlugin>.destroy(plugin)
}

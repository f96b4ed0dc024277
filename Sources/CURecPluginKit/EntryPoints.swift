import CURecPluginABI

// The C entry points of every Swift plugin library (curec_plugin.h), written once.
//
// CURecPluginKit is linked statically into each plugin library, so these functions are
// exported by every library built with it. Each forwards to ``PluginExports`` for the one
// plugin type the library serves, which the library names with a single declaration:
//
//     @_silgen_name("curec_swift_plugin_type")
//     public func pluginType() -> any SwiftPlugin.Type { MyPlugin.self }
//
// Every scoring entry point is exported (the batched one is used by the host only when the
// plugin's facts declare a max_batch_size); the host calls the one matching the kind the
// instance describes, and a plugin that does not implement the other answers UNIMPLEMENTED
// (the ``SwiftPlugin`` defaults).

/// The plugin type this library serves, defined by the plugin (see the top of this file).
@_silgen_name("curec_swift_plugin_type")
func servedPluginType() -> any SwiftPlugin.Type

@_cdecl("curec_plugin_abi_version")
public func curecPluginABIVersion() -> UInt32 {
    UInt32(CUREC_PLUGIN_ABI_VERSION_MAJOR << 16 | CUREC_PLUGIN_ABI_VERSION_MINOR)
}

@_cdecl("curec_plugin_create")
public func curecPluginCreate(_ config: UnsafePointer<UInt8>?, _ size: Int, _ out: UnsafeMutablePointer<OpaquePointer?>?,
                              _ error: UnsafeMutablePointer<CURecError>?) -> Int32 {
    func create<Plugin: SwiftPlugin>(_: Plugin.Type) -> Int32 { PluginExports<Plugin>.create(config, size, out, error) }
    return create(servedPluginType())
}

@_cdecl("curec_plugin_describe")
public func curecPluginDescribe(_ plugin: OpaquePointer?, _ info: UnsafeMutablePointer<CURecPluginInfo>?) -> Int32 {
    func describe<Plugin: SwiftPlugin>(_: Plugin.Type) -> Int32 { PluginExports<Plugin>.describe(plugin, info) }
    return describe(servedPluginType())
}

@_cdecl("curec_plugin_train")
public func curecPluginTrain(_ plugin: OpaquePointer?, _ dataset: UnsafePointer<CURecDatasetView>?,
                             _ callbacks: UnsafePointer<CURecTrainCallbacks>?, _ error: UnsafeMutablePointer<CURecError>?) -> Int32 {
    func train<Plugin: SwiftPlugin>(_: Plugin.Type) -> Int32 { PluginExports<Plugin>.train(plugin, dataset, callbacks, error) }
    return train(servedPluginType())
}

@_cdecl("curec_plugin_score_recommender")
public func curecPluginScoreRecommender(_ plugin: OpaquePointer?, _ request: UnsafePointer<CURecRecommendRequest>?,
                                        _ scores: UnsafeMutablePointer<Float>?, _ error: UnsafeMutablePointer<CURecError>?) -> Int32 {
    func score<Plugin: SwiftPlugin>(_: Plugin.Type) -> Int32 {
        PluginExports<Plugin>.scoreRecommender(plugin, request, scores, error)
    }
    return score(servedPluginType())
}

@_cdecl("curec_plugin_score_recommender_batch")
public func curecPluginScoreRecommenderBatch(_ plugin: OpaquePointer?, _ requests: UnsafePointer<CURecRecommendRequest>?,
                                             _ count: Int, _ scores: UnsafePointer<UnsafeMutablePointer<Float>?>?,
                                             _ results: UnsafeMutablePointer<CURecError>?,
                                             _ error: UnsafeMutablePointer<CURecError>?) -> Int32 {
    func score<Plugin: SwiftPlugin>(_: Plugin.Type) -> Int32 {
        PluginExports<Plugin>.scoreRecommenderBatch(plugin, requests, count, scores, results, error)
    }
    return score(servedPluginType())
}

@_cdecl("curec_plugin_score_reward")
public func curecPluginScoreReward(_ plugin: OpaquePointer?, _ triples: UnsafePointer<CURecRewardTriple>?, _ count: Int,
                                   _ rewards: UnsafeMutablePointer<Float>?, _ error: UnsafeMutablePointer<CURecError>?) -> Int32 {
    func score<Plugin: SwiftPlugin>(_: Plugin.Type) -> Int32 {
        PluginExports<Plugin>.scoreReward(plugin, triples, count, rewards, error)
    }
    return score(servedPluginType())
}

@_cdecl("curec_plugin_save")
public func curecPluginSave(_ plugin: OpaquePointer?, _ directory: UnsafePointer<CChar>?,
                            _ error: UnsafeMutablePointer<CURecError>?) -> Int32 {
    func save<Plugin: SwiftPlugin>(_: Plugin.Type) -> Int32 { PluginExports<Plugin>.save(plugin, directory, error) }
    return save(servedPluginType())
}

@_cdecl("curec_plugin_load")
public func curecPluginLoad(_ plugin: OpaquePointer?, _ directory: UnsafePointer<CChar>?,
                            _ error: UnsafeMutablePointer<CURecError>?) -> Int32 {
    func load<Plugin: SwiftPlugin>(_: Plugin.Type) -> Int32 { PluginExports<Plugin>.load(plugin, directory, error) }
    return load(servedPluginType())
}

@_cdecl("curec_plugin_destroy")
public func curecPluginDestroy(_ plugin: OpaquePointer?) {
    func destroy<Plugin: SwiftPlugin>(_: Plugin.Type) { PluginExports<Plugin>.destroy(plugin) }
    destroy(servedPluginType())
}

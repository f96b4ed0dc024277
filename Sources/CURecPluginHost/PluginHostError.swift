import CURecPluginABI

/// Why a plugin could not be loaded or called. (The daemon maps each case to a gRPC status in one place.)
public enum PluginHostError: Error, CustomStringConvertible, Sendable {
    /// dlopen refused the file.
    case notASharedLibrary(path: String, reason: String)
    /// The library does not export the CURec ABI entry points.
    case missingSymbol(path: String, symbol: String)
    /// The plugin was built for an ABI the host cannot serve.
    case incompatibleABI(path: String, pluginMajor: UInt32, pluginMinor: UInt32, hostMajor: UInt32, hostMinor: UInt32)
    /// No library of that name in the plugin directories.
    case libraryNotFound(name: String)
    /// The library was not given as a plain file name (a path, `..`, empty, too long).
    case invalidLibraryName(String)
    /// No plugin instance has that name.
    case instanceNotFound(String)
    /// An instance of that name is already loaded.
    case instanceExists(String)
    /// The plugin reported an error (code is a gRPC status code).
    case plugin(code: Int32, message: String, function: String, instance: String)
    /// The instance is of the wrong kind for the call.
    case wrongKind(instance: String, expected: String, actual: String)
    /// A host-side failure (copying the library, creating directories).
    case host(String)
    /// An isolated instance's worker is down (crashed, killed for a time limit, restarting
    /// or marked failed); the call did not run or its result is lost. Retryable.
    case workerUnavailable(instance: String, reason: String)
    /// A dynamic batching setting is out of range (the message names the field).
    case invalidBatching(String)
    /// Dynamic batching was asked of an instance that does not declare a batched entry point.
    case batchingUnsupported(instance: String)
    /// The instance's batch queue already holds `limit` requests.
    case queueFull(instance: String, limit: Int)
    /// The request's deadline passed while it waited in the batch queue (it never ran).
    case deadlineExpiredInQueue(instance: String)
    /// The request was cancelled while it waited in the batch queue (it never ran).
    case cancelledInQueue(instance: String)

    /// Whether the plugin stopped because it was asked to (it returned CUREC_STATUS_CANCELLED).
    public var isCancellation: Bool {
        if case .plugin(let code, _, _, _) = self { return code == Int32(CUREC_STATUS_CANCELLED.rawValue) }
        return false
    }

    /// Client text in a message: quoted, at most 64 characters.
    static func quoted(_ text: String) -> String {
        "'" + (text.count <= 64 ? text : String(text.prefix(64)) + "…") + "'"
    }

    public var description: String {
        switch self {
        case .notASharedLibrary(let path, let reason):
            return "\(path) is not a loadable shared library: \(reason)"
        case .missingSymbol(let path, let symbol):
            return "\(path) does not export \(symbol): it is not a CURec plugin or was built against an incomplete ABI"
        case .incompatibleABI(let path, let pluginMajor, let pluginMinor, let hostMajor, let hostMinor):
            return "\(path) was built for plugin ABI \(pluginMajor).\(pluginMinor) but this daemon provides \(hostMajor).\(hostMinor)"
                + (pluginMajor != hostMajor ? " (major versions must match); rebuild it against curec_plugin.h \(hostMajor).x"
                                            : " (it needs a newer daemon)")
        case .libraryNotFound(let name):
            return "plugin library \(Self.quoted(name)) not found in the plugin directories; "
                + "PluginService.List shows the libraries there"
        case .invalidLibraryName(let name):
            return "plugin library \(Self.quoted(name)) is not a plain file name: give a name from PluginService.List "
                + "(no '/', not starting with '.'); libraries load only from the operator's plugin directories"
        case .instanceNotFound(let name):
            return "no plugin instance named \(Self.quoted(name)) is loaded"
        case .instanceExists(let name):
            return "a plugin instance named \(Self.quoted(name)) is already loaded; unload or reload it"
        case .plugin(_, let message, let function, let instance):
            return "plugin '\(instance)' \(function) failed: \(message)"
        case .wrongKind(let instance, let expected, let actual):
            return "plugin '\(instance)' is a \(actual), not a \(expected)"
        case .host(let message):
            return message
        case .workerUnavailable(let instance, let reason):
            return "plugin '\(instance)' is unavailable: \(reason)"
        case .invalidBatching(let message):
            return "dynamic_batching: \(message)"
        case .batchingUnsupported(let instance):
            return "plugin '\(instance)' does not declare a batched scoring entry point (ABI 1.2 "
                + "curec_plugin_score_recommender_batch with max_batch_size > 0); load it without dynamic_batching"
        case .queueFull(let instance, let limit):
            return "plugin '\(instance)' has \(limit) requests waiting for a batch (its max_queue_size); retry later"
        case .deadlineExpiredInQueue(let instance):
            return "the deadline passed while the request waited for a batch of plugin '\(instance)'"
        case .cancelledInQueue(let instance):
            return "the request was cancelled while it waited for a batch of plugin '\(instance)'"
        }
    }
}

import CURecPluginHost
import CURecRPC

extension RPCError {
    /// The gRPC error for a plugin host failure: the host's status code and message.
    init(_ error: PluginHostError) {
        self.init(StatusCode(rawValue: error.statusCode) ?? .internal, error.description)
    }

    /// The gRPC error for any failure while handling plugins.
    static func from(_ error: any Error) -> RPCError {
        switch error {
        case let rpcError as RPCError: return rpcError
        case let hostError as PluginHostError: return RPCError(hostError)
        default: return RPCError(.internal, "\(error)")
        }
    }
}

import CURecJobs
import CURecPluginHost
import CURecRPC

/// Why the daemon refused or could not finish a request, in terms a client acts on.
///
/// Thrown by the transport-free service functions for checks of their own (a bad field, an
/// unknown id, a missing dataset); the stores' and hosts' errors pass through unchanged.
public enum ServingError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The request itself is wrong: the message says which field and what is allowed.
    case invalidArgument(String)
    /// Something the request names does not exist.
    case notFound(String)
    /// The daemon is not in a state to serve this request (no dataset, no model yet).
    case failedPrecondition(String)
    /// A limit of the daemon was reached.
    case resourceExhausted(String)
    /// The call's deadline passed before the work finished.
    case deadlineExceeded(String)
    /// A failure inside the daemon.
    case internalFailure(String)

    public var description: String {
        switch self {
        case .invalidArgument(let message), .notFound(let message), .failedPrecondition(let message),
             .resourceExhausted(let message), .deadlineExceeded(let message), .internalFailure(let message):
            return message
        }
    }
}

extension ServingError {
    /// `operations`, or FAILED_PRECONDITION when the daemon started without a dataset.
    static func requireDataset<Operations>(_ operations: Operations?) throws(ServingError) -> Operations {
        guard let operations else {
            throw .failedPrecondition(
                "the daemon has no dataset loaded (see its log and dataset_dir); this call needs one")
        }
        return operations
    }

    /// `error` unchanged when it already has a status (a domain error below, an `RPCError`,
    /// a cancellation), else an internal failure with its description: for work that calls
    /// into code with errors of its own (file systems, plugins' preparation).
    static func classified(_ error: any Error) -> any Error {
        switch error {
        case is any RPCStatusConvertible, is RPCError, is CancellationError: return error
        default: return ServingError.internalFailure("\(error)")
        }
    }
}

// The one place where the daemon's errors become gRPC statuses. The RPC layer ends a call
// that failed with any of these errors with the status given here.

extension ServingError: RPCStatusConvertible {
    public var rpcError: RPCError {
        switch self {
        case .invalidArgument(let message): return RPCError(.invalidArgument, message)
        case .notFound(let message): return RPCError(.notFound, message)
        case .failedPrecondition(let message): return RPCError(.failedPrecondition, message)
        case .resourceExhausted(let message): return RPCError(.resourceExhausted, message)
        case .deadlineExceeded(let message): return RPCError(.deadlineExceeded, message)
        case .internalFailure(let message): return RPCError(.internal, message)
        }
    }
}

extension DatasetError: RPCStatusConvertible {
    public var rpcError: RPCError {
        switch self {
        case .invalidName, .invalidExample: return RPCError(.invalidArgument, description)
        case .tooLarge: return RPCError(.resourceExhausted, description)
        case .notFound: return RPCError(.notFound, description)
        case .storage: return RPCError(.internal, description)
        }
    }
}

extension ChatModelError: RPCStatusConvertible {
    public var rpcError: RPCError {
        switch self {
        case .invalidName: return RPCError(.invalidArgument, description)
        case .notFound: return RPCError(.notFound, description)
        case .unavailable: return RPCError(.unavailable, description)
        }
    }
}

extension JobError: RPCStatusConvertible {
    public var rpcError: RPCError {
        switch self {
        case .unknownKind, .invalidParameter, .invalidPageToken: return RPCError(.invalidArgument, description)
        case .parametersTooLarge: return RPCError(.invalidArgument, description)
        case .queueFull: return RPCError(.resourceExhausted, description)
        case .notFound: return RPCError(.notFound, description)
        case .alreadyEnded: return RPCError(.failedPrecondition, description)
        case .storage, .invalidStoreURL: return RPCError(.internal, description)
        // The database is down or unreachable: retrying later (or on another daemon) may work.
        case .storeUnavailable: return RPCError(.unavailable, description)
        }
    }
}

extension PluginHostError: RPCStatusConvertible {
    public var rpcError: RPCError {
        switch self {
        case .notASharedLibrary, .missingSymbol, .incompatibleABI: return RPCError(.failedPrecondition, description)
        case .libraryNotFound, .instanceNotFound: return RPCError(.notFound, description)
        case .instanceExists: return RPCError(.alreadyExists, description)
        case .plugin(let status, _, _, _):
            // Plugins report CUREC_STATUS_* codes, which are gRPC's numbers (curec_plugin.h).
            let code = StatusCode(rawValue: Int(status)).flatMap { $0 == .ok ? nil : $0 } ?? .internal
            return RPCError(code, description)
        case .wrongKind, .invalidLibraryName: return RPCError(.invalidArgument, description)
        case .host: return RPCError(.internal, description)
        case .workerUnavailable: return RPCError(.unavailable, description)
        case .invalidBatching: return RPCError(.invalidArgument, description)
        case .batchingUnsupported: return RPCError(.failedPrecondition, description)
        case .queueFull: return RPCError(.resourceExhausted, description)
        case .deadlineExpiredInQueue: return RPCError(.deadlineExceeded, description)
        case .cancelledInQueue: return RPCError(.cancelled, description)
        }
    }
}

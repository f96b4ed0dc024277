/// A gRPC status code, as carried in the `grpc-status` trailer.
///
/// The raw values are the wire values defined by the gRPC protocol.
public enum StatusCode: Int, Sendable, Hashable, CustomStringConvertible {
    case ok = 0
    case cancelled = 1
    case unknown = 2
    case invalidArgument = 3
    case deadlineExceeded = 4
    case notFound = 5
    case alreadyExists = 6
    case permissionDenied = 7
    case resourceExhausted = 8
    case failedPrecondition = 9
    case aborted = 10
    case outOfRange = 11
    case unimplemented = 12
    case `internal` = 13
    case unavailable = 14
    case dataLoss = 15
    case unauthenticated = 16

    /// The decimal text of the code, as sent in `grpc-status` (no formatting per call).
    var wireValue: String { Self.wireValues[rawValue] }
    private static let wireValues = (0...16).map { String($0) }

    public var description: String {
        switch self {
        case .ok: return "OK"
        case .cancelled: return "CANCELLED"
        case .unknown: return "UNKNOWN"
        case .invalidArgument: return "INVALID_ARGUMENT"
        case .deadlineExceeded: return "DEADLINE_EXCEEDED"
        case .notFound: return "NOT_FOUND"
        case .alreadyExists: return "ALREADY_EXISTS"
        case .permissionDenied: return "PERMISSION_DENIED"
        case .resourceExhausted: return "RESOURCE_EXHAUSTED"
        case .failedPrecondition: return "FAILED_PRECONDITION"
        case .aborted: return "ABORTED"
        case .outOfRange: return "OUT_OF_RANGE"
        case .unimplemented: return "UNIMPLEMENTED"
        case .internal: return "INTERNAL"
        case .unavailable: return "UNAVAILABLE"
        case .dataLoss: return "DATA_LOSS"
        case .unauthenticated: return "UNAUTHENTICATED"
        }
    }
}

/// The outcome of a call: a code and a human-readable message.
public struct RPCStatus: Sendable, Hashable, CustomStringConvertible {
    /// The status code sent as `grpc-status`.
    public var code: StatusCode
    /// The message sent (percent-encoded) as `grpc-message`; empty means none.
    public var message: String

    /// Creates a status.
    public init(code: StatusCode, message: String = "") {
        self.code = code
        self.message = message
    }

    /// The status of a call that succeeded.
    public static let ok = RPCStatus(code: .ok)

    public var description: String {
        message.isEmpty ? code.description : "\(code): \(message)"
    }
}

/// An error that a handler throws to end its call with a specific status.
///
/// A handler may also throw an error that is ``RPCStatusConvertible``; any other error ends
/// the call with `UNKNOWN` and the error's description, and a `CancellationError` ends it
/// with `CANCELLED`.
public struct RPCError: Error, Sendable, CustomStringConvertible {
    /// The status the call ends with.
    public var status: RPCStatus
    /// Extra trailing metadata sent with the status.
    public var trailingMetadata: Metadata

    /// Creates an error with a code, a message a person can act on, and optional trailers.
    public init(_ code: StatusCode, _ message: String, trailingMetadata: Metadata = Metadata()) {
        self.status = RPCStatus(code: code, message: message)
        self.trailingMetadata = trailingMetadata
    }

    public var description: String { status.description }

    /// The error a call that failed with `error` ends with: `error` itself if it is an
    /// `RPCError`, its ``RPCStatusConvertible/rpcError``, CANCELLED for a
    /// `CancellationError`, else UNKNOWN with the error's description.
    public init(converting error: any Error) {
        switch error {
        case let rpcError as RPCError: self = rpcError
        case let convertible as any RPCStatusConvertible: self = convertible.rpcError
        case is CancellationError: self.init(.cancelled, "the call was cancelled")
        default: self.init(.unknown, "\(error)")
        }
    }
}

/// An error of a layer below the transport that knows the status it ends a call with.
///
/// A server declares these conformances in one place, so its handlers throw their domain
/// errors unchanged and every error reaches the client with the same code wherever it is
/// thrown.
public protocol RPCStatusConvertible: Error {
    /// The status (and trailers) a call that failed with this error ends with.
    var rpcError: RPCError { get }
}

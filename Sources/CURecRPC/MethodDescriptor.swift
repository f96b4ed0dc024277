import SwiftProtobuf

/// One method of a protobuf service: where it is routed and how its messages flow.
///
/// Descriptors are generated from the .proto files (`scripts/generate-protos`), never written
/// by hand: the router, reflection and clients all take them from the generated code.
public struct RPCMethodDescriptor: Sendable, Hashable, CustomStringConvertible {
    /// The fully-qualified service name, e.g. `curec.v1.JobService`.
    public let service: String
    /// The method name as in the .proto file, e.g. `Submit`.
    public let name: String
    /// The streaming shape.
    public let kind: RPCKind
    /// The fully-qualified protobuf name of the request message.
    public let requestType: String
    /// The fully-qualified protobuf name of the response message.
    public let responseType: String

    /// Creates a descriptor.
    public init(service: String, name: String, kind: RPCKind, requestType: String, responseType: String) {
        self.service = service
        self.name = name
        self.kind = kind
        self.requestType = requestType
        self.responseType = responseType
    }

    /// The HTTP/2 `:path` of a call, `/package.Service/Method`.
    public var path: String { "/\(service)/\(name)" }

    public var description: String { path }
}

/// A method with the Swift types of its messages, so registering a handler or calling the
/// method is checked by the compiler.
public struct RPCMethod<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>: Sendable {
    /// The untyped description of the method.
    public let descriptor: RPCMethodDescriptor

    /// Creates the method `service`/`name`; the message names come from the Swift types.
    public init(service: String, name: String, kind: RPCKind) {
        descriptor = RPCMethodDescriptor(
            service: service, name: name, kind: kind,
            requestType: Request.protoMessageName, responseType: Response.protoMessageName)
    }

    private init(descriptor: RPCMethodDescriptor) {
        self.descriptor = descriptor
    }

    /// The same method served under another service name, for services whose wire format is
    /// shared by two packages (`grpc.reflection.v1` and `v1alpha`): the messages are named in
    /// the other package too.
    public func served(as service: String) -> RPCMethod {
        func package(_ name: String) -> Substring { name[..<(name.lastIndex(of: ".") ?? name.startIndex)] }
        let (from, to) = (package(descriptor.service), package(service))
        func renamed(_ type: String) -> String {
            type.hasPrefix(from + ".") ? String(to + type.dropFirst(from.count)) : type
        }
        return RPCMethod(descriptor: RPCMethodDescriptor(
            service: service, name: descriptor.name, kind: descriptor.kind,
            requestType: renamed(descriptor.requestType), responseType: renamed(descriptor.responseType)))
    }

    /// The HTTP/2 `:path` of a call.
    public var path: String { descriptor.path }
}

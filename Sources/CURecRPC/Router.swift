import SwiftProtobuf

/// The four shapes of a gRPC method.
public enum RPCKind: Sendable {
    case unary, serverStreaming, clientStreaming, bidirectionalStreaming
}

/// A type-erased method implementation, as the connection layer runs it.
enum RouteHandler: Sendable {
    /// Runs synchronously on the I/O loop: only for handlers that never block.
    case inlineUnary(@Sendable (_ request: [UInt8], _ context: ServerContext) throws -> [UInt8])
    /// Runs as a task once the single request message has arrived.
    case unary(@Sendable (_ request: [UInt8], _ context: ServerContext) async throws -> [UInt8])
    /// Runs as a task once the single request message has arrived, streaming responses.
    case serverStreaming(@Sendable (_ request: [UInt8], _ context: ServerContext) async throws -> Void)
    /// Runs as a task from the request headers on, reading requests from the channel.
    case streamingRequests(@Sendable (_ context: ServerContext) async throws -> Void)
}

/// One registered method.
struct Route: Sendable {
    let path: String
    let kind: RPCKind
    let handler: RouteHandler
}

/// Maps `/package.Service/Method` paths to typed handlers.
///
/// Build a router, register services or single methods, then hand it to ``RPCServer``.
/// Registering the same path twice replaces the earlier handler.
public struct RPCRouter: Sendable {
    private(set) var routes: [String: Route] = [:]
    private(set) var services: Set<String> = []

    /// Creates an empty router.
    public init() {}

    /// The fully-qualified names of every service with at least one method.
    public var serviceNames: [String] { services.sorted() }

    /// Whether `path` has a handler.
    public func hasMethod(_ path: String) -> Bool { routes[path] != nil }

    func route(for path: String) -> Route? { routes[path] }

    private mutating func add(service: String, method: String, kind: RPCKind, handler: RouteHandler) {
        let path = "/\(service)/\(method)"
        routes[path] = Route(path: path, kind: kind, handler: handler)
        services.insert(service)
    }

    /// Registers a unary method whose handler runs inline on the I/O loop.
    ///
    /// Use this only for handlers that finish in microseconds and never block: they run on
    /// the thread that serves the connection, with no hop to another thread.
    public mutating func registerInlineUnary<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
        service: String, method: String,
        request: Request.Type = Request.self, response: Response.Type = Response.self,
        handler: @escaping @Sendable (Request, ServerContext) throws -> Response
    ) {
        add(service: service, method: method, kind: .unary, handler: .inlineUnary { bytes, context in
            let request = try MessageCoding.decode(Request.self, from: bytes)
            return try MessageCoding.encode(try handler(request, context))
        })
    }

    /// Registers a unary method whose handler runs as a task on the worker pool.
    public mutating func registerUnary<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
        service: String, method: String,
        request: Request.Type = Request.self, response: Response.Type = Response.self,
        handler: @escaping @Sendable (Request, ServerContext) async throws -> Response
    ) {
        add(service: service, method: method, kind: .unary, handler: .unary { bytes, context in
            let request = try MessageCoding.decode(Request.self, from: bytes)
            return try MessageCoding.encode(try await handler(request, context))
        })
    }

    /// Registers a server-streaming method.
    public mutating func registerServerStreaming<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
        service: String, method: String,
        request: Request.Type = Request.self, response: Response.Type = Response.self,
        handler: @escaping @Sendable (Request, ResponseWriter<Response>, ServerContext) async throws -> Void
    ) {
        add(service: service, method: method, kind: .serverStreaming, handler: .serverStreaming { bytes, context in
            let request = try MessageCoding.decode(Request.self, from: bytes)
            try await handler(request, ResponseWriter(channel: context.channel), context)
        })
    }

    /// Registers a client-streaming method.
    public mutating func registerClientStreaming<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
        service: String, method: String,
        request: Request.Type = Request.self, response: Response.Type = Response.self,
        handler: @escaping @Sendable (RequestStream<Request>, ServerContext) async throws -> Response
    ) {
        add(service: service, method: method, kind: .clientStreaming, handler: .streamingRequests { context in
            let response = try await handler(RequestStream(channel: context.channel), context)
            try await context.channel.send(framed: MessageFramer.frame(try MessageCoding.encode(response)))
        })
    }

    /// Registers a bidirectional-streaming method.
    public mutating func registerBidirectionalStreaming<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
        service: String, method: String,
        request: Request.Type = Request.self, response: Response.Type = Response.self,
        handler: @escaping @Sendable (RequestStream<Request>, ResponseWriter<Response>, ServerContext) async throws -> Void
    ) {
        add(service: service, method: method, kind: .bidirectionalStreaming, handler: .streamingRequests { context in
            try await handler(RequestStream(channel: context.channel), ResponseWriter(channel: context.channel), context)
        })
    }

    /// Registers every method of `service`.
    public mutating func register(_ service: some RPCService) {
        service.register(into: &self)
    }
}

/// A group of methods registered together, such as one protobuf service.
public protocol RPCService: Sendable {
    /// Adds this service's methods to `router`.
    func register(into router: inout RPCRouter)
}

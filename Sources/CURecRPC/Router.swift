import SwiftProtobuf

/// The four shapes of a gRPC method.
public enum RPCKind: Sendable, Hashable {
    case unary, serverStreaming, clientStreaming, bidirectionalStreaming
}

/// A type-erased method implementation, as the connection layer runs it.
enum RouteHandler: Sendable {
    /// Runs synchronously on the I/O loop: only for handlers that never block. A handler that
    /// returns nil declines to answer inline; the call then runs `deferred` as a task.
    case inlineUnary(@Sendable (_ request: [UInt8], _ context: ServerContext) throws -> [UInt8]?,
                     deferred: (@Sendable (_ request: [UInt8], _ context: ServerContext) async throws -> [UInt8])?)
    /// Runs synchronously on the I/O loop and answers now, later (its responder is called once,
    /// from any thread, while the loop serves other calls) or declines to `deferred`, a task.
    case inlineUnaryAnswering(@Sendable (_ request: [UInt8], _ context: ServerContext,
                                         _ respond: @escaping @Sendable (Result<[UInt8], any Error>) -> Void) throws -> InlineAnswer<[UInt8]>,
                              deferred: @Sendable (_ request: [UInt8], _ context: ServerContext) async throws -> [UInt8])
    /// Runs as a task once the single request message has arrived.
    case unary(@Sendable (_ request: [UInt8], _ context: ServerContext) async throws -> [UInt8])
    /// Runs as a task once the single request message has arrived, streaming responses.
    case serverStreaming(@Sendable (_ request: [UInt8], _ context: ServerContext) async throws -> Void)
    /// Runs as a task from the request headers on, reading requests from the channel.
    case streamingRequests(@Sendable (_ context: ServerContext) async throws -> Void)
}

/// How a handler registered with ``RPCRouter/registerInlineUnary(_:answering:deferred:)``
/// answers its call.
public enum InlineAnswer<Response: Sendable>: Sendable {
    /// The response, sent at once.
    case now(Response)
    /// The handler handed its responder to work that calls it exactly once, from any thread
    /// (for instance when another process answers); the loop serves other calls meanwhile.
    case later
    /// The call runs the registration's `deferred` handler as a task instead; the handler has
    /// started no work and will not call its responder.
    case declined
}

/// Completes a call whose handler answered ``InlineAnswer/later``: call it exactly once.
public typealias UnaryResponder<Response> = @Sendable (Result<Response, any Error>) -> Void

/// One registered method.
struct Route: Sendable {
    let method: RPCMethodDescriptor
    let handler: RouteHandler
    /// Where the server records this method's calls (set by the server when it has an observer).
    var recorder: (any RPCMethodRecorder)? = nil
    var kind: RPCKind { method.kind }
}

/// Routes calls to handlers by method descriptor.
///
/// Build a router, register services (normally through their generated handler protocols,
/// which register every method of the service), then hand it to ``RPCServer``. Registering
/// the same method twice replaces the earlier handler.
public struct RPCRouter: Sendable {
    /// The routes by `:path`, the key a call arrives with.
    private(set) var routes: [String: Route] = [:]

    /// Creates an empty router.
    public init() {}

    /// The descriptors of every routed method, ordered by path.
    public var methods: [RPCMethodDescriptor] { routes.values.map(\.method).sorted { $0.path < $1.path } }

    /// The fully-qualified names of every service with at least one routed method.
    public var serviceNames: [String] { Set(routes.values.map(\.method.service)).sorted() }

    /// Whether `method` has a handler.
    public func isRouted(_ method: RPCMethodDescriptor) -> Bool { routes[method.path]?.method == method }

    func route(for path: String) -> Route? { routes[path] }

    /// Whether some method of `service` is routed.
    func serves(service: String) -> Bool { routes.values.contains { $0.method.service == service } }

    /// Gives every route its recorder from `observer`.
    mutating func attach(_ observer: any RPCCallObserver) {
        for (path, route) in routes { routes[path]?.recorder = observer.recorder(for: route.method) }
    }

    private mutating func add(_ method: RPCMethodDescriptor, expecting kind: RPCKind, handler: RouteHandler) {
        precondition(method.kind == kind, "\(method) is \(method.kind), not \(kind)")
        routes[method.path] = Route(method: method, handler: handler)
    }

    /// Registers a unary method whose handler runs inline on the I/O loop.
    ///
    /// Use this only for handlers that finish in microseconds and never block: they run on
    /// the thread that serves the connection, with no hop to another thread.
    public mutating func registerInlineUnary<Request, Response>(
        _ method: RPCMethod<Request, Response>,
        handler: @escaping @Sendable (Request, ServerContext) throws -> Response
    ) {
        add(method.descriptor, expecting: .unary, handler: .inlineUnary({ bytes, context in
            let request = try MessageCoding.decode(Request.self, from: bytes)
            return try MessageCoding.encode(try handler(request, context))
        }, deferred: nil))
    }

    /// Registers a unary method that runs inline on the I/O loop when `handler` can answer at
    /// once, and as a task otherwise: `handler` returns nil to decline (it must not have
    /// started any work then) and `deferred` answers the call on the worker pool, for
    /// instance to wait in a queue. Deferring costs one more decoding of the request.
    public mutating func registerInlineUnary<Request, Response>(
        _ method: RPCMethod<Request, Response>,
        handler: @escaping @Sendable (Request, ServerContext) throws -> Response?,
        deferred: @escaping @Sendable (Request, ServerContext) async throws -> Response
    ) {
        add(method.descriptor, expecting: .unary, handler: .inlineUnary({ bytes, context in
            let request = try MessageCoding.decode(Request.self, from: bytes)
            return try handler(request, context).map { try MessageCoding.encode($0) }
        }, deferred: { bytes, context in
            let request = try MessageCoding.decode(Request.self, from: bytes)
            return try MessageCoding.encode(try await deferred(request, context))
        }))
    }

    /// Registers a unary method whose handler runs inline on the I/O loop and answers at
    /// once, later through its responder (when something else, such as another process,
    /// computes the response: the loop is not held meanwhile), or declines to `deferred`,
    /// which answers the call as a task. Declining costs one more decoding of the request.
    public mutating func registerInlineUnary<Request, Response>(
        _ method: RPCMethod<Request, Response>,
        answering handler: @escaping @Sendable (Request, ServerContext, @escaping UnaryResponder<Response>) throws -> InlineAnswer<Response>,
        deferred: @escaping @Sendable (Request, ServerContext) async throws -> Response
    ) {
        add(method.descriptor, expecting: .unary, handler: .inlineUnaryAnswering({ bytes, context, respond in
            let request = try MessageCoding.decode(Request.self, from: bytes)
            let answer = try handler(request, context) { result in
                respond(result.flatMap { response in Result { try MessageCoding.encode(response) } })
            }
            switch answer {
            case .now(let response): return .now(try MessageCoding.encode(response))
            case .later: return .later
            case .declined: return .declined
            }
        }, deferred: { bytes, context in
            let request = try MessageCoding.decode(Request.self, from: bytes)
            return try MessageCoding.encode(try await deferred(request, context))
        }))
    }

    /// Registers a unary method whose handler runs as a task on the worker pool.
    public mutating func registerUnary<Request, Response>(
        _ method: RPCMethod<Request, Response>,
        handler: @escaping @Sendable (Request, ServerContext) async throws -> Response
    ) {
        add(method.descriptor, expecting: .unary, handler: .unary { bytes, context in
            let request = try MessageCoding.decode(Request.self, from: bytes)
            return try MessageCoding.encode(try await handler(request, context))
        })
    }

    /// Registers a server-streaming method.
    public mutating func registerServerStreaming<Request, Response>(
        _ method: RPCMethod<Request, Response>,
        handler: @escaping @Sendable (Request, ResponseWriter<Response>, ServerContext) async throws -> Void
    ) {
        add(method.descriptor, expecting: .serverStreaming, handler: .serverStreaming { bytes, context in
            let request = try MessageCoding.decode(Request.self, from: bytes)
            try await handler(request, ResponseWriter(channel: context.channel), context)
        })
    }

    /// Registers a client-streaming method.
    public mutating func registerClientStreaming<Request, Response>(
        _ method: RPCMethod<Request, Response>,
        handler: @escaping @Sendable (RequestStream<Request>, ServerContext) async throws -> Response
    ) {
        add(method.descriptor, expecting: .clientStreaming, handler: .streamingRequests { context in
            let response = try await handler(RequestStream(channel: context.channel), context)
            try await context.channel.send(framed: MessageFramer.frame(try MessageCoding.encode(response)))
        })
    }

    /// Registers a bidirectional-streaming method.
    public mutating func registerBidirectionalStreaming<Request, Response>(
        _ method: RPCMethod<Request, Response>,
        handler: @escaping @Sendable (RequestStream<Request>, ResponseWriter<Response>, ServerContext) async throws -> Void
    ) {
        add(method.descriptor, expecting: .bidirectionalStreaming, handler: .streamingRequests { context in
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

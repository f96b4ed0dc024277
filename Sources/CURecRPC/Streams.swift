import SwiftProtobuf

/// The request messages of a client-streaming or bidirectional call, in order.
///
/// Iteration ends when the client half-closes; it throws ``RPCError`` if the call is
/// cancelled or a message does not decode.
public struct RequestStream<Request: SwiftProtobuf.Message>: AsyncSequence, Sendable {
    public typealias Element = Request
    let channel: CallChannel

    public struct AsyncIterator: AsyncIteratorProtocol {
        let channel: CallChannel

        public mutating func next() async throws -> Request? {
            guard let bytes = try await channel.receive() else { return nil }
            return try MessageCoding.decode(Request.self, from: bytes)
        }
    }

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(channel: channel)
    }
}

/// Sends the response messages of a streaming call.
///
/// `send` suspends while the peer is slow to read, so a streaming handler never buffers
/// without bound.
public struct ResponseWriter<Response: SwiftProtobuf.Message>: Sendable {
    let channel: CallChannel

    /// Sends one response message; throws ``RPCError`` if the call was cancelled.
    public func send(_ message: Response) async throws {
        let bytes = try MessageCoding.encode(message)
        try await channel.send(framed: MessageFramer.frame(bytes))
    }
}

/// Protobuf encoding and decoding with errors that become gRPC statuses.
enum MessageCoding {
    static func decode<M: SwiftProtobuf.Message>(_ type: M.Type, from bytes: [UInt8]) throws(RPCError) -> M {
        do {
            return try M(serializedBytes: bytes)
        } catch {
            throw RPCError(
                .internal,
                "could not parse the request as \(M.protoMessageName) (\(bytes.count) bytes): \(error)")
        }
    }

    static func encode<M: SwiftProtobuf.Message>(_ message: M) throws(RPCError) -> [UInt8] {
        do {
            return try message.serializedBytes()
        } catch {
            throw RPCError(.internal, "could not serialize the response \(M.protoMessageName): \(error)")
        }
    }
}

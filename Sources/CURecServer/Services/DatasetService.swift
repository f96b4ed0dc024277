import CURecProto
import CURecRPC
import Foundation

/// `curec.v1.DatasetService`: uploads of clients' chat datasets for `finetune` jobs.
///
/// An upload streams into a staging directory while every line is checked; it becomes a
/// version only when the stream ends cleanly and every line is a valid example. A bad line,
/// a message out of order, the size limit or a cancelled call leaves nothing behind.
struct DatasetService: RPCService {
    let datasets: DatasetStore
    /// Largest `chunk` in one message.
    static let maxChunkBytes = 1 << 20

    func register(into router: inout RPCRouter) {
        router.registerClientStreaming(Curec_V1_DatasetService.Method.upload) { requests, _ in
            var messages = requests.makeAsyncIterator()
            guard let first = try await messages.next() else {
                throw RPCError(.invalidArgument, "an upload starts with a header message naming the dataset")
            }
            guard case .header(let header) = first.part else {
                throw RPCError(.invalidArgument, "the first message of an upload must be the header naming the dataset")
            }
            let upload = try Self.mapped { () throws(DatasetError) in try datasets.beginUpload(header.name) }
            do {
                while let message = try await messages.next() {
                    guard case .chunk(let chunk) = message.part else {
                        throw RPCError(.invalidArgument, "only the first message of an upload may be a header")
                    }
                    guard chunk.count <= Self.maxChunkBytes else {
                        throw RPCError(.invalidArgument, "a chunk holds at most \(Self.maxChunkBytes) bytes")
                    }
                    try Self.mapped { () throws(DatasetError) in try upload.append(chunk) }
                }
                let version = try Self.mapped { () throws(DatasetError) in try upload.commit() }
                return Self.message(version)
            } catch {
                upload.discard()
                throw error
            }
        }
        router.registerUnary(Curec_V1_DatasetService.Method.list) { request, _ in
            let name: String? = request.name.isEmpty
                ? nil : try Self.mapped { () throws(DatasetError) in try DatasetStore.checkName(request.name) }
            let found = datasets.list(name: name)
            if let name, found.isEmpty { throw RPCError(.notFound, "no dataset named '\(name)'") }
            return .with { $0.datasets = found.map(Self.message) }
        }
    }

    static func message(_ version: DatasetStore.Version) -> Curec_V1_Dataset {
        .with {
            $0.name = version.name
            $0.version = version.version
            $0.examples = UInt64(version.examples)
            $0.bytes = UInt64(version.bytes)
            $0.createdUnixMs = version.createdUnixMilliseconds
        }
    }

    /// Runs `body`, turning a dataset error into its gRPC status.
    static func mapped<T>(_ body: () throws(DatasetError) -> T) throws(RPCError) -> T {
        do {
            return try body()
        } catch {
            throw RPCError(error)
        }
    }
}

extension RPCError {
    /// The gRPC status of a dataset failure.
    init(_ error: DatasetError) {
        switch error {
        case .invalidName, .invalidExample: self.init(.invalidArgument, error.description)
        case .tooLarge: self.init(.resourceExhausted, error.description)
        case .notFound: self.init(.notFound, error.description)
        case .storage: self.init(.internal, error.description)
        }
    }
}

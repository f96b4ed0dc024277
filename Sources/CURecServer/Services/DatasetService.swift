import CURecProto
import CURecRPC
import Foundation

/// `curec.v1.DatasetService` on the wire: each method forwards to ``DatasetOperations``.
struct DatasetService: Curec_V1_DatasetServiceHandler {
    let operations: DatasetOperations

    func upload(_ requests: RequestStream<Curec_V1_UploadDatasetRequest>, context: ServerContext) async throws -> Curec_V1_Dataset {
        try await operations.upload(requests)
    }

    func list(_ request: Curec_V1_ListDatasetsRequest, context: ServerContext) async throws -> Curec_V1_ListDatasetsResponse {
        try operations.list(request)
    }
}

/// Uploads of clients' chat datasets for `finetune` jobs, and their listing.
///
/// An upload streams into a staging directory while every line is checked; it becomes a
/// version only when the stream ends cleanly and every line is a valid example. A bad line,
/// a message out of order, the size limit or a cancelled call leaves nothing behind.
struct DatasetOperations: Sendable {
    let datasets: DatasetStore
    /// Largest `chunk` in one message.
    static let maxChunkBytes = 1 << 20

    /// Stores the upload `messages` carry: a header naming the dataset, then chunks of lines.
    func upload<Messages: AsyncSequence>(_ messages: Messages) async throws -> Curec_V1_Dataset
    where Messages.Element == Curec_V1_UploadDatasetRequest {
        var iterator = messages.makeAsyncIterator()
        guard let first = try await iterator.next() else {
            throw ServingError.invalidArgument("an upload starts with a header message naming the dataset")
        }
        guard case .header(let header) = first.part else {
            throw ServingError.invalidArgument("the first message of an upload must be the header naming the dataset")
        }
        let upload = try datasets.beginUpload(header.name)
        do {
            while let message = try await iterator.next() {
                guard case .chunk(let chunk) = message.part else {
                    throw ServingError.invalidArgument("only the first message of an upload may be a header")
                }
                guard chunk.count <= Self.maxChunkBytes else {
                    throw ServingError.invalidArgument("a chunk holds at most \(Self.maxChunkBytes) bytes")
                }
                try upload.append(chunk)
            }
            return Self.message(try upload.commit())
        } catch {
            upload.discard()
            throw error
        }
    }

    /// Every stored version, or those of `request.name`.
    func list(_ request: Curec_V1_ListDatasetsRequest) throws -> Curec_V1_ListDatasetsResponse {
        let name: String? = request.name.isEmpty ? nil : try DatasetStore.checkName(request.name)
        let found = datasets.list(name: name)
        if let name, found.isEmpty { throw ServingError.notFound("no dataset named '\(name)'") }
        return .with { $0.datasets = found.map(Self.message) }
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
}

import CURecRPCProtos
import Foundation
import SwiftProtobuf

/// `grpc.reflection.v1.ServerReflection` (and the same protocol under `v1alpha`): lets
/// tools discover the services a server offers and fetch their descriptors.
///
/// The service answers from serialized `FileDescriptorSet`s given at creation and lists
/// the services of the method descriptors it is given (normally every routed method), each
/// of which must be described by those sets.
public final class ReflectionService: Grpc_Reflection_V1_ServerReflectionHandler {
    private let filesByName: [String: Google_Protobuf_FileDescriptorProto]
    private let serializedFiles: [String: Data]
    private let fileBySymbol: [String: String]
    private let extensionsByType: [String: [(number: Int32, file: String)]]
    private let serviceNames: [String]

    /// Why descriptor sets could not be loaded.
    public struct LoadError: Error, CustomStringConvertible {
        public let description: String
    }

    /// Creates the service.
    ///
    /// - Parameters:
    ///   - descriptorSets: serialized `google.protobuf.FileDescriptorSet`s covering every
    ///     served service and their imports.
    ///   - methods: the methods served (normally `router.methods`); their services are listed.
    /// - Throws: ``LoadError`` when a set does not parse, or a served method is not in the sets
    ///   with the same request and response types.
    public init(descriptorSets: [Data], methods: [RPCMethodDescriptor]) throws(LoadError) {
        var filesByName: [String: Google_Protobuf_FileDescriptorProto] = [:]
        var serializedFiles: [String: Data] = [:]
        var fileBySymbol: [String: String] = [:]
        var extensionsByType: [String: [(Int32, String)]] = [:]
        for data in descriptorSets {
            let set: Google_Protobuf_FileDescriptorSet
            do {
                set = try Google_Protobuf_FileDescriptorSet(serializedBytes: data)
            } catch {
                throw LoadError(description: "a descriptor set does not parse: \(error)")
            }
            for file in set.file where filesByName[file.name] == nil {
                filesByName[file.name] = file
                do {
                    serializedFiles[file.name] = try file.serializedBytes()
                } catch {
                    throw LoadError(description: "\(file.name) does not serialize: \(error)")
                }
                let prefix = file.package.isEmpty ? "" : file.package + "."
                func index(message: Google_Protobuf_DescriptorProto, scope: String) {
                    let name = scope + message.name
                    fileBySymbol[name] = file.name
                    for nested in message.nestedType { index(message: nested, scope: name + ".") }
                    for nestedEnum in message.enumType { fileBySymbol[name + "." + nestedEnum.name] = file.name }
                    for field in message.extension {
                        extensionsByType[Self.trimDot(field.extendee), default: []].append((field.number, file.name))
                    }
                }
                for message in file.messageType { index(message: message, scope: prefix) }
                for enumType in file.enumType { fileBySymbol[prefix + enumType.name] = file.name }
                for service in file.service {
                    fileBySymbol[prefix + service.name] = file.name
                    for method in service.method { fileBySymbol[prefix + service.name + "." + method.name] = file.name }
                }
                for field in file.extension {
                    fileBySymbol[prefix + field.name] = file.name
                    extensionsByType[Self.trimDot(field.extendee), default: []].append((field.number, file.name))
                }
            }
        }
        self.filesByName = filesByName
        self.serializedFiles = serializedFiles
        self.fileBySymbol = fileBySymbol
        self.extensionsByType = extensionsByType
        let served = methods + Self.ownMethods.map(\.descriptor)
        for method in served {
            try Self.check(method, in: filesByName)
        }
        self.serviceNames = Set(served.map(\.service)).sorted()
    }

    /// The descriptor set of the standard protos (health, reflection, testing).
    public static var standardDescriptorSet: Data {
        Data(base64Encoded: standardDescriptorSetBase64, options: .ignoreUnknownCharacters) ?? Data()
    }

    private static func trimDot(_ name: String) -> String {
        name.hasPrefix(".") ? String(name.dropFirst()) : name
    }

    /// The reflection method under both names it is served by: `v1alpha` has the same messages
    /// on the wire as `v1`.
    static let ownMethods = [
        Grpc_Reflection_V1_ServerReflection.Method.serverReflectionInfo,
        Grpc_Reflection_V1_ServerReflection.Method.serverReflectionInfo.served(as: "grpc.reflection.v1alpha.ServerReflection"),
    ]

    /// The descriptors of the reflection methods this service routes (`v1` and `v1alpha`).
    public static var servedMethods: [RPCMethodDescriptor] { ownMethods.map(\.descriptor) }

    /// Checks that `method` is described in `files` with the same message types.
    private static func check(
        _ method: RPCMethodDescriptor, in files: [String: Google_Protobuf_FileDescriptorProto]
    ) throws(LoadError) {
        for file in files.values {
            let prefix = file.package.isEmpty ? "" : file.package + "."
            for service in file.service where prefix + service.name == method.service {
                guard let described = service.method.first(where: { $0.name == method.name }) else { continue }
                guard trimDot(described.inputType) == method.requestType,
                      trimDot(described.outputType) == method.responseType else {
                    throw LoadError(description: "\(method.path) takes \(method.requestType) and returns \(method.responseType), but its descriptor says \(trimDot(described.inputType)) and \(trimDot(described.outputType))")
                }
                return
            }
        }
        throw LoadError(description: "\(method.path) is served but no descriptor set describes it")
    }

    /// Routes `ServerReflectionInfo` under `v1` and `v1alpha`.
    public func register(into router: inout RPCRouter) {
        for method in Self.ownMethods {
            router.registerBidirectionalStreaming(method) { [self] requests, responses, context in
                try await self.serverReflectionInfo(requests, responses: responses, context: context)
            }
        }
    }

    /// `ServerReflectionInfo`: answers each request of the stream in turn.
    public func serverReflectionInfo(
        _ requests: RequestStream<Grpc_Reflection_V1_ServerReflectionRequest>,
        responses: ResponseWriter<Grpc_Reflection_V1_ServerReflectionResponse>, context: ServerContext
    ) async throws {
        for try await request in requests {
            try await responses.send(answer(request))
        }
    }

    /// Answers one reflection request.
    func answer(_ request: Grpc_Reflection_V1_ServerReflectionRequest) -> Grpc_Reflection_V1_ServerReflectionResponse {
        var response = Grpc_Reflection_V1_ServerReflectionResponse()
        response.validHost = request.host
        response.originalRequest = request
        switch request.messageRequest {
        case .listServices?:
            response.listServicesResponse = .with { list in
                list.service = serviceNames.map { name in .with { $0.name = name } }
            }
        case .fileByFilename(let name)?:
            if filesByName[name] != nil {
                response.fileDescriptorResponse = .with { $0.fileDescriptorProto = filesWithDependencies(of: name) }
            } else {
                response.errorResponse = notFound("no file named '\(name)' is known to this server")
            }
        case .fileContainingSymbol(let symbol)?:
            let trimmed = Self.trimDot(symbol)
            if let file = fileBySymbol[trimmed] {
                response.fileDescriptorResponse = .with { $0.fileDescriptorProto = filesWithDependencies(of: file) }
            } else {
                response.errorResponse = notFound("no symbol named '\(trimmed)' is known to this server")
            }
        case .fileContainingExtension(let request)?:
            let type = Self.trimDot(request.containingType)
            if let match = extensionsByType[type]?.first(where: { $0.number == request.extensionNumber }) {
                response.fileDescriptorResponse = .with { $0.fileDescriptorProto = filesWithDependencies(of: match.file) }
            } else {
                response.errorResponse = notFound("no extension \(request.extensionNumber) of '\(type)' is known")
            }
        case .allExtensionNumbersOfType(let type)?:
            let trimmed = Self.trimDot(type)
            if fileBySymbol[trimmed] != nil {
                response.allExtensionNumbersResponse = .with {
                    $0.baseTypeName = trimmed
                    $0.extensionNumber = (extensionsByType[trimmed] ?? []).map(\.number)
                }
            } else {
                response.errorResponse = notFound("no message type named '\(trimmed)' is known to this server")
            }
        case nil:
            response.errorResponse = .with {
                $0.errorCode = Int32(StatusCode.invalidArgument.rawValue)
                $0.errorMessage = "the reflection request names no question (set one of its message_request fields)"
            }
        }
        return response
    }

    private func notFound(_ message: String) -> Grpc_Reflection_V1_ErrorResponse {
        .with {
            $0.errorCode = Int32(StatusCode.notFound.rawValue)
            $0.errorMessage = message
        }
    }

    /// The serialized file and everything it imports, the file itself first.
    private func filesWithDependencies(of name: String) -> [Data] {
        var ordered: [String] = []
        var seen: Set<String> = []
        var pending = [name]
        while let next = pending.popLast() {
            guard seen.insert(next).inserted, let file = filesByName[next] else { continue }
            ordered.append(next)
            pending.append(contentsOf: file.dependency.reversed())
        }
        return ordered.compactMap { serializedFiles[$0] }
    }
}

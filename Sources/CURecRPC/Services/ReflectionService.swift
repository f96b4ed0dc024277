import CURecRPCProtos
import Foundation
import SwiftProtobuf

/// `grpc.reflection.v1.ServerReflection` (and the same protocol under `v1alpha`): lets
/// tools discover the services a server offers and fetch their descriptors.
///
/// The service answers from serialized `FileDescriptorSet`s given at creation and lists
/// the services actually registered on the router it is given.
public final class ReflectionService: RPCService {
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
    ///   - services: the fully-qualified names to list (normally `router.serviceNames`).
    public init(descriptorSets: [Data], services: [String]) throws {
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
                serializedFiles[file.name] = try file.serializedBytes()
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
        var listed = Set(services)
        listed.insert("grpc.reflection.v1.ServerReflection")
        listed.insert("grpc.reflection.v1alpha.ServerReflection")
        self.serviceNames = listed.sorted()
    }

    /// The descriptor set of the standard protos (health, reflection, testing).
    public static var standardDescriptorSet: Data {
        Data(base64Encoded: standardDescriptorSetBase64, options: .ignoreUnknownCharacters) ?? Data()
    }

    private static func trimDot(_ name: String) -> String {
        name.hasPrefix(".") ? String(name.dropFirst()) : name
    }

    public func register(into router: inout RPCRouter) {
        for service in ["grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"] {
            router.registerBidirectionalStreaming(
                service: service, method: "ServerReflectionInfo",
                request: Grpc_Reflection_V1_ServerReflectionRequest.self,
                response: Grpc_Reflection_V1_ServerReflectionResponse.self
            ) { [self] requests, writer, _ in
                for try await request in requests {
                    try await writer.send(self.answer(request))
                }
            }
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

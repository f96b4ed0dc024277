import CURecRPCProtos
import Foundation
import SwiftProtobuf
import Testing
@testable import CURecRPC

@Suite struct ReflectionServiceTests {
    private let service: ReflectionService

    init() throws {
        service = try ReflectionService(
            descriptorSets: [ReflectionService.standardDescriptorSet],
            methods: Grpc_Health_V1_Health.methods + Grpc_Testing_TestService.methods)
    }

    private func ask(_ body: (inout Grpc_Reflection_V1_ServerReflectionRequest) -> Void) -> Grpc_Reflection_V1_ServerReflectionResponse {
        var request = Grpc_Reflection_V1_ServerReflectionRequest()
        body(&request)
        return service.answer(request)
    }

    @Test func listsRegisteredServicesAndItself() {
        let response = ask { $0.listServices = "" }
        let names = response.listServicesResponse.service.map(\.name)
        #expect(names.contains("grpc.health.v1.Health"))
        #expect(names.contains("grpc.testing.TestService"))
        #expect(names.contains("grpc.reflection.v1.ServerReflection"))
    }

    @Test func findsTheFileOfAServiceMethodWithItsImports() throws {
        let response = ask { $0.fileContainingSymbol = "grpc.testing.TestService.UnaryCall" }
        let files = try response.fileDescriptorResponse.fileDescriptorProto.map {
            try Google_Protobuf_FileDescriptorProto(serializedBytes: $0)
        }
        #expect(files.first?.name == "grpc/testing/test.proto")
        #expect(Set(files.map(\.name)).isSuperset(of: ["grpc/testing/messages.proto", "grpc/testing/empty.proto"]))
    }

    @Test func findsNestedMessagesAndFilesByName() {
        let nested = ask { $0.fileContainingSymbol = ".grpc.health.v1.HealthCheckResponse.ServingStatus" }
        #expect(nested.fileDescriptorResponse.fileDescriptorProto.count == 1)
        let byName = ask { $0.fileByFilename = "grpc/health/v1/health.proto" }
        #expect(byName.fileDescriptorResponse.fileDescriptorProto.count == 1)
    }

    @Test func unknownNamesAreNotFound() {
        let symbol = ask { $0.fileContainingSymbol = "no.such.Symbol" }
        #expect(symbol.errorResponse.errorCode == Int32(StatusCode.notFound.rawValue))
        #expect(symbol.errorResponse.errorMessage.contains("no.such.Symbol"))
        let file = ask { $0.fileByFilename = "missing.proto" }
        #expect(file.errorResponse.errorCode == Int32(StatusCode.notFound.rawValue))
    }

    @Test func refusesToServeMethodsNoDescriptorDescribes() {
        let unknown = RPCMethod<Grpc_Testing_Empty, Grpc_Testing_Empty>(service: "x.v1.Missing", name: "Call", kind: .unary)
        #expect(throws: ReflectionService.LoadError.self) {
            _ = try ReflectionService(descriptorSets: [ReflectionService.standardDescriptorSet], methods: [unknown.descriptor])
        }
        let mistyped = RPCMethod<Grpc_Testing_Empty, Grpc_Testing_Empty>(
            service: "grpc.testing.TestService", name: "UnaryCall", kind: .unary)
        #expect(throws: ReflectionService.LoadError.self) {
            _ = try ReflectionService(descriptorSets: [ReflectionService.standardDescriptorSet], methods: [mistyped.descriptor])
        }
    }

    @Test func servesV1AlphaWithTheSameMessagesInItsOwnPackage() {
        let alias = ReflectionService.ownMethods[1].descriptor
        #expect(alias.path == "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo")
        #expect(alias.requestType == "grpc.reflection.v1alpha.ServerReflectionRequest")
        #expect(alias.responseType == "grpc.reflection.v1alpha.ServerReflectionResponse")
    }
}

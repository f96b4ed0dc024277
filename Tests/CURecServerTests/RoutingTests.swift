import CURecProto
import CURecRPC
import CURecRPCProtos
import Foundation
import Logging
import SwiftProtobuf
import Testing
@testable import CURecServer

/// Every method of every service in the committed descriptor sets is routed by the daemon,
/// with the message types the protos give it, whatever the daemon could load.
@Suite struct RoutingTests {
    /// A daemon on an empty data directory: no dataset, no plugins, no models.
    static func bareDaemon(interop: Bool = false) throws -> Daemon {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("curec-routing-\(UUID().uuidString)").path
        var options = DaemonOptions()
        options.configuration.data_dir = directory
        options.configuration.dataset_dir = (directory as NSString).appendingPathComponent("no-dataset")
        options.configuration.plugins = []
        options.configuration.pipeline_on_start = "off"
        options.configuration.listen = "127.0.0.1:0"
        options.configuration.enable_interop_testing = interop
        return try Daemon(options: options, logger: Logger(label: "routing-test"))
    }

    /// `service.method` → (request, response) for every method of the named services in `set`
    /// (all services when `services` is nil).
    static func methods(inDescriptorSet base64: String, services: Set<String>? = nil) throws -> [String: (String, String)] {
        let data = try #require(Data(base64Encoded: base64, options: .ignoreUnknownCharacters))
        let set = try Google_Protobuf_FileDescriptorSet(serializedBytes: data)
        var methods: [String: (String, String)] = [:]
        for file in set.file {
            for service in file.service {
                let name = file.package + "." + service.name
                guard services?.contains(name) ?? true else { continue }
                for method in service.method {
                    methods["/\(name)/\(method.name)"] = (String(method.inputType.dropFirst()), String(method.outputType.dropFirst()))
                }
            }
        }
        return methods
    }

    static func routed(_ daemon: Daemon) -> [String: (String, String)] {
        Dictionary(uniqueKeysWithValues: daemon.routedMethods.map { ($0.path, ($0.requestType, $0.responseType)) })
    }

    @Test func routesEveryMethodOfEveryCURecProto() throws {
        let daemon = try Self.bareDaemon()
        let routed = Self.routed(daemon)
        let expected = try Self.methods(inDescriptorSet: curecDescriptorSetBase64)
        #expect(expected.count >= 18)
        for (path, types) in expected.sorted(by: { $0.key < $1.key }) {
            let served = try #require(routed[path], "\(path) is not routed")
            #expect(served == types, "\(path) is routed with \(served), the proto says \(types)")
        }
    }

    @Test func routesHealthAndReflectionUnderBothNames() throws {
        let daemon = try Self.bareDaemon()
        let routed = Self.routed(daemon)
        let expected = try Self.methods(
            inDescriptorSet: standardDescriptorSetBase64,
            services: ["grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"])
        #expect(expected.count == 4)
        for (path, types) in expected {
            let served = try #require(routed[path], "\(path) is not routed")
            #expect(served == types)
        }
        #expect(routed.keys.allSatisfy { !$0.hasPrefix("/grpc.testing.") })
    }

    @Test func routesTheInteropServiceOnlyWhenAskedTo() throws {
        let daemon = try Self.bareDaemon(interop: true)
        let routed = Self.routed(daemon)
        let expected = try Self.methods(inDescriptorSet: standardDescriptorSetBase64, services: ["grpc.testing.TestService"])
        #expect(expected.count == 8)
        for (path, types) in expected {
            let served = try #require(routed[path], "\(path) is not routed")
            #expect(served == types)
        }
    }

    /// With no dataset the recommendation services answer, and say what is missing; health
    /// says they are not serving.
    @Test func servicesWithoutADatasetFailWithAPrecondition() throws {
        let daemon = try Self.bareDaemon()
        #expect(daemon.health.status(of: Curec_V1_RecommendService.name) == .notServing)
        #expect(daemon.health.status(of: Curec_V1_RewardService.name) == .notServing)
        #expect(daemon.health.status(of: Curec_V1_JobService.name) == .serving)
        #expect(daemon.health.status(of: "") == .serving)
        let service = RecommendService(operations: nil)
        let error = try #require(throws: ServingError.self) {
            _ = try ServingError.requireDataset(service.operations)
        }
        #expect(RPCError(converting: error).status.code == .failedPrecondition)
    }
}

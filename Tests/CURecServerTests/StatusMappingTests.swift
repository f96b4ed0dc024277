import CURecJobs
import CURecPluginHost
import CURecRPC
import Foundation
import Testing
@testable import CURecServer

/// The daemon's errors reach clients with one status each, wherever they are thrown.
@Suite struct StatusMappingTests {
    private func code(_ error: any Error) -> StatusCode { RPCError(converting: error).status.code }

    @Test func servingErrorsKeepTheirMeaning() {
        #expect(code(ServingError.invalidArgument("x")) == .invalidArgument)
        #expect(code(ServingError.notFound("x")) == .notFound)
        #expect(code(ServingError.failedPrecondition("x")) == .failedPrecondition)
        #expect(code(ServingError.resourceExhausted("x")) == .resourceExhausted)
        #expect(code(ServingError.deadlineExceeded("x")) == .deadlineExceeded)
        #expect(code(ServingError.internalFailure("x")) == .internal)
        #expect(RPCError(converting: ServingError.notFound("no job 'j'")).status.message == "no job 'j'")
    }

    @Test func jobErrors() {
        #expect(code(JobError.unknownKind("x", known: ["a"])) == .invalidArgument)
        #expect(code(JobError.invalidParameter("x")) == .invalidArgument)
        #expect(code(JobError.queueFull(limit: 2)) == .resourceExhausted)
        #expect(code(JobError.notFound("j")) == .notFound)
        #expect(code(JobError.alreadyEnded(id: "j", state: .succeeded)) == .failedPrecondition)
        #expect(code(JobError.storage("disk")) == .internal)
    }

    @Test func pluginHostErrors() {
        #expect(code(PluginHostError.missingSymbol(path: "p", symbol: "s")) == .failedPrecondition)
        #expect(code(PluginHostError.instanceNotFound("bpr")) == .notFound)
        #expect(code(PluginHostError.instanceExists("bpr")) == .alreadyExists)
        #expect(code(PluginHostError.wrongKind(instance: "r", expected: "recommender", actual: "reward model")) == .invalidArgument)
        #expect(code(PluginHostError.host("copy failed")) == .internal)
        // A plugin's own code is gRPC's; OK or an unknown number is an internal failure.
        #expect(code(PluginHostError.plugin(code: 3, message: "m", function: "f", instance: "i")) == .invalidArgument)
        #expect(code(PluginHostError.plugin(code: 0, message: "m", function: "f", instance: "i")) == .internal)
        #expect(code(PluginHostError.plugin(code: 99, message: "m", function: "f", instance: "i")) == .internal)
        #expect(PluginHostError.plugin(code: 1, message: "m", function: "f", instance: "i").isCancellation)
        #expect(!PluginHostError.plugin(code: 13, message: "m", function: "f", instance: "i").isCancellation)
    }

    @Test func storeErrors() {
        #expect(code(DatasetError.invalidName) == .invalidArgument)
        #expect(code(DatasetError.tooLarge(limit: 10)) == .resourceExhausted)
        #expect(code(DatasetError.notFound("d")) == .notFound)
        #expect(code(DatasetError.storage("disk")) == .internal)
        #expect(code(ChatModelError.invalidName) == .invalidArgument)
        #expect(code(ChatModelError.notFound("m")) == .notFound)
        #expect(code(ChatModelError.unavailable("m")) == .unavailable)
    }

    @Test func foreignErrorsBecomeInternalFailures() {
        let foreign = CocoaError(.fileWriteUnknown)
        #expect(code(ServingError.classified(foreign)) == .internal)
        #expect(code(ServingError.classified(JobError.notFound("j"))) == .notFound)
        #expect(code(ServingError.classified(CancellationError())) == .cancelled)
        #expect(code(ServingError.classified(RPCError(.aborted, "a"))) == .aborted)
    }
}

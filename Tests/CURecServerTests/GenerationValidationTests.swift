import CURecProto
import CURecRPC
import Foundation
import Testing
@testable import CURecServer

/// The request checks of Generate and GenerateReason, which run before any model is loaded.
@Suite struct GenerationValidationTests {
    private func code(_ body: () throws -> Void) -> StatusCode? {
        do {
            try body()
            return nil
        } catch {
            return RPCError(converting: error).status.code
        }
    }

    @Test func samplingOptionsAreBounded() throws {
        let defaults = try ReasonStreaming.options(.init())
        #expect(defaults.temperature == 0.8)
        #expect(defaults.topK == 40)
        #expect(code { _ = try ReasonStreaming.options(.with { $0.maxTokens = 513 }) } == .invalidArgument)
        #expect(code { _ = try ReasonStreaming.options(.with { $0.temperature = .nan }) } == .invalidArgument)
        #expect(code { _ = try ReasonStreaming.options(.with { $0.topP = 0 }) } == .invalidArgument)
        #expect(code { _ = try ReasonStreaming.options(.with { $0.repetitionPenalty = 3 }) } == .invalidArgument)
    }

    @Test func generateNeedsAConversationOrAPrompt() throws {
        #expect(code { _ = try TextGeneration.input(.init()) } == .invalidArgument)
        #expect(code { _ = try TextGeneration.input(.with { $0.prompt = "" }) } == .invalidArgument)
        #expect(code { _ = try TextGeneration.input(.with { $0.chat = .init() }) } == .invalidArgument)
        #expect(code {
            _ = try TextGeneration.input(.with { $0.chat.messages = [.with { $0.role = .unspecified; $0.content = "x" }] })
        } == .invalidArgument)
        guard case .chat(let messages) = try TextGeneration.input(.with {
            $0.chat.messages = [.with { $0.role = .user; $0.content = "Hi" }]
        }) else {
            Issue.record("a conversation should stay a conversation")
            return
        }
        #expect(messages.count == 1)
    }

    @Test func stopStringsAreFewAndShort() throws {
        #expect(try TextGeneration.stopStrings(["\n\n"]) == ["\n\n"])
        #expect(code { _ = try TextGeneration.stopStrings(["a", "b", "c", "d", "e"]) } == .invalidArgument)
        #expect(code { _ = try TextGeneration.stopStrings([""]) } == .invalidArgument)
        #expect(code { _ = try TextGeneration.stopStrings([String(repeating: "x", count: 65)]) } == .invalidArgument)
    }

    @Test func anUnknownChatModelIsNotFound() async throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("curec-gen-\(UUID().uuidString)").path
        let generation = TextGeneration(models: ChatModelStore(basePath: root + "/missing.gguf", artifacts: ArtifactStore(root: root)))
        var sent = 0
        do {
            try await generation.generate(.with { $0.prompt = "Hi"; $0.model = "no-such-model" }, shouldStop: { false }) { _ in sent += 1 }
            Issue.record("generation with an unknown model should fail")
        } catch {
            #expect(RPCError(converting: error).status.code == .notFound)
        }
        #expect(sent == 0)
    }

    @Test func utf8PrefixesEndOnCharacterBoundaries() {
        let text = Array("né€".utf8)
        #expect(ReasonStreaming.completeUTF8Prefix(text) == text)
        #expect(ReasonStreaming.completeUTF8Prefix(Array(text.dropLast())) == Array("né".utf8))
        #expect(ReasonStreaming.completeUTF8Prefix(Array(text.prefix(2))) == Array("n".utf8))
    }
}

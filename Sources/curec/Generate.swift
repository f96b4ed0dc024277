import ArgumentParser
import CURecProto
import CURecRPC
import Foundation

/// `curec generate`: text from a served language model (GenerationService.Generate).
struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Generate text with a served language model, streamed to stdout as it is written.",
        discussion: """
            The input is a conversation (the model writes the next assistant turn): --system \
            first, then each --message in order, then --user. Or a raw --prompt, tokenized as \
            given. The text goes to stdout as it arrives; the finish reason and the token counts \
            go to stderr (with --json: every streamed message as a JSON line instead).

            The model is smollm2 (SmolLM2-135M-Instruct, the pretrained base) unless --model \
            names one a finetune job published (curec jobs submit finetune dataset=NAME output=MODEL).

            Examples:
              curec generate --user "Recommend a film for a rainy day." --max-tokens 64
              curec generate --system "You answer briefly." --message user:Hi --message assistant:Hello. --user "A film?"
              curec generate --prompt "Once upon a time" --temperature 0 --stop "."
            """)
    @OptionGroup var global: GlobalOptions
    @Option(help: "Raw prompt text, instead of a conversation.") var prompt: String?
    @Option(help: "The system turn (first).") var system: String?
    @Option(name: .customLong("message"),
            help: ArgumentHelp("A turn as ROLE:CONTENT (ROLE system, user or assistant); repeatable, in order.",
                               valueName: "role:content"))
    var messages: [String] = []
    @Option(help: "The user turn (last).") var user: String?
    @Option(help: "Model name (default: smollm2).") var model = ""
    @Option(help: "Model version, e.g. v2 (default: the newest).") var version = ""
    @Option(help: "End when the text ends with this (repeatable, at most 4); the stop text is not printed.")
    var stop: [String] = []
    @Option(help: "Sampling temperature; 0 is greedy (default 0.8).") var temperature: Float?
    @Option(help: "Sample from the k likeliest tokens; 0 disables (default 40).") var topK: Int32?
    @Option(help: "Nucleus sampling threshold; 1 disables (default 0.95).") var topP: Float?
    @Option(help: "At most this many tokens, 1 to 512 (default 192).") var maxTokens: Int32 = 0
    @Option(help: "Sampling seed; the same request and seed give the same text.") var seed: UInt64 = 0
    @Option(help: "Penalty for repeating generated tokens, 1 to 2; 1 disables (the default).") var repetitionPenalty: Float?

    func validate() throws {
        let conversation = system != nil || user != nil || !messages.isEmpty
        if prompt != nil && conversation {
            throw ValidationError("give --prompt or a conversation (--system, --message, --user), not both")
        }
        if prompt == nil && !conversation {
            throw ValidationError("give --user (and optionally --system and --message turns) or --prompt")
        }
        for message in messages { _ = try Self.parse(message: message) }
    }

    /// Parses `ROLE:CONTENT`.
    static func parse(message: String) throws -> Curec_V1_ChatMessage {
        guard let colon = message.firstIndex(of: ":") else {
            throw ValidationError("--message '\(message)' is not ROLE:CONTENT (ROLE system, user or assistant)")
        }
        let role: Curec_V1_ChatRole
        switch message[..<colon].trimmingCharacters(in: .whitespaces).lowercased() {
        case "system": role = .system
        case "user": role = .user
        case "assistant": role = .assistant
        default:
            throw ValidationError("--message '\(message)': the role must be system, user or assistant")
        }
        return Curec_V1_ChatMessage.with {
            $0.role = role
            $0.content = String(message[message.index(after: colon)...])
        }
    }

    func request() throws -> Curec_V1_GenerateRequest {
        var request = Curec_V1_GenerateRequest()
        if let prompt {
            request.prompt = prompt
        } else {
            var turns: [Curec_V1_ChatMessage] = []
            if let system { turns.append(.with { $0.role = .system; $0.content = system }) }
            for message in messages { turns.append(try Self.parse(message: message)) }
            if let user { turns.append(.with { $0.role = .user; $0.content = user }) }
            request.chat = .with { $0.messages = turns }
        }
        request.model = model
        request.version = version
        request.stop = stop
        request.sampling = .with {
            if let temperature { $0.temperature = temperature }
            if let topK { $0.topK = topK }
            if let topP { $0.topP = topP }
            if let repetitionPenalty { $0.repetitionPenalty = repetitionPenalty }
            $0.maxTokens = maxTokens
            $0.seed = seed
        }
        return request
    }

    func run() throws {
        let request = try request()
        let client = try global.client()
        var final: Curec_V1_GenerateResponse? = nil
        var printed = false
        var endsWithNewline = false
        // Ends the text's line before anything goes to stderr, also when the stream broke off.
        func endLine() {
            if printed && !endsWithNewline { FileHandle.standardOutput.write(Data("\n".utf8)) }
            endsWithNewline = true
        }
        try CURec.run {
            defer { endLine() }
            try Curec_V1_GenerationServiceClient(client).generate(request, timeout: max(global.timeout, 300)) {
                (message: Curec_V1_GenerateResponse) in
                if global.json { printJSON(message) }
                if message.final {
                    final = message
                } else if !global.json, !message.text.isEmpty {
                    FileHandle.standardOutput.write(Data(message.text.utf8))
                    printed = true
                    endsWithNewline = message.text.hasSuffix("\n")
                }
            }
            guard final != nil else {
                throw RPCError(.internal, "the generation stream ended without its final message")
            }
        }
        guard let final, !global.json else { return }
        FileHandle.standardError.write(Data((
            "finish=\(final.finishReason.name) prompt_tokens=\(final.promptTokens) "
                + "completion_tokens=\(final.completionTokens) model=\(final.modelVersion)\n").utf8))
    }
}

extension Curec_V1_FinishReason {
    /// The lower-case reason used in CLI output: stop, length or context.
    var name: String {
        switch self {
        case .stop: return "stop"
        case .length: return "length"
        case .context: return "context"
        default: return "unspecified"
        }
    }
}

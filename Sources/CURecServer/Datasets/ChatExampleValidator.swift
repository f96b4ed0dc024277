import Foundation

/// One turn of a chat example as stored in a dataset file.
public struct ChatExampleTurn: Sendable, Equatable, Codable {
    /// `system`, `user` or `assistant`.
    public var role: String
    public var content: String

    public init(role: String, content: String) {
        self.role = role
        self.content = content
    }
}

/// One line of a chat dataset: `{"messages": [{"role": ..., "content": ...}, ...]}`.
public struct ChatExample: Sendable, Equatable, Codable {
    public var messages: [ChatExampleTurn]

    public init(messages: [ChatExampleTurn]) {
        self.messages = messages
    }
}

/// Why a line of a chat dataset is not a usable example. The line number is 1-based.
public struct ChatExampleError: Error, Sendable, Equatable, CustomStringConvertible {
    public var line: Int
    public var problem: String

    public var description: String { "line \(line): \(problem)" }
}

/// Checks a chat JSON Lines file as its bytes arrive, one complete line at a time, without
/// holding more than one line in memory.
///
/// A valid example has a `messages` array of 2 to ``maxTurns`` turns, each with a `role` of
/// `system`, `user` or `assistant` and a non-empty string `content`; a system turn may only
/// come first; at least one user turn; the last turn is the assistant's (it is what a
/// fine-tuned model learns to write). Empty lines are ignored. Unknown keys are refused, so a
/// misspelled field is noticed.
public struct ChatExampleValidator: Sendable {
    /// Longest accepted line, bytes.
    public static let maxLineBytes = 1 << 20
    /// Most turns in one example.
    public static let maxTurns = 64

    /// Examples seen so far.
    public private(set) var examples = 0
    /// Lines seen so far (including empty ones).
    public private(set) var lines = 0
    private var pending: [UInt8] = []

    public init() {}

    /// Feeds the next bytes of the file; checks every line they complete.
    public mutating func consume(_ bytes: some Collection<UInt8>) throws(ChatExampleError) {
        var start = bytes.startIndex
        var index = start
        while index != bytes.endIndex {
            if bytes[index] == UInt8(ascii: "\n") {
                pending.append(contentsOf: bytes[start..<index])
                try finishLine()
                start = bytes.index(after: index)
            }
            index = bytes.index(after: index)
        }
        pending.append(contentsOf: bytes[start..<bytes.endIndex])
        if pending.count > Self.maxLineBytes {
            throw ChatExampleError(line: lines + 1, problem: "the line is longer than \(Self.maxLineBytes) bytes")
        }
    }

    /// Checks a last line without a newline and that the file held at least one example.
    public mutating func finish() throws(ChatExampleError) {
        if !pending.isEmpty { try finishLine() }
        guard examples > 0 else {
            throw ChatExampleError(line: max(lines, 1), problem: "the file holds no examples")
        }
    }

    private mutating func finishLine() throws(ChatExampleError) {
        lines += 1
        defer { pending.removeAll(keepingCapacity: true) }
        if pending.allSatisfy({ $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") || $0 == UInt8(ascii: "\r") }) { return }
        do {
            _ = try Self.parse(pending)
        } catch {
            throw ChatExampleError(line: lines, problem: error.problem)
        }
        examples += 1
    }

    /// Parses and checks one line (without its newline).
    public static func parse(_ line: [UInt8]) throws(ChatExampleError) -> ChatExample {
        guard String(validating: line, as: UTF8.self) != nil else {
            throw ChatExampleError(line: 0, problem: "the line is not valid UTF-8")
        }
        let object: Any
        do {
            object = try JSONSerialization.jsonObject(with: Data(line), options: [])
        } catch {
            throw ChatExampleError(line: 0, problem: "the line is not valid JSON")
        }
        guard let root = object as? [String: Any] else {
            throw ChatExampleError(line: 0, problem: "the line must be a JSON object with a \"messages\" array")
        }
        if let unknown = root.keys.first(where: { $0 != "messages" }) {
            throw ChatExampleError(line: 0, problem: "unknown key \"\(shortened(unknown))\" (only \"messages\" is allowed)")
        }
        guard let turns = root["messages"] as? [Any] else {
            throw ChatExampleError(line: 0, problem: "\"messages\" must be an array of turns")
        }
        guard turns.count >= 2, turns.count <= maxTurns else {
            throw ChatExampleError(line: 0, problem: "an example needs 2 to \(maxTurns) turns, this one has \(turns.count)")
        }
        var messages: [ChatExampleTurn] = []
        for (index, value) in turns.enumerated() {
            guard let turn = value as? [String: Any] else {
                throw ChatExampleError(line: 0, problem: "turn \(index + 1) must be an object with \"role\" and \"content\"")
            }
            if let unknown = turn.keys.first(where: { $0 != "role" && $0 != "content" }) {
                throw ChatExampleError(line: 0, problem: "turn \(index + 1) has an unknown key \"\(shortened(unknown))\"")
            }
            guard let role = turn["role"] as? String, ["system", "user", "assistant"].contains(role) else {
                throw ChatExampleError(line: 0, problem: "turn \(index + 1): \"role\" must be \"system\", \"user\" or \"assistant\"")
            }
            guard let content = turn["content"] as? String, !content.isEmpty else {
                throw ChatExampleError(line: 0, problem: "turn \(index + 1): \"content\" must be a non-empty string")
            }
            if role == "system" && index != 0 {
                throw ChatExampleError(line: 0, problem: "turn \(index + 1): a system turn may only come first")
            }
            messages.append(ChatExampleTurn(role: role, content: content))
        }
        guard messages.contains(where: { $0.role == "user" }) else {
            throw ChatExampleError(line: 0, problem: "an example needs at least one user turn")
        }
        guard messages.last?.role == "assistant" else {
            throw ChatExampleError(line: 0, problem: "the last turn must be the assistant's (the text the model learns to write)")
        }
        return ChatExample(messages: messages)
    }

    private static func shortened(_ text: String) -> String {
        text.count <= 32 ? text : String(text.prefix(32)) + "…"
    }
}

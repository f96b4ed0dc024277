/// One message of a conversation with an instruction-tuned language model.
public struct ChatMessage: Sendable, Hashable, Codable {
    /// Who speaks.
    public enum Role: String, Sendable, Hashable, Codable, CaseIterable {
        /// Instructions that frame the conversation.
        case system
        /// The person talking to the model.
        case user
        /// The model.
        case assistant
    }

    /// Who speaks.
    public var role: Role
    /// What is said, used verbatim.
    public var content: String

    /// A message from its parts.
    public init(role: Role, content: String) {
        self.role = role
        self.content = content
    }

    /// A system message.
    public static func system(_ content: String) -> ChatMessage { ChatMessage(role: .system, content: content) }
    /// A user message.
    public static func user(_ content: String) -> ChatMessage { ChatMessage(role: .user, content: content) }
    /// An assistant message.
    public static func assistant(_ content: String) -> ChatMessage { ChatMessage(role: .assistant, content: content) }
}

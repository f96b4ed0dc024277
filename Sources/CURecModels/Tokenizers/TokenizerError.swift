/// Why a tokenizer could not be built, loaded, saved or trained.
public enum TokenizerError: Error, Sendable, Equatable, CustomStringConvertible {
    /// A file could not be read or written.
    case io(path: String, reason: String)
    /// A vocabulary, merges or tokenizer.json file is malformed; `line` is 1-based where known.
    case invalidFile(path: String, line: Int?, reason: String)
    /// The vocabulary lacks a token the tokenizer needs (e.g. `[UNK]`, a merge result).
    case missingToken(String)
    /// A configuration value is out of range or inconsistent.
    case invalidConfiguration(String)
    /// Token ids outside the vocabulary were given to `decode`.
    case unknownTokenID(Int)
    /// The description asks for something not implemented (a tokenizer model, a pre-tokenizer,
    /// a chat template) or lacks something needed (e.g. a chat template to render with).
    case unsupported(String)

    public var description: String {
        switch self {
        case let .io(path, reason):
            return "tokenizer file \(path): \(reason)"
        case let .invalidFile(path, line, reason):
            if let line { return "tokenizer file \(path), line \(line): \(reason)" }
            return "tokenizer file \(path): \(reason)"
        case let .missingToken(token):
            return "tokenizer vocabulary has no token '\(token)'"
        case let .invalidConfiguration(reason):
            return "invalid tokenizer configuration: \(reason)"
        case let .unknownTokenID(id):
            return "token id \(id) is not in the vocabulary"
        case let .unsupported(reason):
            return "unsupported tokenizer: \(reason)"
        }
    }
}

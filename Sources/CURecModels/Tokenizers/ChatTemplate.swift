/// How a conversation is written as a model's prompt.
///
/// Models ship their chat template as Jinja source (`tokenizer.chat_template`). There is no
/// Jinja interpreter here: ``init(jinja:)`` recognises the template families below and
/// refuses any other template, so a prompt is never rendered differently from the model's
/// own template.
public enum ChatTemplate: Sendable, Equatable {
    /// ChatML. Each message is `<|im_start|>` role `\n` content `<|im_end|>\n`; a generation
    /// prompt is `<|im_start|>assistant\n`. With a default system prompt (SmolLM2's template),
    /// a non-empty conversation whose first message is not a system message is preceded by
    /// `<|im_start|>system\n` prompt `<|im_end|>\n`.
    case chatML(defaultSystemPrompt: String?)

    /// Recognises the family of a Jinja chat template (whitespace inside tags and the quoting
    /// of string literals do not matter; text outside tags does). Throws
    /// ``TokenizerError/unsupported(_:)`` for any other template.
    public init(jinja source: String) throws(TokenizerError) {
        guard let canonical = JinjaCanonicalForm.canonical(source) else {
            throw .unsupported("chat template uses Jinja syntax outside the recognised templates (comments, whitespace control or unknown escapes)")
        }
        if canonical == Self.plainChatML {
            self = .chatML(defaultSystemPrompt: nil)
            return
        }
        let (prefix, suffix) = Self.chatMLWithDefaultSystem
        if canonical.count >= prefix.count + suffix.count, canonical.starts(with: prefix),
            canonical.suffix(suffix.count).elementsEqual(suffix),
            let prompt = JinjaCanonicalForm.literalContent(canonical[prefix.count..<(canonical.count - suffix.count)])
        {
            self = .chatML(defaultSystemPrompt: prompt)
            return
        }
        throw .unsupported("chat template not recognised (only ChatML templates are): \(source.prefix(160))")
    }

    /// The prompt text of `messages`; with `addingGenerationPrompt` it ends where the
    /// assistant's reply begins.
    public func render(_ messages: [ChatMessage], addingGenerationPrompt: Bool) -> String {
        switch self {
        case .chatML(let defaultSystemPrompt):
            var text = ""
            if let defaultSystemPrompt, let first = messages.first, first.role != .system {
                text += "<|im_start|>system\n" + defaultSystemPrompt + "<|im_end|>\n"
            }
            for message in messages {
                text += "<|im_start|>" + message.role.rawValue + "\n" + message.content + "<|im_end|>\n"
            }
            if addingGenerationPrompt { text += "<|im_start|>assistant\n" }
            return text
        }
    }

    /// The token that ends a message (ChatML: `<|im_end|>`).
    public var endOfTurnToken: String {
        switch self {
        case .chatML: return "<|im_end|>"
        }
    }

    /// Tokens the template writes, which the vocabulary must have as special tokens.
    public var markerTokens: [String] {
        switch self {
        case .chatML: return ["<|im_start|>", "<|im_end|>"]
        }
    }

    // MARK: Recognised templates

    /// The common ChatML template, without a default system message.
    private static let plainChatML: [Unicode.Scalar] = canonicalShape(
        "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
    )

    /// ChatML with a default system message (SmolLM2), split where the prompt text goes.
    private static let chatMLWithDefaultSystem: ([Unicode.Scalar], [Unicode.Scalar]) = {
        let shape = canonicalShape(
            "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n\u{1}<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
        )
        let parts = shape.split(separator: "\u{1}", omittingEmptySubsequences: false)
        return (Array(parts.first ?? []), Array(parts.last ?? []))
    }()

    private static func canonicalShape(_ source: String) -> [Unicode.Scalar] {
        // The shapes above are valid; an empty form would only make recognition fail.
        JinjaCanonicalForm.canonical(source) ?? []
    }
}

/// Jinja source reduced to what decides its output for template comparison: text outside
/// tags is kept as is; inside `{{ }}` and `{% %}` whitespace is dropped and each string
/// literal is rewritten in single quotes with its escapes resolved (then only `\` and `'`
/// escaped). Templates with comments, whitespace control (`{%-`, `-%}`) or escapes other than
/// `\n \t \r \\ \' \"` have no canonical form.
enum JinjaCanonicalForm {
    static func canonical(_ source: String) -> [Unicode.Scalar]? {
        let s = Array(source.unicodeScalars)
        var out: [Unicode.Scalar] = []
        var i = 0
        while i < s.count {
            guard s[i] == "{", i + 1 < s.count, s[i + 1] == "{" || s[i + 1] == "%" || s[i + 1] == "#" else {
                out.append(s[i])
                i += 1
                continue
            }
            let opener = s[i + 1]
            guard opener != "#" else { return nil }
            let closer: Unicode.Scalar = opener == "{" ? "}" : "%"
            i += 2
            if i < s.count, s[i] == "-" || s[i] == "+" { return nil }
            out.append("{")
            out.append(opener)
            var closed = false
            while i < s.count {
                let c = s[i]
                if c == closer, i + 1 < s.count, s[i + 1] == "}" {
                    if let last = out.last, last == "-" || last == "+" { return nil }
                    out.append(closer)
                    out.append("}")
                    i += 2
                    closed = true
                    break
                }
                if c == "'" || c == "\"" {
                    guard let (content, end) = stringLiteral(s, from: i) else { return nil }
                    out.append("'")
                    for scalar in content {
                        if scalar == "\\" || scalar == "'" { out.append("\\") }
                        out.append(scalar)
                    }
                    out.append("'")
                    i = end
                    continue
                }
                if !c.properties.isWhitespace { out.append(c) }
                i += 1
            }
            if !closed { return nil }
        }
        return out
    }

    /// The decoded content of the string literal opening at `start` and the index after it.
    private static func stringLiteral(_ s: [Unicode.Scalar], from start: Int) -> ([Unicode.Scalar], Int)? {
        let quote = s[start]
        var content: [Unicode.Scalar] = []
        var i = start + 1
        while i < s.count {
            let c = s[i]
            if c == quote { return (content, i + 1) }
            if c == "\\" {
                guard i + 1 < s.count else { return nil }
                switch s[i + 1] {
                case "n": content.append("\n")
                case "t": content.append("\t")
                case "r": content.append("\r")
                case "\\", "'", "\"": content.append(s[i + 1])
                default: return nil
                }
                i += 2
            } else {
                content.append(c)
                i += 1
            }
        }
        return nil
    }

    /// The text of a stretch of a canonical literal (between its quotes or inside it), or nil
    /// when the stretch leaves the literal (an unescaped `'`).
    static func literalContent(_ canonical: ArraySlice<Unicode.Scalar>) -> String? {
        var out = String.UnicodeScalarView()
        var escaped = false
        for scalar in canonical {
            if escaped {
                out.append(scalar)
                escaped = false
            } else if scalar == "\\" {
                escaped = true
            } else if scalar == "'" {
                return nil
            } else {
                out.append(scalar)
            }
        }
        return escaped ? nil : String(out)
    }
}

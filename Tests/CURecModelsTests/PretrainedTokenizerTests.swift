import CURecTensor
import Foundation
import Testing

@testable import CURecModels

/// SmolLM2's chat template, as `tokenizer.chat_template` holds it.
private let smolLM2Template =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"

/// A small byte-level description: every byte, a few merges, ChatML control tokens.
private func smallDescription(
    model: String = "gpt2", pre: String? = "smollm", template: String? = smolLM2Template
) -> PretrainedTokenizerDescription {
    let specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    var tokens = specials + ByteLevelAlphabet.scalarForByte.map { String(Character($0)) }
    let merges = ["Ġ Ġ", "h i", "Ġ hi"]
    tokens += ["ĠĠ", "hi", "Ġhi"]
    var types = [Int32](repeating: 1, count: tokens.count)
    for i in 0..<specials.count { types[i] = 3 }
    return PretrainedTokenizerDescription(
        model: model, preTokenizer: pre, tokens: tokens, merges: merges, tokenTypes: types,
        bosTokenID: 1, eosTokenID: 2, unknownTokenID: 0, paddingTokenID: 2, chatTemplate: template)
}

private func scalars(_ text: String) -> [UInt32] {
    text.unicodeScalars.map(\.value)
}

@Suite("Pretrained tokenizer")
struct PretrainedTokenizerTests {
    @Test("individual digits: number scalars stand alone, GPT-2's split runs between them")
    func individualDigits() {
        let digits = BPEPreTokenization.gpt2IndividualDigits
        #expect(digits.split("a  1") == ["a", "  ", "1"])
        #expect(BPEPreTokenization.gpt2.split("a  1") == ["a", " ", " 1"])
        #expect(digits.split("Se7en 1,682") == ["Se", "7", "en", " ", "1", ",", "6", "8", "2"])
        #expect(digits.split("x² ½Ⅻ") == ["x", "²", " ", "½", "Ⅻ"])
        #expect(digits.split("it's 3's") == ["it", "'s", " ", "3", "'s"])
        #expect(digits.split("") == [])
    }

    @Test("special tokens are single ids only when allowed; missing bytes are dropped")
    func specialTokens() throws {
        let tokenizer = try PretrainedTokenizer(smallDescription())
        let text = "<|im_start|>hi  hi<|im_end|>"
        let ids = tokenizer.encode(text)
        #expect(ids.first == 1 && ids.last == 2)
        #expect(try tokenizer.decode(ids) == text)
        #expect(try tokenizer.decode(ids, skippingSpecialTokens: true) == "hi  hi")
        let plain = tokenizer.encode(text, allowingSpecialTokens: false)
        #expect(!plain.contains(1) && !plain.contains(2))
        #expect(try tokenizer.decode(plain) == text)
        #expect(tokenizer.encode("hi", addingBOSToken: true) == [1, tokenizer.bpe.id(of: "hi")!])
        #expect(tokenizer.endOfTurnTokenIDs == [2, 0])
        #expect(tokenizer.endOfTurnStopSequences == [[2], [0]])

        // Canonically equivalent pieces keep their own bytes (no mix-up through a cache).
        for text in ["\u{2003}", "\u{2001}", ";", "\u{37E}", "\u{2001}"] {
            #expect(try scalars(tokenizer.decode(tokenizer.encode(text))) == scalars(text))
        }

        var lacking = smallDescription()
        // Drop the byte 0x04 ('Ą' in the byte alphabet) from the vocabulary.
        lacking.tokens[3 + 4] = "<unused>"
        lacking.tokenTypes?[3 + 4] = 5
        let dropping = try PretrainedTokenizer(lacking)
        #expect(try dropping.decode(dropping.encode("a\u{4}b")) == "ab")
    }

    @Test("a tokenizer.json with Digits before ByteLevel keeps its pre-tokenization through save and load")
    func tokenizerJSONWithDigits() throws {
        let bpe = try PretrainedTokenizer(smallDescription()).bpe
        let path = NSTemporaryDirectory() + "digits-\(UUID().uuidString).json"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try bpe.saveTokenizerJSON(path: path)
        let loaded = try BPETokenizer.load(tokenizerJSONPath: path)
        #expect(loaded.preTokenization == .gpt2IndividualDigits)
        #expect(loaded.encode("<|im_start|>a  12 hi") == bpe.encode("<|im_start|>a  12 hi"))
    }

    @Test("unsupported models, pre-tokenizers and templates are refused with a reason")
    func refusals() {
        #expect(throws: TokenizerError.self) { try PretrainedTokenizer(smallDescription(model: "llama")) }
        #expect(throws: TokenizerError.self) { try PretrainedTokenizer(smallDescription(pre: "qwen2")) }
        #expect(throws: TokenizerError.self) { try PretrainedTokenizer(smallDescription(pre: nil)) }
        #expect(throws: TokenizerError.self) {
            try PretrainedTokenizer(smallDescription(template: "{% for m in messages %}{{ m['content'] }}{% endfor %}"))
        }
        do {
            _ = try ChatTemplate(jinja: "{{ bos_token }}{% for message in messages %}{{ message['content'] }}{% endfor %}")
            Issue.record("an unknown template was accepted")
        } catch {
            #expect(error.description.contains("not recognised"))
        }
        let noTemplate = try? PretrainedTokenizer(smallDescription(template: nil))
        #expect(throws: TokenizerError.self) { try noTemplate?.prompt(for: [.user("x")]) }
    }

    @Test("ChatML templates are recognised through whitespace and quoting, not text changes")
    func chatTemplateRecognition() throws {
        let smol = try ChatTemplate(jinja: smolLM2Template)
        #expect(smol == .chatML(defaultSystemPrompt: "You are a helpful AI assistant named SmolLM, trained by Hugging Face"))
        let respaced = smolLM2Template.replacingOccurrences(of: "{{'", with: "{{  \"")
            .replacingOccurrences(of: "' + message['role']", with: "\" + message[ 'role' ]")
        #expect(try ChatTemplate(jinja: respaced) == smol)
        let escaped = smolLM2Template.replacingOccurrences(of: "system\n", with: "system\\n")
        #expect(try ChatTemplate(jinja: escaped) == smol)
        let quoted = smolLM2Template.replacingOccurrences(of: "named SmolLM", with: "named \\'Smol\\'")
        #expect(try ChatTemplate(jinja: quoted) == .chatML(defaultSystemPrompt: "You are a helpful AI assistant named 'Smol', trained by Hugging Face"))
        let plain = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
        #expect(try ChatTemplate(jinja: plain) == .chatML(defaultSystemPrompt: nil))
        for changed in [
            plain + "\n",
            plain.replacingOccurrences(of: "{% endfor %}", with: "{%- endfor %}"),
            plain.replacingOccurrences(of: "assistant\n'", with: "assistant'"),
            "{# ChatML #}" + plain,
        ] {
            #expect(throws: TokenizerError.self) { try ChatTemplate(jinja: changed) }
        }
    }

    @Test("ChatML rendering: default system message, later system messages, generation prompt")
    func chatRendering() {
        let smol = ChatTemplate.chatML(defaultSystemPrompt: "Be kind.")
        #expect(smol.render([.user("Hi")], addingGenerationPrompt: true)
            == "<|im_start|>system\nBe kind.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
        #expect(smol.render([.system("Terse."), .user("Hi"), .assistant("Yo")], addingGenerationPrompt: false)
            == "<|im_start|>system\nTerse.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nYo<|im_end|>\n")
        #expect(smol.render([], addingGenerationPrompt: true) == "<|im_start|>assistant\n")
        #expect(ChatTemplate.chatML(defaultSystemPrompt: nil).render([.user("a")], addingGenerationPrompt: false)
            == "<|im_start|>user\na<|im_end|>\n")
    }

    @Test("SmolLM2: ids of varied texts match the reference, and decode inverts encode")
    func smolLM2Reference() throws {
        guard SmolLM2Assets.available else { return }
        let reference = try SmolLM2TokenizerReference.load()
        let description = try SmolLM2Assets.tokenizerDescription()
        #expect(description.model == "gpt2" && description.preTokenizer == "smollm")
        #expect(description.tokens.count == 49152 && description.merges.count == 48900)
        #expect(description.tokenTypes?.filter { $0 == VocabularyTokenType.control.rawValue }.count == 17)
        let tokenizer = try PretrainedTokenizer(gguf: GGUFFile.read(path: SmolLM2Assets.modelPath))
        #expect(tokenizer.vocabularySize == 49152)
        #expect(tokenizer.bpe.specialTokens.count == 17 && tokenizer.bpe.preTokenization == .gpt2IndividualDigits)
        #expect(tokenizer.bosTokenID == reference.bos_token_id && tokenizer.eosTokenID == reference.eos_token_id)
        #expect(!tokenizer.addsBOSToken)
        #expect(tokenizer.endOfTurnTokenIDs == [2, 0])
        #expect(reference.cases.count >= 20)
        for item in reference.cases {
            // Texts are compared by scalars: `==` on strings is canonical equivalence.
            let ids = tokenizer.encode(item.text)
            #expect(ids == item.ids, "\(item.text.debugDescription)")
            #expect(try scalars(tokenizer.decode(ids)) == scalars(item.decoded), "\(item.text.debugDescription)")
            if !item.text.unicodeScalars.contains("\u{4}") {
                #expect(scalars(item.decoded) == scalars(item.text))
            }
            let plain = tokenizer.encode(item.text, allowingSpecialTokens: false)
            #expect(plain == (item.ids_without_special_tokens ?? item.ids), "\(item.text.debugDescription)")
            #expect(try scalars(tokenizer.decode(plain)) == scalars(item.decoded))
        }
    }

    @Test("SmolLM2: chat prompts and their ids match apply_chat_template")
    func smolLM2Chats() throws {
        guard SmolLM2Assets.available else { return }
        let reference = try SmolLM2TokenizerReference.load()
        let tokenizer = try PretrainedTokenizer(SmolLM2Assets.tokenizerDescription())
        #expect(tokenizer.chatTemplate == .chatML(defaultSystemPrompt: "You are a helpful AI assistant named SmolLM, trained by Hugging Face"))
        for chat in reference.chats {
            let messages = try chat.messages.map { message in
                guard let role = ChatMessage.Role(rawValue: message.role) else { throw TokenizerError.unsupported(message.role) }
                return ChatMessage(role: role, content: message.content)
            }
            #expect(try tokenizer.prompt(for: messages, addingGenerationPrompt: chat.add_generation_prompt) == chat.text)
            #expect(try tokenizer.encode(conversation: messages, addingGenerationPrompt: chat.add_generation_prompt) == chat.ids)
        }
    }
}

import Foundation

/// What a text parameter must look like beyond being text, e.g. a plain name.
public struct JobParameterTextRule: Sendable {
    /// Completes "parameter 'x' must ...", e.g. "be a plain name (no '/', not starting with '.')".
    public let requirement: String
    /// How the docs name text that follows the rule, e.g. "name".
    public let typeName: String
    let holds: @Sendable (String) -> Bool

    public init(_ requirement: String, typeName: String = "name", holds: @escaping @Sendable (String) -> Bool) {
        self.requirement = requirement
        self.typeName = typeName
        self.holds = holds
    }
}

/// A parameter's type as clients write it (every parameter travels as text).
public enum JobParameterType: Sendable {
    case text(JobParameterTextRule?)
    case integer(ClosedRange<Int>)
    case number(ClosedRange<Double>)
    case boolean
    /// One of these words.
    case choice([String])
    /// Comma-separated integers, each in the range.
    case integerList(ClosedRange<Int>)
    /// Comma-separated words among these (repeats dropped, order kept).
    case choiceList([String])

    /// The most values a list parameter takes.
    public static let maximumListLength = 16

    /// How the docs and the CLI help name the type.
    public var documentation: String {
        switch self {
        case .text(let rule): return rule?.typeName ?? "text"
        case .integer(let range): return "integer \(Self.text(range))"
        case .number(let range): return "number \(Self.text(range))"
        case .boolean: return "`true` or `false`"
        case .choice(let words):
            let quoted = words.map { "`\($0)`" }
            return quoted.count <= 2 ? quoted.joined(separator: " or ") : "one of " + quoted.joined(separator: ", ")
        case .integerList(let range): return "integers \(Self.text(range)), comma-separated, at most \(Self.maximumListLength)"
        case .choiceList(let words): return "comma-separated among " + words.map { "`\($0)`" }.joined(separator: ", ")
        }
    }

    static func text(_ range: ClosedRange<Int>) -> String {
        range.upperBound == Int.max ? ">= \(range.lowerBound)" : "\(range.lowerBound)...\(range.upperBound)"
    }

    static func text(_ range: ClosedRange<Double>) -> String { "\(number(range.lowerBound))...\(number(range.upperBound))" }

    static func number(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e15 ? String(Int(value)) : String(value)
    }

    static func words(_ words: [String]) -> String {
        words.count <= 2 ? words.joined(separator: " or ") : "one of " + words.joined(separator: ", ")
    }
}

/// A parsed parameter value.
public enum JobParameterValue: Sendable, Equatable {
    case text(String)
    case integer(Int)
    case number(Double)
    case boolean(Bool)
    case integers([Int])
    case texts([String])
}

/// One parameter of a job kind, declared once: name, type, default, documentation.
public struct JobParameterDescriptor: Sendable {
    public let name: String
    public let type: JobParameterType
    /// True when a submission must give it.
    public let isRequired: Bool
    /// The default as the docs print it (nil: required, or no value means "none").
    public let defaultText: String?
    /// One line for the docs and the CLI help.
    public let doc: String

    /// Reads `text` as this parameter's type, or says what is wrong (naming the parameter).
    func parse(_ text: String) -> Result<JobParameterValue, ParameterProblem> {
        let given = ParameterProblem.quoted(text)
        func problem(_ requirement: String) -> Result<JobParameterValue, ParameterProblem> {
            .failure(ParameterProblem("parameter '\(name)' must \(requirement), not \(given)"))
        }
        switch type {
        case .text(let rule):
            if let rule, !rule.holds(text) { return problem(rule.requirement) }
            return .success(.text(text))
        case .integer(let range):
            guard let value = Int(text.trimmingCharacters(in: .whitespaces)), range.contains(value) else {
                return problem("be an integer in \(JobParameterType.text(range))")
            }
            return .success(.integer(value))
        case .number(let range):
            guard let value = Double(text.trimmingCharacters(in: .whitespaces)), value.isFinite, range.contains(value) else {
                return problem("be a number in \(JobParameterType.text(range))")
            }
            return .success(.number(value))
        case .boolean:
            guard text == "true" || text == "false" else { return problem("be true or false") }
            return .success(.boolean(text == "true"))
        case .choice(let words):
            guard words.contains(text) else { return problem("be \(JobParameterType.words(words))") }
            return .success(.text(text))
        case .integerList(let range):
            var values: [Int] = []
            let parts = text.split(separator: ",", omittingEmptySubsequences: false)
            guard parts.count <= JobParameterType.maximumListLength else {
                return problem("list at most \(JobParameterType.maximumListLength) integers")
            }
            for part in parts {
                guard let value = Int(part.trimmingCharacters(in: .whitespaces)), range.contains(value) else {
                    return problem("be comma-separated integers in \(JobParameterType.text(range))")
                }
                values.append(value)
            }
            return .success(.integers(values))
        case .choiceList(let words):
            var chosen: [String] = []
            for part in text.split(separator: ",", omittingEmptySubsequences: false) {
                let word = part.trimmingCharacters(in: .whitespaces)
                guard words.contains(word) else {
                    return problem("be a comma-separated list among \(words.joined(separator: ", "))")
                }
                if !chosen.contains(word) { chosen.append(word) }
            }
            return .success(.texts(chosen))
        }
    }
}

/// What is wrong with one parameter.
struct ParameterProblem: Error {
    let message: String
    init(_ message: String) { self.message = message }

    /// Client text in a message: quoted, at most 32 characters.
    static func quoted(_ text: String) -> String {
        "'" + (text.count <= 32 ? text : String(text.prefix(32)) + "…") + "'"
    }
}

/// A parameter of any value type, for a schema's list.
public protocol AnyJobParameter: Sendable {
    var descriptor: JobParameterDescriptor { get }
}

/// A typed handle on a declared parameter: `values[parameter]` is its value, the default
/// when it was not given.
public struct JobParameter<Value: Sendable>: AnyJobParameter {
    public let descriptor: JobParameterDescriptor
    let read: @Sendable (JobParameterValue?) -> Value

    public var name: String { descriptor.name }
}

extension JobParameter where Value == String {
    /// Text a submission must give (not empty).
    public static func required(_ name: String, rule: JobParameterTextRule? = nil, doc: String) -> Self {
        Self(descriptor: .init(name: name, type: .text(rule), isRequired: true, defaultText: nil, doc: doc)) { value in
            if case .text(let text)? = value { return text }
            return ""
        }
    }

    /// Optional text with a default.
    public static func text(_ name: String, default value: String, rule: JobParameterTextRule? = nil, doc: String) -> Self {
        Self(descriptor: .init(name: name, type: .text(rule), isRequired: false,
                               defaultText: value.isEmpty ? "empty" : "`\(value)`", doc: doc)) { parsed in
            if case .text(let text)? = parsed { return text }
            return value
        }
    }

    /// One of `choices`.
    public static func choice(_ name: String, _ choices: [String], default value: String, doc: String) -> Self {
        Self(descriptor: .init(name: name, type: .choice(choices), isRequired: false, defaultText: "`\(value)`", doc: doc)) { parsed in
            if case .text(let text)? = parsed { return text }
            return value
        }
    }
}

extension JobParameter where Value == String? {
    /// Optional text whose absence the job resolves (`defaultText` says how, for the docs).
    public static func optionalText(_ name: String, rule: JobParameterTextRule? = nil, defaultText: String, doc: String) -> Self {
        Self(descriptor: .init(name: name, type: .text(rule), isRequired: false, defaultText: defaultText, doc: doc)) { parsed in
            if case .text(let text)? = parsed { return text }
            return nil
        }
    }

    /// Optional choice whose absence means something of its own (`defaultText` says what).
    public static func optionalChoice(_ name: String, _ choices: [String], defaultText: String, doc: String) -> Self {
        Self(descriptor: .init(name: name, type: .choice(choices), isRequired: false, defaultText: defaultText, doc: doc)) { parsed in
            if case .text(let text)? = parsed { return text }
            return nil
        }
    }
}

extension JobParameter where Value == Int {
    public static func integer(_ name: String, default value: Int, in range: ClosedRange<Int>, doc: String) -> Self {
        Self(descriptor: .init(name: name, type: .integer(range), isRequired: false, defaultText: String(value), doc: doc)) { parsed in
            if case .integer(let number)? = parsed { return number }
            return value
        }
    }
}

extension JobParameter where Value == Int? {
    public static func optionalInteger(_ name: String, in range: ClosedRange<Int>, defaultText: String, doc: String) -> Self {
        Self(descriptor: .init(name: name, type: .integer(range), isRequired: false, defaultText: defaultText, doc: doc)) { parsed in
            if case .integer(let number)? = parsed { return number }
            return nil
        }
    }
}

extension JobParameter where Value == Double {
    public static func number(_ name: String, default value: Double, in range: ClosedRange<Double>, doc: String) -> Self {
        Self(descriptor: .init(name: name, type: .number(range), isRequired: false,
                               defaultText: JobParameterType.number(value), doc: doc)) { parsed in
            if case .number(let number)? = parsed { return number }
            return value
        }
    }
}

extension JobParameter where Value == Double? {
    public static func optionalNumber(_ name: String, in range: ClosedRange<Double>, defaultText: String, doc: String) -> Self {
        Self(descriptor: .init(name: name, type: .number(range), isRequired: false, defaultText: defaultText, doc: doc)) { parsed in
            if case .number(let number)? = parsed { return number }
            return nil
        }
    }
}

extension JobParameter where Value == Bool {
    public static func boolean(_ name: String, default value: Bool, doc: String) -> Self {
        Self(descriptor: .init(name: name, type: .boolean, isRequired: false, defaultText: "`\(value)`", doc: doc)) { parsed in
            if case .boolean(let flag)? = parsed { return flag }
            return value
        }
    }
}

extension JobParameter where Value == [Int] {
    public static func integers(_ name: String, default value: [Int], in range: ClosedRange<Int>, doc: String) -> Self {
        Self(descriptor: .init(name: name, type: .integerList(range), isRequired: false,
                               defaultText: "`" + value.map(String.init).joined(separator: ",") + "`", doc: doc)) { parsed in
            if case .integers(let numbers)? = parsed { return numbers }
            return value
        }
    }
}

extension JobParameter where Value == [Int]? {
    public static func optionalIntegers(_ name: String, in range: ClosedRange<Int>, defaultText: String, doc: String) -> Self {
        Self(descriptor: .init(name: name, type: .integerList(range), isRequired: false, defaultText: defaultText, doc: doc)) { parsed in
            if case .integers(let numbers)? = parsed { return numbers }
            return nil
        }
    }
}

extension JobParameter where Value == [String] {
    public static func choices(_ name: String, among words: [String], default value: [String], doc: String) -> Self {
        Self(descriptor: .init(name: name, type: .choiceList(words), isRequired: false,
                               defaultText: "`" + value.joined(separator: ",") + "`", doc: doc)) { parsed in
            if case .texts(let chosen)? = parsed { return chosen }
            return value
        }
    }
}

/// The parameters of one job kind, declared once. Submissions are checked against it before
/// anything is queued (``JobManager`` does it for every kind); the docs table and the CLI help
/// are made from it.
public struct JobParameterSchema: Sendable {
    /// The job kind, e.g. "finetune".
    public let kind: String
    public let parameters: [JobParameterDescriptor]

    public init(kind: String, _ parameters: [any AnyJobParameter]) {
        self.kind = kind
        self.parameters = parameters.map(\.descriptor)
        precondition(Set(self.parameters.map(\.name)).count == self.parameters.count, "\(kind): a parameter is declared twice")
    }

    /// Checks `raw` and reads every value: unknown names, missing required ones and values
    /// not of their type are `.invalidParameter` naming the kind and the parameter. An empty
    /// value of an optional parameter is the same as leaving it out.
    public func parse(_ raw: [String: String]) throws(JobError) -> JobParameterValues {
        if let unknown = raw.keys.sorted().first(where: { name in !parameters.contains { $0.name == name } }) {
            throw .invalidParameter("\(kind): unknown parameter \(ParameterProblem.quoted(unknown)); expected \(summary)")
        }
        var values: [String: JobParameterValue] = [:]
        for parameter in parameters {
            let text = raw[parameter.name] ?? ""
            if text.isEmpty {
                if parameter.isRequired {
                    throw .invalidParameter("\(kind): parameter '\(parameter.name)' is required (\(parameter.doc))")
                }
                continue
            }
            switch parameter.parse(text) {
            case .success(let value): values[parameter.name] = value
            case .failure(let problem): throw .invalidParameter("\(kind): \(problem.message)")
            }
        }
        return JobParameterValues(kind: kind, raw: raw, values: values, declared: Set(parameters.map(\.name)))
    }

    /// The parameter names, required ones marked, for messages.
    public var summary: String {
        parameters.map { $0.isRequired ? "\($0.name) (required)" : $0.name }.joined(separator: ", ")
    }

    /// The kind's table for docs/jobs.md.
    public var markdownTable: String {
        var lines = ["| parameter | type | default | meaning |", "|---|---|---|---|"]
        for parameter in parameters {
            lines.append("| `\(parameter.name)` | \(parameter.type.documentation) | "
                         + "\(parameter.isRequired ? "required" : parameter.defaultText ?? "none") | \(parameter.doc) |")
        }
        return lines.joined(separator: "\n")
    }

    /// The kind's parameters for `curec jobs submit --help`: one line each.
    public var help: String {
        let lines = parameters.map { parameter -> String in
            let type = parameter.type.documentation.replacingOccurrences(of: "`", with: "")
            let fallback = parameter.isRequired ? "required" : "default " + (parameter.defaultText ?? "none").replacingOccurrences(of: "`", with: "")
            return "  \(parameter.name)=<\(type)> (\(fallback)): \(parameter.doc.replacingOccurrences(of: "`", with: ""))"
        }
        return "\(kind):\n" + lines.joined(separator: "\n")
    }
}

/// A submission's parameters, checked and read (``JobParameterSchema/parse(_:)``).
public struct JobParameterValues: Sendable {
    public let kind: String
    /// The parameters as submitted.
    public let raw: [String: String]
    let values: [String: JobParameterValue]
    /// The names the kind declares (reading another kind's parameter is a programming error).
    let declared: Set<String>

    /// The value of `parameter`: as given, or its default.
    public subscript<Value>(_ parameter: JobParameter<Value>) -> Value {
        assert(declared.contains(parameter.name), "\(kind) does not declare the parameter '\(parameter.name)'")
        return parameter.read(values[parameter.name])
    }

    /// True when the submission gave `parameter` (not empty).
    public func isGiven<Value>(_ parameter: JobParameter<Value>) -> Bool { values[parameter.name] != nil }
}

import Foundation

/// A value a setting can hold when it is given as text: a command-line flag's argument or an
/// environment variable. Every such value is also `Codable`, for the YAML file.
public protocol SettingValue: Codable, Sendable {
    /// How the docs and error messages name the type, e.g. "integer".
    static var typeName: String { get }
    /// Reads the value from a flag's argument or an environment variable (nil: not this type).
    init?(settingText: String)
    /// The value as the docs print it.
    var settingText: String { get }
    /// The value after a flag was given `texts` (once per occurrence) on top of `current`.
    /// Scalars keep the last occurrence; lists append every occurrence.
    static func fromFlag(_ texts: [String], current: Self) -> Self?
}

extension SettingValue {
    public static func fromFlag(_ texts: [String], current: Self) -> Self? {
        texts.last.flatMap(Self.init(settingText:))
    }
}

extension String: SettingValue {
    public static var typeName: String { "string" }
    public init?(settingText: String) { self = settingText }
    public var settingText: String { self }
}

extension Int: SettingValue {
    public static var typeName: String { "integer" }
    public init?(settingText: String) { self.init(settingText.trimmingCharacters(in: .whitespaces)) }
    public var settingText: String { String(self) }
}

extension Double: SettingValue {
    public static var typeName: String { "number" }
    public init?(settingText: String) {
        guard let value = Double(settingText.trimmingCharacters(in: .whitespaces)), value.isFinite else { return nil }
        self = value
    }
    public var settingText: String { self == rounded() && abs(self) < 1e15 ? String(Int(self)) : String(self) }
}

extension Bool: SettingValue {
    public static var typeName: String { "boolean" }
    public init?(settingText: String) {
        switch settingText.lowercased() {
        case "true", "1", "yes": self = true
        case "false", "0", "no": self = false
        default: return nil
        }
    }
    public var settingText: String { self ? "true" : "false" }
}

/// A list of strings: colon-separated in an environment variable (like `PATH`); a repeated
/// flag appends one entry per occurrence.
extension Array: SettingValue where Element == String {
    public static var typeName: String { "list of strings" }
    public init?(settingText: String) { self = settingText.split(separator: ":").map(String.init) }
    public var settingText: String { isEmpty ? "none" : joined(separator: ":") }
    public static func fromFlag(_ texts: [String], current: [String]) -> [String]? { current + texts }
}

/// Where a setting's value came from, lowest precedence first.
public enum SettingSource: Sendable, Equatable, CustomStringConvertible {
    case builtIn
    case file(String)
    case environment(String)
    case flag(String)

    public var description: String {
        switch self {
        case .builtIn: return "the built-in default"
        case .file(let path): return "config file \(path)"
        case .environment(let name): return "environment variable \(name)"
        case .flag(let flag): return "flag \(flag)"
        }
    }
}

/// A rule a setting's value must follow, checked once on the merged configuration whatever
/// the value's source.
public struct SettingRule<Value: Sendable>: Sendable {
    /// What the rule asks for, completing "KEY must ...", e.g. "be at least 1".
    public let requirement: String
    let holds: @Sendable (Value) -> Bool

    public init(_ requirement: String, holds: @escaping @Sendable (Value) -> Bool) {
        self.requirement = requirement
        self.holds = holds
    }
}

extension SettingRule where Value == Int {
    /// At least `minimum`.
    public static func atLeast(_ minimum: Int) -> SettingRule {
        SettingRule(minimum == 1 ? "be a positive integer" : "be an integer >= \(minimum)") { $0 >= minimum }
    }
}

extension SettingRule where Value == Int {
    /// Within `range`.
    public static func within(_ range: ClosedRange<Int>) -> SettingRule {
        SettingRule("be an integer from \(range.lowerBound) to \(range.upperBound)") { range.contains($0) }
    }
}

extension SettingRule where Value == Double {
    /// At least `minimum` (inclusive) or above it.
    public static func atLeast(_ minimum: Double) -> SettingRule {
        SettingRule("be a number >= \(minimum.settingText)") { $0 >= minimum }
    }
    public static func above(_ minimum: Double) -> SettingRule {
        SettingRule("be a number > \(minimum.settingText)") { $0 > minimum }
    }
}

extension SettingRule where Value == String {
    /// Any text but the empty one.
    public static var nonEmpty: SettingRule { SettingRule("not be empty") { !$0.isEmpty } }

    /// One of `choices`.
    public static func oneOf(_ choices: [String]) -> SettingRule {
        SettingRule("be one of \(choices.joined(separator: ", "))") { choices.contains($0) }
    }
}

/// One setting of the daemon, declared once: its YAML key, type, default, environment
/// variable, flag, documentation and rule. Everything that reads, checks or documents the
/// configuration goes through the table of these (``DaemonConfiguration/settings``).
public struct Setting: Sendable {
    /// The YAML key, e.g. `log_level`.
    public let key: String
    /// How the docs name the type, e.g. "integer".
    public let typeName: String
    /// The command-line flag, e.g. `--log-level` (nil: YAML only).
    public let flag: String?
    /// True for a flag that takes no argument (a boolean switched on by its presence).
    public let flagIsSwitch: Bool
    /// True for a flag that may be repeated (a list; each occurrence adds an entry).
    public let flagRepeats: Bool
    /// The environment variable, e.g. `CUREC_LOG_LEVEL` (nil: none).
    public let environmentVariable: String?
    /// The default as the docs print it.
    public let defaultText: String
    /// One line for the docs and `--help`.
    public let doc: String
    /// What the rule asks for, or nil when any value of the type is accepted.
    public let requirement: String?

    let decode: @Sendable (KeyedDecodingContainer<SettingKey>, inout DaemonConfiguration) throws -> Bool
    let encode: @Sendable (DaemonConfiguration, inout KeyedEncodingContainer<SettingKey>) throws -> Void
    /// Applies text from the environment or flags; false when the text is not of the type.
    let applyText: (@Sendable ([String], Bool, inout DaemonConfiguration) -> Bool)?
    /// The current value in a message, shortened (nil: the value is not text).
    let describe: @Sendable (DaemonConfiguration) -> String
    let holds: @Sendable (DaemonConfiguration) -> Bool

    /// A setting read from YAML, the environment and a flag.
    ///
    /// - Parameters:
    ///   - keyPath: the property holding it.
    ///   - key: the YAML key; the environment variable is `CUREC_` and the key in capitals.
    ///   - flag: the flag name without dashes; default the key with `-` for `_`.
    ///   - defaultText: the default as the docs print it; default the property's initial value.
    ///   - rule: what a valid value is, beyond its type.
    static func text<Value: SettingValue>(
        _ keyPath: WritableKeyPath<DaemonConfiguration, Value> & Sendable, _ key: String, flag: String? = nil,
        environment: Bool = true, defaultText: String? = nil, rule: SettingRule<Value>? = nil, _ doc: String
    ) -> Setting {
        let flagName = "--" + (flag ?? key.replacingOccurrences(of: "_", with: "-"))
        return Setting(
            key: key, typeName: Value.typeName, flag: flagName, flagIsSwitch: Value.self == Bool.self,
            flagRepeats: Value.self == [String].self,
            environmentVariable: environment ? "CUREC_" + key.uppercased() : nil,
            defaultText: defaultText ?? DaemonConfiguration()[keyPath: keyPath].settingText, doc: doc,
            requirement: rule?.requirement,
            decode: { container, configuration in
                guard let value = try container.decodeIfPresent(Value.self, forKey: SettingKey(key)) else { return false }
                configuration[keyPath: keyPath] = value
                return true
            },
            encode: { configuration, container in
                try container.encode(configuration[keyPath: keyPath], forKey: SettingKey(key))
            },
            applyText: { texts, fromFlag, configuration in
                let current = configuration[keyPath: keyPath]
                let value = fromFlag ? Value.fromFlag(texts, current: current) : texts.last.flatMap(Value.init(settingText:))
                guard let value else { return false }
                configuration[keyPath: keyPath] = value
                return true
            },
            describe: { configuration in Setting.shortened(configuration[keyPath: keyPath].settingText) },
            holds: { configuration in rule?.holds(configuration[keyPath: keyPath]) ?? true })
    }

    /// A structured setting only a YAML file can hold.
    static func structured<Value: Codable & Sendable>(
        _ keyPath: WritableKeyPath<DaemonConfiguration, Value> & Sendable, _ key: String, typeName: String,
        defaultText: String, rule: SettingRule<Value>? = nil, _ doc: String
    ) -> Setting {
        Setting(
            key: key, typeName: typeName, flag: nil, flagIsSwitch: false, flagRepeats: false, environmentVariable: nil,
            defaultText: defaultText, doc: doc, requirement: rule?.requirement,
            decode: { container, configuration in
                guard let value = try container.decodeIfPresent(Value.self, forKey: SettingKey(key)) else { return false }
                configuration[keyPath: keyPath] = value
                return true
            },
            encode: { configuration, container in
                try container.encode(configuration[keyPath: keyPath], forKey: SettingKey(key))
            },
            applyText: nil,
            describe: { _ in "" },
            holds: { configuration in rule?.holds(configuration[keyPath: keyPath]) ?? true })
    }

    /// The type with its article, e.g. "an integer".
    public var typePhrase: String {
        ("aeiou".contains(typeName.first ?? "x") ? "an " : "a ") + typeName
    }

    /// The sentence naming a value that breaks the rule.
    func violation(in configuration: DaemonConfiguration, from source: SettingSource) -> String {
        let value = describe(configuration)
        let given = value.isEmpty ? "" : ", not '\(value)'"
        return "\(key) must \(requirement ?? "be valid")\(given) (from \(source))"
    }

    /// Text of at most 64 characters, for messages.
    static func shortened(_ text: String) -> String {
        text.count <= 64 ? text : String(text.prefix(64)) + "…"
    }
}

/// A YAML key.
struct SettingKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(_ string: String) { stringValue = string }
    init?(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}

import Foundation

/// The command-line flags of the settings (``DaemonConfiguration/settings``), picked out of a
/// command line so the rest can go to the command's own parser.
public enum SettingFlags {
    /// Splits `arguments` (without the program name) into the settings' flags, each with its
    /// arguments in order, and everything else. A flag is `--flag VALUE` or `--flag=VALUE`; a
    /// boolean setting's flag takes no argument (`--flag`, or `--flag=false`).
    public static func split(_ arguments: [String]) throws(ConfigurationError) -> (flags: [String: [String]], remaining: [String]) {
        var flags: [String: [String]] = [:]
        var remaining: [String] = []
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            index += 1
            let name = argument.split(separator: "=", maxSplits: 1).first.map(String.init) ?? argument
            guard argument.hasPrefix("--"),
                  let setting = DaemonConfiguration.settings.first(where: { $0.flag == name }) else {
                remaining.append(argument)
                continue
            }
            let value: String
            if name.count < argument.count {
                value = String(argument.dropFirst(name.count + 1))
            } else if setting.flagIsSwitch {
                value = "true"
            } else {
                guard index < arguments.count else {
                    throw .invalid("\(setting.key) must be \(setting.typePhrase), but flag \(name) has no value")
                }
                value = arguments[index]
                index += 1
            }
            flags[name, default: []].append(value)
        }
        return (flags, remaining)
    }

    /// The settings' flags for `--help`: one line each with its argument, doc and default.
    public static var help: String {
        DaemonConfiguration.settings.compactMap { setting -> String? in
            guard let flag = setting.flag else { return nil }
            let argument = setting.flagIsSwitch ? "" : " <\(setting.typeName == "list of strings" ? "dir" : setting.typeName)>"
            let repeats = setting.flagRepeats ? " (repeatable)" : ""
            return "  \(flag)\(argument)\(repeats): \(plain(setting.doc)) (default \(plain(setting.defaultText)); "
                + "YAML \(setting.key)" + (setting.environmentVariable.map { ", \($0)" } ?? "") + ")"
        }.joined(separator: "\n")
    }

    /// Markdown without its code quotes.
    static func plain(_ text: String) -> String { text.replacingOccurrences(of: "`", with: "") }
}

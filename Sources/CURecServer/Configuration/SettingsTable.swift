extension DaemonConfiguration {
    /// The settings table of docs/configuration.md, made from ``settings`` (a test checks the
    /// file holds exactly this between its `settings-table` markers).
    public static var markdownTable: String {
        var lines = [
            "| key | type | flag | environment | default | meaning |",
            "|---|---|---|---|---|---|",
        ]
        for setting in settings {
            let flag = setting.flag.map { "`\($0)`" + (setting.flagRepeats ? " (repeat)" : "") } ?? ""
            let environment = setting.environmentVariable.map { "`\($0)`" } ?? ""
            let value = setting.defaultText
            let shown = value.hasPrefix("`") || setting.typeName != "string" ? value : "`\(value)`"
            let rule = setting.requirement.map { "; must \($0)" } ?? ""
            lines.append("| `\(setting.key)` | \(setting.typeName) | \(flag) | \(environment) | \(shown) | \(setting.doc)\(rule) |")
        }
        return lines.joined(separator: "\n")
    }
}

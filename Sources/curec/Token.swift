import ArgumentParser
import CURecRPC
import Foundation

/// `curec token`: makes bearer tokens and the hashes the daemon's configuration lists.
struct Token: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Make bearer tokens and their SHA-256 hashes for the daemon's `tokens` setting.",
        subcommands: [New.self, Hash.self])

    struct New: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print a new random token and the config entry with its hash (keep the token secret).")
        @Option(help: "Name of the entry (who holds the token).") var name = "client"
        @Option(help: "Comma-separated scopes: score, generate, jobs, admin.") var scopes = "score"

        func run() throws {
            var bytes = [UInt8](repeating: 0, count: 32)
            guard getentropy(&bytes, bytes.count) == 0 else { throw ValidationError("no entropy from the system") }
            let token = Data(bytes).base64EncodedString()
                .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
                .replacingOccurrences(of: "=", with: "")
            print("token: \(token)")
            print("""
                config entry (under `tokens:`):
                  - name: \(name)
                    sha256: \(SHA256Digest.hex(of: Array(token.utf8)))
                    scopes: [\(scopes.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.joined(separator: ", "))]
                """)
        }
    }

    struct Hash: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the SHA-256 (hex) of a token read from standard input, for the config's `sha256`.",
            discussion: "The token is read from stdin (surrounding whitespace and the newline are dropped) so it stays out of shell history and process lists: `curec token hash < token.txt`.")

        func run() throws {
            var text = ""
            while let line = readLine(strippingNewline: false) { text += line }
            let token = text.trimmingCharacters(in: .whitespacesAndNewlines)
            guard !token.isEmpty else { throw ValidationError("no token on standard input") }
            print(SHA256Digest.hex(of: Array(token.utf8)))
        }
    }
}

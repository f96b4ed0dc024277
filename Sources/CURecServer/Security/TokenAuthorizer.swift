import CURecRPC
import Foundation
import Synchronization

/// One bearer token as the config file lists it: never the token itself, only its SHA-256.
///
/// ```yaml
/// tokens:
///   - name: ranker
///     sha256: 5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8
///     scopes: [score, generate]
///     expires: 2027-06-30T00:00:00Z
/// ```
public struct TokenSpec: Sendable, Codable, Hashable {
    /// Who holds the token, for logs and messages (never the token).
    public var name: String
    /// Lowercase hex SHA-256 of the token (`curec token hash` prints it).
    public var sha256: String
    /// What the token may do: `score`, `generate`, `jobs`, `admin`.
    public var scopes: [String]
    /// When the token stops working, ISO 8601 (e.g. `2027-06-30T00:00:00Z`); nil: never.
    public var expires: String?

    public init(name: String, sha256: String, scopes: [AccessScope], expires: String? = nil) {
        self.name = name
        self.sha256 = sha256
        self.scopes = scopes.map(\.rawValue)
        self.expires = expires
    }

    /// Checks the entry; the error names the token by its `name` and says what is wrong.
    func validated() throws(ConfigurationError) -> TokenGrant {
        guard !name.isEmpty, name.count <= 64 else { throw .invalid("every token needs a name of 1 to 64 characters") }
        let digest = sha256.lowercased()
        guard digest.count == 64, digest.allSatisfy({ $0.isHexDigit }) else {
            throw .invalid("tokens[\(name)].sha256 must be 64 hex digits (`curec token hash` prints them)")
        }
        var granted = Set<AccessScope>()
        for scope in scopes {
            guard let known = AccessScope(rawValue: scope) else {
                throw .invalid("tokens[\(name)].scopes: '\(Setting.shortened(scope))' is not a scope (known: "
                               + AccessScope.allCases.map(\.rawValue).joined(separator: ", ") + ")")
            }
            granted.insert(known)
        }
        var expiry: Date? = nil
        if let expires {
            guard let date = ISO8601DateFormatter().date(from: expires) else {
                throw .invalid("tokens[\(name)].expires must be an ISO 8601 time such as 2027-06-30T00:00:00Z")
            }
            expiry = date
        }
        return TokenGrant(name: name, scopes: granted, expires: expiry)
    }
}

/// What a known token may do.
public struct TokenGrant: Sendable, Hashable {
    public let name: String
    public let scopes: Set<AccessScope>
    public let expires: Date?
}

/// The tokens in effect, by the hex SHA-256 of each token.
public struct TokenTable: Sendable {
    public let grants: [String: TokenGrant]

    /// Builds the table from the config file's entries; names and hashes must be unique.
    public init(_ specs: [TokenSpec]) throws(ConfigurationError) {
        var grants: [String: TokenGrant] = [:]
        var names = Set<String>()
        for spec in specs {
            let grant = try spec.validated()
            guard names.insert(grant.name).inserted else { throw .invalid("token name '\(grant.name)' is used twice") }
            let digest = spec.sha256.lowercased()
            guard grants[digest] == nil else { throw .invalid("tokens[\(grant.name)] has the same hash as another token") }
            grants[digest] = grant
        }
        self.grants = grants
    }
}

/// Checks each call's bearer token against the token table and the access policy.
///
/// - On the admin socket every call may run: reaching it takes the daemon user's file access.
/// - On the main listener, with an admin socket configured, `admin` methods are refused
///   (PERMISSION_DENIED) whatever the token.
/// - With tokens required: no or malformed `authorization`, an unknown (revoked) or expired
///   token: UNAUTHENTICATED; a token without the method's scope: PERMISSION_DENIED.
///
/// The table is replaced as a whole by ``reload(_:)`` (SIGHUP); calls already admitted keep
/// running.
public final class TokenAuthorizer: RPCAuthorizer {
    /// Longest `authorization` value looked at; longer ones are refused unread.
    public static let maxHeaderBytes = 1024

    private let policy: AccessPolicy
    private let requireTokens: Bool
    private let adminSocketPath: String?
    private let table: Mutex<TokenTable>
    private let clock: @Sendable () -> Date

    /// - Parameters:
    ///   - requireTokens: check tokens on the main listener (false: only the admin split applies).
    ///   - adminSocketPath: the admin socket, if administration is served only there.
    public init(policy: AccessPolicy, tokens: TokenTable, requireTokens: Bool, adminSocketPath: String?,
                clock: @escaping @Sendable () -> Date = { Date() }) {
        self.policy = policy
        self.requireTokens = requireTokens
        self.adminSocketPath = adminSocketPath
        self.table = Mutex(tokens)
        self.clock = clock
    }

    /// Replaces the tokens in effect; returns how many there are now.
    @discardableResult
    public func reload(_ tokens: TokenTable) -> Int {
        table.withLock { $0 = tokens }
        return tokens.grants.count
    }

    public func authorize(method: RPCMethodDescriptor, authorization: String?, listener: ListenerRole) -> RPCStatus? {
        if listener == .admin { return nil }
        let requirement = policy.requirement(for: method)
        if adminSocketPath != nil, requirement == .scope(.admin) {
            return RPCStatus(code: .permissionDenied,
                             message: "\(method.path) is administration, served only on the daemon's admin socket")
        }
        guard requireTokens, requirement != .open else { return nil }
        guard let authorization else {
            return RPCStatus(code: .unauthenticated,
                             message: "\(method.path) needs a bearer token (metadata 'authorization: Bearer <token>')")
        }
        guard authorization.utf8.count <= Self.maxHeaderBytes else {
            return RPCStatus(code: .unauthenticated, message: "the authorization header is over \(Self.maxHeaderBytes) bytes")
        }
        let parts = authorization.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
        guard parts.count == 2, parts[0].lowercased() == "bearer", !parts[1].isEmpty else {
            return RPCStatus(code: .unauthenticated, message: "the authorization header must be 'Bearer <token>'")
        }
        let digest = SHA256Digest.hex(of: Array(parts[1].trimmingCharacters(in: .whitespaces).utf8))
        guard let grant = table.withLock({ $0.grants[digest] }) else {
            return RPCStatus(code: .unauthenticated, message: "the bearer token is not valid (unknown or revoked)")
        }
        if let expires = grant.expires, clock() >= expires {
            return RPCStatus(code: .unauthenticated,
                             message: "the bearer token '\(grant.name)' expired at \(ISO8601DateFormatter().string(from: expires))")
        }
        if case .scope(let scope) = requirement, !grant.scopes.contains(scope) {
            return RPCStatus(code: .permissionDenied,
                             message: "the bearer token '\(grant.name)' lacks scope '\(scope.rawValue)', which \(method.path) needs")
        }
        return nil
    }
}

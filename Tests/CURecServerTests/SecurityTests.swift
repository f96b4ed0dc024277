import CURecProto
import CURecRPC
import Foundation
import Logging
import Testing
@testable import CURecServer

/// The access policy, the token check and the security settings.
@Suite struct SecurityTests {
    static let scoreToken = "score-token"
    static let adminToken = "admin-token"
    static let expiringToken = "expiring-token"
    static let expiry = "2030-01-01T00:00:00Z"

    static func table() throws -> TokenTable {
        try TokenTable([
            TokenSpec(name: "ranker", sha256: SHA256Digest.hex(of: Array(scoreToken.utf8)), scopes: [.score]),
            TokenSpec(name: "operator", sha256: SHA256Digest.hex(of: Array(adminToken.utf8)).uppercased(), scopes: [.admin, .jobs]),
            TokenSpec(name: "temp", sha256: SHA256Digest.hex(of: Array(expiringToken.utf8)), scopes: [.score], expires: expiry),
        ])
    }

    static func authorizer(now: Date = Date(timeIntervalSince1970: 1_800_000_000), adminSocket: String? = nil,
                           requireTokens: Bool = true, healthRequiresToken: Bool = false) throws -> TokenAuthorizer {
        TokenAuthorizer(policy: .daemon(healthRequiresToken: healthRequiresToken), tokens: try table(),
                        requireTokens: requireTokens, adminSocketPath: adminSocket, clock: { now })
    }

    static let recommend = Curec_V1_RecommendService.Method.recommend.descriptor
    static let loadPlugin = Curec_V1_PluginService.Method.load.descriptor
    static let submitJob = Curec_V1_JobService.Method.submit.descriptor
    static let listJobs = Curec_V1_JobService.Method.list.descriptor
    static let health = Grpc_Health_V1_Health.Method.check.descriptor

    @Test func sha256MatchesAKnownVector() {
        #expect(SHA256Digest.hex(of: Array("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }

    @Test func everyMethodOfEveryServiceHasAStatedRequirement() throws {
        let policy = AccessPolicy.daemon()
        let daemon = try RoutingTests.bareDaemon(interop: true)
        #expect(daemon.routedMethods.count >= 20)
        for method in daemon.routedMethods {
            #expect(policy.covers(method), "\(method.path) falls back to admin: give its service a scope")
        }
        #expect(policy.requirement(for: Self.health) == .open)
        #expect(policy.requirement(for: Self.recommend) == .scope(.score))
        #expect(policy.requirement(for: Curec_V1_GenerationService.Method.generate.descriptor) == .scope(.generate))
        #expect(policy.requirement(for: Self.listJobs) == .scope(.jobs))
        #expect(policy.requirement(for: Self.submitJob) == .scope(.admin))
        #expect(policy.requirement(for: Self.loadPlugin) == .scope(.admin))
        #expect(policy.requirement(for: Curec_V1_DatasetService.Method.upload.descriptor) == .scope(.admin))
        let unknown = RPCMethodDescriptor(service: "x.Y", name: "Z", kind: .unary, requestType: "a", responseType: "b")
        #expect(policy.requirement(for: unknown) == .scope(.admin) && !policy.covers(unknown))
    }

    @Test func missingMalformedOrUnknownTokensAreUnauthenticated() throws {
        let check = try Self.authorizer()
        for header in [nil, "", "Basic abc", "Bearer", "bearer-\(Self.scoreToken)", "Bearer \(Self.scoreToken)x",
                       "Bearer " + String(repeating: "a", count: 5000)] as [String?] {
            let status = check.authorize(method: Self.recommend, authorization: header, listener: .main)
            #expect(status?.code == .unauthenticated, "\(String(describing: header?.prefix(20)))")
            #expect((status?.message.count ?? 0) < 200)
        }
    }

    @Test func aTokenReachesTheMethodsOfItsScopesOnly() throws {
        let check = try Self.authorizer()
        #expect(check.authorize(method: Self.recommend, authorization: "Bearer \(Self.scoreToken)", listener: .main) == nil)
        #expect(check.authorize(method: Self.recommend, authorization: "bearer  \(Self.scoreToken)", listener: .main) == nil)
        let denied = check.authorize(method: Self.loadPlugin, authorization: "Bearer \(Self.scoreToken)", listener: .main)
        #expect(denied?.code == .permissionDenied)
        #expect(denied?.message.contains("admin") == true && denied?.message.contains(Self.scoreToken) == false)
        #expect(check.authorize(method: Self.loadPlugin, authorization: "Bearer \(Self.adminToken)", listener: .main) == nil)
        #expect(check.authorize(method: Self.listJobs, authorization: "Bearer \(Self.adminToken)", listener: .main) == nil)
        #expect(check.authorize(method: Self.recommend, authorization: "Bearer \(Self.adminToken)", listener: .main)?.code == .permissionDenied)
    }

    @Test func anExpiredTokenIsUnauthenticated() throws {
        let expires = try #require(ISO8601DateFormatter().date(from: Self.expiry))
        let before = try Self.authorizer(now: expires.addingTimeInterval(-1))
        #expect(before.authorize(method: Self.recommend, authorization: "Bearer \(Self.expiringToken)", listener: .main) == nil)
        let after = try Self.authorizer(now: expires)
        let status = after.authorize(method: Self.recommend, authorization: "Bearer \(Self.expiringToken)", listener: .main)
        #expect(status?.code == .unauthenticated && status?.message.contains("expired") == true)
    }

    @Test func aReloadRevokesTokensLeftOut() throws {
        let check = try Self.authorizer()
        #expect(check.authorize(method: Self.recommend, authorization: "Bearer \(Self.scoreToken)", listener: .main) == nil)
        #expect(check.reload(try TokenTable([])) == 0)
        #expect(check.authorize(method: Self.recommend, authorization: "Bearer \(Self.scoreToken)", listener: .main)?.code == .unauthenticated)
        // Health stays open; every token-protected method is closed.
        #expect(check.authorize(method: Self.health, authorization: nil, listener: .main) == nil)
    }

    @Test func healthIsOpenUnlessConfiguredOtherwise() throws {
        #expect(try Self.authorizer().authorize(method: Self.health, authorization: nil, listener: .main) == nil)
        let closed = try Self.authorizer(healthRequiresToken: true)
        #expect(closed.authorize(method: Self.health, authorization: nil, listener: .main)?.code == .unauthenticated)
        #expect(closed.authorize(method: Self.health, authorization: "Bearer \(Self.scoreToken)", listener: .main) == nil)
    }

    @Test func withAnAdminSocketAdministrationIsServedOnlyThere() throws {
        let check = try Self.authorizer(adminSocket: "/run/curecd/admin.sock")
        let refused = check.authorize(method: Self.submitJob, authorization: "Bearer \(Self.adminToken)", listener: .main)
        #expect(refused?.code == .permissionDenied && refused?.message.contains("admin socket") == true)
        #expect(check.authorize(method: Self.submitJob, authorization: nil, listener: .admin) == nil)
        #expect(check.authorize(method: Self.recommend, authorization: nil, listener: .admin) == nil)
        #expect(check.authorize(method: Self.listJobs, authorization: "Bearer \(Self.adminToken)", listener: .main) == nil)
        // Without tokens, only the split applies.
        let open = try Self.authorizer(adminSocket: "/run/curecd/admin.sock", requireTokens: false)
        #expect(open.authorize(method: Self.recommend, authorization: nil, listener: .main) == nil)
        #expect(open.authorize(method: Self.loadPlugin, authorization: nil, listener: .main)?.code == .permissionDenied)
    }

    @Test func tokenEntriesAreChecked() {
        func failure(_ specs: [TokenSpec]) -> String {
            do { _ = try TokenTable(specs); return "no error" } catch { return error.description }
        }
        let hash = String(repeating: "ab", count: 32)
        #expect(failure([TokenSpec(name: "a", sha256: "xyz", scopes: [.score])]).contains("64 hex digits"))
        #expect(failure([TokenSpec(name: "", sha256: hash, scopes: [.score])]).contains("name"))
        #expect(failure([TokenSpec(name: "a", sha256: hash, scopes: [.score], expires: "tomorrow")]).contains("ISO 8601"))
        var unknownScope = TokenSpec(name: "a", sha256: hash, scopes: [])
        unknownScope.scopes = ["root"]
        #expect(failure([unknownScope]).contains("'root' is not a scope"))
        #expect(failure([TokenSpec(name: "a", sha256: hash, scopes: [.score]),
                         TokenSpec(name: "a", sha256: String(repeating: "cd", count: 32), scopes: [.score])]).contains("used twice"))
        #expect(failure([TokenSpec(name: "a", sha256: hash, scopes: [.score]),
                         TokenSpec(name: "b", sha256: hash.uppercased(), scopes: [.score])]).contains("same hash"))
    }

    @Test func aNonLoopbackListenerNeedsTLSAndTokensOrTheInsecureFlag() throws {
        func failure(_ arguments: [String], file: String? = nil) -> String {
            do {
                _ = try DaemonConfiguration.resolve(file: file, environment: [:], flags: SettingFlags.split(arguments).flags)
                return "no error"
            } catch {
                return error.description
            }
        }
        let refused = failure(["--listen", "0.0.0.0:50051"])
        #expect(refused.contains("not a loopback address") && refused.contains("--insecure") && refused.contains("TLS"))
        #expect(failure(["--listen", "0.0.0.0:50051", "--insecure"]) == "no error")
        #expect(failure(["--listen", "[::]:50051", "--tls-cert-file", "c.pem", "--tls-key-file", "k.pem"]).contains("tokens"))
        #expect(failure(["--listen", "0.0.0.0:1", "--tls-cert-file", "c.pem", "--tls-key-file", "k.pem",
                         "--tls-client-ca-file", "ca.pem"]) == "no error")
        let file = try DaemonConfigurationTests.ConfigFile("""
            listen: 192.0.2.1:50051
            tls_cert_file: c.pem
            tls_key_file: k.pem
            tokens:
              - {name: a, sha256: \(String(repeating: "ab", count: 32)), scopes: [score]}
            """)
        #expect(failure([], file: file.path) == "no error")
        for loopback in ["127.0.0.1:1", "127.3.2.1:1", "localhost:1", "[::1]:1"] {
            #expect(failure(["--listen", loopback]) == "no error", "\(loopback)")
        }
        #expect(failure(["--tls-cert-file", "c.pem"]).contains("go together"))
        #expect(failure(["--tls-client-ca-file", "ca.pem"]).contains("needs tls_cert_file"))
        var insecure = DaemonConfiguration()
        insecure.listen = "0.0.0.0:1"
        insecure.insecure = true
        #expect(insecure.isInsecurelyExposed && !DaemonConfiguration().isInsecurelyExposed)
    }
}

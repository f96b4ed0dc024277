import Foundation

/// Where the PostgreSQL job store is: parsed from `job_store_url`
/// (`postgres://USER@HOST[:PORT]/DATABASE`), with the password given apart (a file), so the
/// URL can be logged and shown as it is.
public struct PostgresJobStoreSettings: Sendable, Equatable {
    public var host: String
    public var port: Int
    public var username: String
    public var database: String
    /// The password, if the server asks for one; never logged or shown.
    public var password: String?
    /// How long a connection attempt may take before it fails.
    public var connectTimeout: Duration = .seconds(5)

    public init(host: String, port: Int = 5432, username: String, database: String, password: String? = nil) {
        self.host = host
        self.port = port
        self.username = username
        self.database = database
        self.password = password
    }

    /// Parses `url`. Errors never repeat the URL (it might hold a secret) and say what form
    /// is expected.
    public init(url: String, password: String?) throws(JobError) {
        let form = "postgres://USER@HOST[:PORT]/DATABASE"
        guard url.utf8.count <= 1024, let components = URLComponents(string: url) else {
            throw .invalidStoreURL("job_store_url is not a URL; expected \(form)")
        }
        guard let scheme = components.scheme?.lowercased(), scheme == "postgres" || scheme == "postgresql" else {
            throw .invalidStoreURL("job_store_url must start with postgres://; expected \(form)")
        }
        if components.password != nil {
            throw .invalidStoreURL(
                "job_store_url must not hold a password (it would be shown wherever the URL is); put it in the file job_store_password_file names")
        }
        guard let host = components.host, !host.isEmpty else {
            throw .invalidStoreURL("job_store_url has no host; expected \(form)")
        }
        guard let user = components.user, !user.isEmpty else {
            throw .invalidStoreURL("job_store_url has no user; expected \(form)")
        }
        let database = String(components.path.drop { $0 == "/" })
        guard !database.isEmpty, !database.contains("/") else {
            throw .invalidStoreURL("job_store_url has no database name; expected \(form)")
        }
        let port = components.port ?? 5432
        guard (1...65535).contains(port) else {
            throw .invalidStoreURL("job_store_url has a port outside 1-65535")
        }
        for item in components.queryItems ?? [] {
            switch (item.name, item.value) {
            case ("sslmode", "disable"): continue
            case ("connect_timeout", let value?):
                guard let seconds = Int(value), (1...600).contains(seconds) else {
                    throw .invalidStoreURL("job_store_url: connect_timeout must be whole seconds from 1 to 600")
                }
                connectTimeout = .seconds(seconds)
            default:
                throw .invalidStoreURL(
                    "job_store_url: unsupported parameter '\(item.name.prefix(32))' (supported: sslmode=disable, connect_timeout=SECONDS)")
            }
        }
        self.host = host
        self.port = port
        self.username = user
        self.database = database
        self.password = password
    }

    /// The store's address for logs and errors: no password.
    public var redacted: String { "postgres://\(username)@\(host):\(port)/\(database)" }
}

// protoc-gen-curec-rpc: for each service of the given .proto files, writes
// `<file>.rpc.swift` with
//   - the service's method descriptors (`<Service>.Method.<name>`: full path, message types,
//     streaming kind) and the list of them (`<Service>.methods`),
//   - `<Service>Handler`, the protocol a server implements: one requirement per method with
//     its typed request, response and streams; conforming to it registers every method,
//   - `<Service>Client`, calls over the blocking `RPCClient` (bidirectional methods excepted:
//     that client has no such calls).
//
// Options (`--curec-rpc_opt=Key=Value`, repeatable):
//   Import=Module       adds `import Module` (the RPC layer, the module of the messages)
//   Service=full.Name   generates only the named services (default: every service)
//   Inline=Service.Method  the unary method gets a synchronous requirement and runs inline on
//                       the I/O loop: only for handlers that never block
import Foundation
import SwiftProtobufPluginLibrary

struct Options {
    var imports: [String] = []
    var services: Set<String> = []
    var inline: Set<String> = []

    init(_ parameter: any CodeGeneratorParameter) throws {
        for (key, value) in parameter.parsedPairs {
            switch key {
            case "Import": imports.append(value)
            case "Service": services.insert(value)
            case "Inline": inline.insert(value)
            default: throw GenerationError("unknown option '\(key)'; known: Import, Service, Inline")
            }
        }
    }
}

struct GenerationError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// How a method's messages flow, as the generated code spells it.
enum Shape {
    case unary, inlineUnary, serverStreaming, clientStreaming, bidirectionalStreaming

    init(_ method: MethodDescriptor, inline: Bool) throws {
        switch (method.clientStreaming, method.serverStreaming) {
        case (false, false): self = inline ? .inlineUnary : .unary
        case (false, true): self = .serverStreaming
        case (true, false): self = .clientStreaming
        case (true, true): self = .bidirectionalStreaming
        }
        if inline && self != .inlineUnary {
            throw GenerationError("\(method.fullName) is streaming; only unary methods can run inline")
        }
    }

    /// The `RPCKind` case of the descriptor.
    var kind: String {
        switch self {
        case .unary, .inlineUnary: return ".unary"
        case .serverStreaming: return ".serverStreaming"
        case .clientStreaming: return ".clientStreaming"
        case .bidirectionalStreaming: return ".bidirectionalStreaming"
        }
    }

    /// The `RPCRouter` function that registers such a method.
    var registration: String {
        switch self {
        case .unary: return "registerUnary"
        case .inlineUnary: return "registerInlineUnary"
        case .serverStreaming: return "registerServerStreaming"
        case .clientStreaming: return "registerClientStreaming"
        case .bidirectionalStreaming: return "registerBidirectionalStreaming"
        }
    }

    var summary: String {
        switch self {
        case .unary: return "unary"
        case .inlineUnary: return "unary, run inline on the I/O loop"
        case .serverStreaming: return "server streaming"
        case .clientStreaming: return "client streaming"
        case .bidirectionalStreaming: return "bidirectional streaming"
        }
    }
}

/// One method, with the Swift names the generated code uses.
struct Method {
    let descriptor: MethodDescriptor
    let shape: Shape
    /// lowerCamelCase Swift name (escaped if it is a keyword).
    let swiftName: String
    let request: String
    let response: String
    let comments: String

    init(_ descriptor: MethodDescriptor, namer: SwiftProtobufNamer, inline: Bool) throws {
        self.descriptor = descriptor
        self.shape = try Shape(descriptor, inline: inline)
        self.swiftName = Self.lowerCamel(descriptor.name)
        self.request = namer.fullName(message: descriptor.inputType)
        self.response = namer.fullName(message: descriptor.outputType)
        self.comments = descriptor.protoSourceComments(commentPrefix: "///")
    }

    static let keywords: Set<String> = swiftKeywordsUsedInDeclarations
        .union(swiftKeywordsUsedInStatements)
        .union(swiftKeywordsUsedInExpressionsAndTypes)

    /// `GetReport` → `getReport`, `URLFetch` → `urlFetch`.
    static func lowerCamel(_ name: String) -> String {
        let characters = Array(name)
        var upper = 0
        while upper < characters.count, characters[upper].isUppercase { upper += 1 }
        let lowered: String
        if upper <= 1 || upper == characters.count {
            lowered = String(characters.prefix(upper)).lowercased() + String(characters.dropFirst(upper))
        } else {
            // Keep the capital that starts the next word: "URLFetch" → "url" + "Fetch".
            lowered = String(characters.prefix(upper - 1)).lowercased() + String(characters.dropFirst(upper - 1))
        }
        return keywords.contains(lowered) ? "`\(lowered)`" : lowered
    }

    /// The requirement in the handler protocol.
    var requirement: String {
        switch shape {
        case .unary:
            return "func \(swiftName)(_ request: \(request), context: ServerContext) async throws -> \(response)"
        case .inlineUnary:
            return "func \(swiftName)(_ request: \(request), context: ServerContext) throws -> \(response)"
        case .serverStreaming:
            return "func \(swiftName)(_ request: \(request), responses: ResponseWriter<\(response)>, context: ServerContext) async throws"
        case .clientStreaming:
            return "func \(swiftName)(_ requests: RequestStream<\(request)>, context: ServerContext) async throws -> \(response)"
        case .bidirectionalStreaming:
            return "func \(swiftName)(_ requests: RequestStream<\(request)>, responses: ResponseWriter<\(response)>, context: ServerContext) async throws"
        }
    }

    /// The closure that forwards a routed call to the requirement.
    var forwarding: String {
        let name = swiftName.replacingOccurrences(of: "`", with: "")
        switch shape {
        case .unary:
            return "{ request, context in try await self.\(name)(request, context: context) }"
        case .inlineUnary:
            return "{ request, context in try self.\(name)(request, context: context) }"
        case .serverStreaming:
            return "{ request, responses, context in try await self.\(name)(request, responses: responses, context: context) }"
        case .clientStreaming:
            return "{ requests, context in try await self.\(name)(requests, context: context) }"
        case .bidirectionalStreaming:
            return "{ requests, responses, context in try await self.\(name)(requests, responses: responses, context: context) }"
        }
    }
}

struct Generator: CodeGenerator {
    var version: String? { "1.0" }
    var supportedFeatures: [Google_Protobuf_Compiler_CodeGeneratorResponse.Feature] { [.proto3Optional] }

    func generate(
        files: [FileDescriptor], parameter: any CodeGeneratorParameter,
        protoCompilerContext: any ProtoCompilerContext, generatorOutputs: any GeneratorOutputs
    ) throws {
        let options = try Options(parameter)
        let namer = SwiftProtobufNamer()
        var generated = Set<String>()
        for file in files {
            let services = file.services.filter { options.services.isEmpty || options.services.contains($0.fullName) }
            guard !services.isEmpty else { continue }
            var out = "// Generated by protoc-gen-curec-rpc from \(file.name) (scripts/generate-protos). Do not edit.\n\n"
            for module in options.imports { out += "import \(module)\n" }
            for service in services {
                generated.insert(service.fullName)
                let methods = try service.methods.map {
                    try Method($0, namer: namer, inline: options.inline.contains($0.fullName))
                }
                out += "\n" + render(service, methods: methods, prefix: namer.typePrefix(forFile: file))
            }
            let base = file.name.hasSuffix(".proto") ? String(file.name.dropLast(6)) : file.name
            try generatorOutputs.add(fileName: base.replacingOccurrences(of: "/", with: "_") + ".rpc.swift", contents: out)
        }
        let missing = options.services.subtracting(generated)
        guard missing.isEmpty else {
            throw GenerationError("no such service in the given files: \(missing.sorted().joined(separator: ", "))")
        }
        let allMethods = Set(files.flatMap { $0.services.flatMap { $0.methods.map(\.fullName) } })
        let unknownInline = options.inline.subtracting(allMethods)
        guard unknownInline.isEmpty else {
            throw GenerationError("Inline names unknown methods: \(unknownInline.sorted().joined(separator: ", "))")
        }
    }

    func render(_ service: ServiceDescriptor, methods: [Method], prefix: String) -> String {
        let name = prefix + service.name
        var out = ""
        let comments = service.protoSourceComments(commentPrefix: "///")
        out += "/// The methods of `\(service.fullName)`.\n"
        if !comments.isEmpty { out += "///\n" + comments }
        out += "public enum \(name) {\n"
        out += "    /// The fully-qualified service name.\n"
        out += "    public static let name = \"\(service.fullName)\"\n\n"
        out += "    /// One descriptor per rpc, named after it.\n"
        out += "    public enum Method {\n"
        for method in methods {
            out += "        /// `\(method.descriptor.name)`: \(method.shape.summary), "
            out += "`\(method.descriptor.inputType.fullName)` to `\(method.descriptor.outputType.fullName)`.\n"
            out += "        public static let \(method.swiftName) = RPCMethod<\(method.request), \(method.response)>(\n"
            out += "            service: \"\(service.fullName)\", name: \"\(method.descriptor.name)\", kind: \(method.shape.kind))\n"
        }
        out += "    }\n\n"
        out += "    /// Every method of the service, in the order of the .proto file.\n"
        out += "    public static let methods: [RPCMethodDescriptor] = [\n"
        for method in methods { out += "        Method.\(method.swiftName).descriptor,\n" }
        out += "    ]\n"
        out += "}\n\n"

        out += "/// What a server implements to serve `\(service.fullName)`: one requirement per method.\n"
        out += "///\n"
        out += "/// Conforming gives ``RPCService/register(into:)``, which routes every method of the\n"
        out += "/// service to these requirements, so adding an rpc to the .proto and regenerating makes\n"
        out += "/// the compiler ask for its implementation.\n"
        out += "public protocol \(name)Handler: RPCService {\n"
        for (index, method) in methods.enumerated() {
            if index > 0 { out += "\n" }
            out += indent(method.comments, by: "    ")
            out += "    \(method.requirement)\n"
        }
        out += "}\n\n"
        out += "extension \(name)Handler {\n"
        out += "    /// Routes every method of `\(service.fullName)` to this handler.\n"
        out += "    public func register(into router: inout RPCRouter) {\n"
        for method in methods {
            out += "        router.\(method.shape.registration)(\(name).Method.\(method.swiftName)) \(method.forwarding)\n"
        }
        out += "    }\n"
        out += "}\n"

        let callable = methods.filter { $0.shape != .bidirectionalStreaming }
        guard !callable.isEmpty else { return out }
        out += "\n"
        out += "/// Calls `\(service.fullName)` over a blocking ``RPCClient``, one call at a time.\n"
        out += "public struct \(name)Client {\n"
        out += "    /// The connection the calls go over.\n"
        out += "    public let connection: RPCClient\n\n"
        out += "    /// Calls the service over `connection`.\n"
        out += "    public init(_ connection: RPCClient) {\n"
        out += "        self.connection = connection\n"
        out += "    }\n"
        for method in callable {
            out += "\n"
            out += indent(method.comments, by: "    ")
            let descriptor = "\(name).Method.\(method.swiftName)"
            switch method.shape {
            case .unary, .inlineUnary:
                out += "    public func \(method.swiftName)(_ request: \(method.request), timeout: Double = 30) throws(RPCError) -> \(method.response) {\n"
                out += "        try connection.unary(\(descriptor), request, timeout: timeout)\n"
            case .serverStreaming:
                out += "    public func \(method.swiftName)(\n"
                out += "        _ request: \(method.request), timeout: Double = 30, onMessage: (\(method.response)) throws -> Void\n"
                out += "    ) throws(RPCError) {\n"
                out += "        try connection.serverStreaming(\(descriptor), request, timeout: timeout, onMessage: onMessage)\n"
            case .clientStreaming:
                out += "    public func \(method.swiftName)(\n"
                out += "        timeout: Double = 30, nextRequest: () throws -> \(method.request)?\n"
                out += "    ) throws(RPCError) -> \(method.response) {\n"
                out += "        try connection.clientStreaming(\(descriptor), timeout: timeout, nextRequest: nextRequest)\n"
            case .bidirectionalStreaming:
                continue
            }
            out += "    }\n"
        }
        out += "}\n"
        return out
    }

    func indent(_ text: String, by prefix: String) -> String {
        guard !text.isEmpty else { return "" }
        return text.split(separator: "\n", omittingEmptySubsequences: false)
            .dropLast(text.hasSuffix("\n") ? 1 : 0)
            .map { $0.isEmpty ? "" : prefix + $0 }
            .joined(separator: "\n") + "\n"
    }
}

Generator().main(nil)

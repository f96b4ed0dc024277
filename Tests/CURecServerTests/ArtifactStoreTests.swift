import Foundation
import Testing
@testable import CURecServer

@Suite struct ArtifactStoreTests {
    private func store() -> ArtifactStore {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("curec-artifacts-\(UUID().uuidString)").path
        return ArtifactStore(root: root)
    }

    @Test func aVersionIsPublishedWholeWithItsNestedFiles() throws {
        let artifacts = store()
        let directory = try artifacts.addVersion(of: "bpr", manifest: ArtifactManifest(kind: .pluginState)) { staging in
            try FileManager.default.createDirectory(atPath: staging + "/nested", withIntermediateDirectories: true)
            try Data([1, 2, 3]).write(to: URL(fileURLWithPath: staging + "/nested/weights.f32"))
            try FileManager.default.createSymbolicLink(atPath: staging + "/link", withDestinationPath: "/nonexistent")
        }
        #expect(directory.hasSuffix("/models/bpr/v1"))
        #expect(FileManager.default.contents(atPath: directory + "/nested/weights.f32") == Data([1, 2, 3]))
        #expect(ArtifactStore.manifest(in: directory)?.kind == .pluginState)
        #expect(artifacts.versions(of: "bpr") == ["v1"])
    }

    @Test func stagingLeftByAStoppedDaemonIsRemovedAtStart() throws {
        let artifacts = store()
        try artifacts.addVersion(of: "bpr", manifest: ArtifactManifest(kind: .pluginState)) { _ in }
        // As a crash mid-write leaves it: a staging directory with a partial file.
        let staging = try artifacts.beginVersion(of: "bpr")
        try Data(repeating: 7, count: 100).write(to: URL(fileURLWithPath: staging + "/partial.f32"))
        #expect(artifacts.removeStaleStaging() == 1)
        #expect(!FileManager.default.fileExists(atPath: staging))
        #expect(artifacts.versions(of: "bpr") == ["v1"])
        #expect(artifacts.removeStaleStaging() == 0)
    }

    /// Several daemons may share one data directory: a start removes only what a stopped
    /// process of this host left, never another live daemon's write or another host's.
    @Test func aStartKeepsTheStagingOfLiveDaemonsAndOtherHosts() throws {
        let artifacts = store()
        let me = DaemonIdentity.current
        var liveNeighbour = artifacts
        liveNeighbour.owner = DaemonIdentity(host: me.host, pid: getppid())
        var otherHost = artifacts
        otherHost.owner = DaemonIdentity(host: "elsewhere.example", pid: me.pid)
        let exited = Process()
        exited.executableURL = URL(fileURLWithPath: "/bin/true")
        try exited.run()
        exited.waitUntilExit()
        var stopped = artifacts
        stopped.owner = DaemonIdentity(host: me.host, pid: exited.processIdentifier)

        let kept = [try liveNeighbour.beginVersion(of: "bpr"), try otherHost.beginVersion(of: "bpr")]
        let left = try stopped.beginVersion(of: "bpr")
        #expect(artifacts.removeStaleStaging() == 1)
        #expect(!FileManager.default.fileExists(atPath: left))
        for staging in kept { #expect(FileManager.default.fileExists(atPath: staging)) }
    }

    @Test func anIdentityTagReadsBackAndStrangeHostNamesAreCleaned() {
        let identity = DaemonIdentity(host: "node 7/a+b", pid: 42)
        #expect(identity.tag == "node-7-a-b+42")
        #expect(DaemonIdentity(tagPrefixOf: Substring(identity.tag + "+0F3A")) == identity)
        #expect(DaemonIdentity(tagPrefixOf: "0F3A-11") == nil)
        #expect(DaemonIdentity(tagPrefixOf: "host+-3+x") == nil)
    }
}

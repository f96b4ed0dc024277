import CURecModels
import CURecTensor
import Foundation
import Testing

@Suite("SASRec user features")
struct SASRecUserFeatureTests {
    /// 64 users over 24 items: noise items 0..<8, cluster A 8..<16, cluster B 16..<24. User u
    /// is of type u mod 2 and prefers cluster A (type 0) or B (type 1). Each training sequence
    /// alternates a random noise item and a random item of the user's cluster:
    /// `[r1, c1, r2, c2]`. After a single noise item nothing in the sequence tells the types
    /// apart; only the user features do (a one-hot of the type plus one random dimension).
    static let users = 64, items = 24, dimension = 3

    static func data(userFeatures: Bool) throws -> SASRecData {
        var rng = Xoshiro256(seed: 21)
        var us: [UInt32] = [], its: [UInt32] = [], features: [Float] = []
        for u in 0..<users {
            let cluster = 8 + 8 * (u % 2)
            for _ in 0..<2 {
                us.append(UInt32(u)); its.append(UInt32(rng.next() % 8))
                us.append(UInt32(u)); its.append(UInt32(cluster + Int(rng.next() % 8)))
            }
            features += [u % 2 == 0 ? 1 : 0, u % 2 == 1 ? 1 : 0, rng.nextGaussian()]
        }
        return try SASRecData(userCount: users, itemCount: items, users: us, items: its,
                              userFeatures: userFeatures ? features : [],
                              userFeatureDimension: userFeatures ? dimension : 0)
    }

    static func config(userFeatures: Bool) -> SASRecConfig {
        SASRecConfig(itemCount: items, maxLength: 4, width: 16, blocks: 2, heads: 2,
                     userCount: userFeatures ? users : 0, userFeatureDimension: userFeatures ? dimension : 0)
    }

    static func options(epochs: Int) -> SASRecTrainingOptions {
        var o = SASRecTrainingOptions()
        o.epochs = epochs
        o.learningRate = 1e-2
        o.batchSize = 16
        o.patience = 0
        o.seed = 5
        return o
    }

    /// After one noise item (uninformative on its own), per user: the fraction of the 8
    /// best-scored items that lie in the user's cluster, and whether the user's cluster has the
    /// higher total score. Both averaged over users.
    static func clusterMetrics(_ model: SASRecModel) throws -> (precision: Double, accuracy: Double) {
        let sequences = (0..<users).map { [Int32(($0 / 2) % 8)] }
        let hidden = try model.hiddenStates(sequences: sequences, users: (0..<users).map { Int32($0) })
        let scores = model.allScores(hidden: hidden, users: users)
        var precision = 0.0, hits = 0
        for u in 0..<users {
            let row = Array(scores[(u * items)..<((u + 1) * items)])
            let own = 8 + 8 * (u % 2), other = 16 - 8 * (u % 2)
            let top = (0..<items).sorted { row[$0] > row[$1] }.prefix(8)
            precision += Double(top.filter { (own..<(own + 8)).contains($0) }.count) / 8
            if row[own..<(own + 8)].reduce(0, +) > row[other..<(other + 8)].reduce(0, +) { hits += 1 }
        }
        return (precision / Double(users), Double(hits) / Double(users))
    }

    @Test("informative user features are learned: the user's cluster ranks first only with them (BCE and softmax)")
    func learnsPreferredCluster() throws {
        for objective in [SASRecObjective.bce, .softmax] {
            var options = Self.options(epochs: 20)
            options.objective = objective
            let with = try SASRecTrainer(config: Self.config(userFeatures: true), options: options,
                                         data: try Self.data(userFeatures: true))
            let before = try Self.clusterMetrics(with.model)
            let learned = try Self.clusterMetrics(try with.train())
            let without = try SASRecTrainer(config: Self.config(userFeatures: false), options: options,
                                            data: try Self.data(userFeatures: false))
            let blind = try Self.clusterMetrics(try without.train())
            #expect(before.precision < 0.7, "\(objective) untrained: \(before)")
            #expect(learned.precision > 0.9 && learned.accuracy > 0.95, "\(objective) with user features: \(learned)")
            // Without them the sequence cannot tell the clusters apart: about half right.
            #expect(blind.precision < 0.7 && blind.accuracy < 0.7, "\(objective) without user features: \(blind)")
        }
    }

    @Test("save and load keep the projected user features: the loaded model scores identically")
    func saveLoad() throws {
        let t = try SASRecTrainer(config: Self.config(userFeatures: true), options: Self.options(epochs: 2),
                                  data: try Self.data(userFeatures: true))
        let model = try t.train()
        let dir = FileManager.default.temporaryDirectory
            .appendingPathComponent("sasrec-users-\(getpid())-\(UInt64.random(in: 0...UInt64.max))").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try SASRecFiles.save(model, to: dir)
        #expect(FileManager.default.fileExists(atPath: dir + "/user_table.f32"))
        let loaded = try SASRecFiles.load(from: dir)
        #expect(loaded.config == model.config)
        #expect(loaded.userFeatures == nil && loaded.userTable.values == model.userTable.values)
        let seqs: [[Int32]] = [[0, 9, 3], [1], [2, 20, 4, 17]], us: [Int32] = [0, 1, 63]
        #expect(try loaded.hiddenStates(sequences: seqs, users: us) == model.hiddenStates(sequences: seqs, users: us))
        // Training a scoring-only model is refused.
        let b = try SASRecBatch(B: 1, T: 2, inputs: [0, 9], targets: [9, 1], negatives: [20, 20], users: [0],
                                config: loaded.config)
        #expect(throws: SASRecError.self) { try loaded.forwardBackward(b, objective: .bce) }
        // A config saved before user features existed still decodes (as a model without them).
        let old = #"{"itemCount":5,"maxLength":4,"width":8,"blocks":1,"heads":1,"hidden":8,"featureDimension":0}"#
        let decoded = try JSONDecoder().decode(SASRecConfig.self, from: Data(old.utf8))
        #expect(decoded == SASRecConfig(itemCount: 5, maxLength: 4, width: 8, blocks: 1, heads: 1))
    }

    @Test("a run with user features resumed from a checkpoint ends with the weights of an uninterrupted run")
    func checkpointResume() throws {
        let data = try Self.data(userFeatures: true)
        let config = Self.config(userFeatures: true), options = Self.options(epochs: 4)
        let expected = try SASRecTrainer(config: config, options: options, data: data).train().parameters.values
        let dir = FileManager.default.temporaryDirectory
            .appendingPathComponent("sasrec-users-ckpt-\(getpid())-\(UInt64.random(in: 0...UInt64.max))").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let first = try SASRecTrainer(config: config, options: options, data: data)
        try first.train(afterEpoch: { (t: SASRecTrainer) throws(SASRecError) in
            if t.state.epoch == 2 { try t.writeCheckpoint(to: dir) }
        })
        let resumed = try SASRecTrainer(config: config, options: options, data: data)
        try resumed.restoreCheckpoint(from: dir)
        #expect(resumed.state.epoch == 2)
        #expect(try resumed.train().parameters.values == expected)
        // Other user features make other data: the checkpoint is refused.
        var us: [UInt32] = [], its: [UInt32] = []
        for (u, s) in data.sequences.enumerated() { for i in s { us.append(UInt32(u)); its.append(UInt32(i)) } }
        let shifted = try SASRecData(userCount: Self.users, itemCount: Self.items, users: us, items: its,
                                     userFeatures: data.userFeatures.map { $0 + 1 }, userFeatureDimension: Self.dimension)
        let other = try SASRecTrainer(config: config, options: options, data: shifted)
        #expect(throws: SASRecError.self) { try other.restoreCheckpoint(from: dir) }
    }

    @Test("typed errors for user feature shapes and configs")
    func errors() throws {
        #expect(throws: SASRecError.userFeatureShapeMismatch(expected: 6, got: 5)) {
            _ = try SASRecModel(config: SASRecConfig(itemCount: 5, userCount: 3, userFeatureDimension: 2),
                                userFeatures: Array(repeating: 0, count: 5), seed: 1)
        }
        #expect(throws: SASRecError.userFeatureShapeMismatch(expected: 6, got: 0)) {
            _ = try SASRecModel(config: SASRecConfig(itemCount: 5, userCount: 3, userFeatureDimension: 2), seed: 1)
        }
        #expect(throws: SASRecError.userFeatureShapeMismatch(expected: 0, got: 2)) {
            _ = try SASRecModel(config: SASRecConfig(itemCount: 5), userFeatures: [1, 2], seed: 1)
        }
        #expect(throws: SASRecError.self) {
            try SASRecConfig(itemCount: 5, userCount: 0, userFeatureDimension: 2).validate()
        }
        #expect(throws: SASRecError.userFeatureShapeMismatch(expected: 4, got: 3)) {
            _ = try SASRecData(userCount: 2, itemCount: 3, users: [0, 0], items: [0, 1],
                               userFeatures: [0, 0, 0], userFeatureDimension: 2)
        }
        // The trainer checks that config and data agree on user features.
        let data = try Self.data(userFeatures: true)
        #expect(throws: SASRecError.self) {
            _ = try SASRecTrainer(config: Self.config(userFeatures: false), options: Self.options(epochs: 1), data: data)
        }
        var wrongUsers = Self.config(userFeatures: true)
        wrongUsers.userCount = 10
        #expect(throws: SASRecError.self) {
            _ = try SASRecTrainer(config: wrongUsers, options: Self.options(epochs: 1), data: data)
        }
    }
}

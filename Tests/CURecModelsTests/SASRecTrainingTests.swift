import CURecModels
import CURecTensor
import Foundation
import Testing

@Suite("SASRec training")
struct SASRecTrainingTests {
    /// 40 users over 24 items. User u walks the items in steps of +1 (even users) or +5 (odd
    /// users) starting at u mod 24, for 14 training items; the validation item is the next
    /// step. Only the sequence tells the two walks apart, so a model that reads it can rank
    /// the validation item first; popularity cannot.
    static func walks(features: Bool = false) throws -> SASRecData {
        let n = 24
        var users: [UInt32] = [], items: [UInt32] = [], vu: [UInt32] = [], vi: [UInt32] = []
        for u in 0..<40 {
            let step = u % 2 == 0 ? 1 : 5
            for k in 0..<14 {
                users.append(UInt32(u))
                items.append(UInt32((u + k * step) % n))
            }
            vu.append(UInt32(u))
            vi.append(UInt32((u + 14 * step) % n))
        }
        // Features: a one-hot of item mod 4 (2 dims would do; 4 keeps it generic).
        let f = features ? (0..<n).flatMap { i in (0..<4).map { Float($0 == i % 4 ? 1 : 0) } } : []
        return try SASRecData(userCount: 40, itemCount: n, users: users, items: items,
                              validationUsers: vu, validationItems: vi,
                              features: f, featureDimension: features ? 4 : 0)
    }

    static func options(epochs: Int, patience: Int = 0, objective: SASRecObjective = .bce) -> SASRecTrainingOptions {
        var o = SASRecTrainingOptions()
        o.epochs = epochs
        o.learningRate = 1e-2
        o.batchSize = 16
        o.patience = patience
        o.objective = objective
        o.seed = 7
        return o
    }

    static func config(features: Int = 0) -> SASRecConfig {
        SASRecConfig(itemCount: 24, maxLength: 8, width: 16, blocks: 2, heads: 2, featureDimension: features)
    }

    @Test("learns sequential patterns: validation NDCG@10 above 0.8 with BCE and softmax, with and without features")
    func learnsWalks() throws {
        for (objective, features) in [(SASRecObjective.bce, false), (.softmax, false), (.bce, true)] {
            let data = try Self.walks(features: features)
            let trainer = try SASRecTrainer(config: Self.config(features: features ? 4 : 0),
                                            options: Self.options(epochs: 40, patience: 10, objective: objective),
                                            data: data)
            let before = try trainer.validationNDCG()
            var reports: [SASRecEpochReport] = []
            try trainer.train(progress: { reports.append($0) })
            let after = try trainer.validationNDCG()
            #expect(before < 0.5, "\(objective) features \(features): untrained NDCG \(before)")
            #expect(after > 0.8, "\(objective) features \(features): trained NDCG \(after)")
            // The model left behind is the best one seen.
            #expect(abs(after - trainer.state.bestNDCG) < 1e-9)
            #expect(reports.first!.loss > reports.last!.loss)
        }
    }

    @Test("the same seed gives identical weights; another seed does not")
    func deterministic() throws {
        func run(_ seed: UInt64) throws -> [Float] {
            var o = Self.options(epochs: 3)
            o.seed = seed
            let t = try SASRecTrainer(config: Self.config(features: 4), options: o, data: try Self.walks(features: true))
            return try t.train().parameters.values
        }
        let a = try run(1), b = try run(1), c = try run(2)
        #expect(a == b)
        #expect(a != c)
    }

    @Test("a run resumed from a checkpoint ends with exactly the weights of an uninterrupted run")
    func checkpointResume() throws {
        let data = try Self.walks(features: true)
        let config = Self.config(features: 4), options = Self.options(epochs: 4, patience: 3)
        let straight = try SASRecTrainer(config: config, options: options, data: data)
        let expected = try straight.train().parameters.values

        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sasrec-ckpt-\(getpid())-\(UInt64.random(in: 0...UInt64.max))").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let first = try SASRecTrainer(config: config, options: options, data: data)
        try first.train(afterEpoch: { (t: SASRecTrainer) throws(SASRecError) in
            if t.state.epoch == 2 { try t.writeCheckpoint(to: dir) }
        })
        let resumed = try SASRecTrainer(config: config, options: options, data: data)
        try resumed.restoreCheckpoint(from: dir)
        #expect(resumed.state.epoch == 2)
        #expect(try resumed.train().parameters.values == expected)

        // A checkpoint of another config is refused and changes nothing.
        var otherOptions = options
        otherOptions.learningRate = 5e-3
        let other = try SASRecTrainer(config: config, options: otherOptions, data: data)
        #expect(throws: SASRecError.self) { try other.restoreCheckpoint(from: dir) }
        #expect(other.state.epoch == 0)
    }

    @Test("early stopping: stops after `patience` evaluations without improvement and keeps the best weights")
    func earlyStopping() throws {
        var o = Self.options(epochs: 50, patience: 2)
        o.learningRate = 1e-12   // the weights barely move, so NDCG never improves after epoch 1
        let t = try SASRecTrainer(config: Self.config(), options: o, data: try Self.walks())
        var reports: [SASRecEpochReport] = []
        try t.train(progress: { reports.append($0) })
        #expect(t.state.stopped)
        #expect(t.state.epoch == 3)
        #expect(t.state.bestEpoch == 1)
        #expect(reports.count == 3 && reports.last!.stopping)
    }

    @Test("save and load: the loaded model scores exactly like the trained one, without the features")
    func saveLoad() throws {
        let t = try SASRecTrainer(config: Self.config(features: 4), options: Self.options(epochs: 3),
                                  data: try Self.walks(features: true))
        let model = try t.train()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sasrec-save-\(getpid())-\(UInt64.random(in: 0...UInt64.max))").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try SASRecFiles.save(model, to: dir)
        let loaded = try SASRecFiles.load(from: dir)
        #expect(loaded.config == model.config)
        let seqs: [[Int32]] = [[0, 1, 2], [5, 10, 15, 20, 1, 6, 11, 16, 21, 2], []]
        let h1 = try model.hiddenStates(sequences: seqs), h2 = try loaded.hiddenStates(sequences: seqs)
        #expect(h1 == h2)
        #expect(h1[(2 * 16)..<(3 * 16)].allSatisfy { $0 == 0 })
        let candidates: [UInt32] = Array(0..<24)
        var s1 = [Float](repeating: 0, count: 24), s2 = s1
        try h1.withUnsafeBufferPointer { h in try candidates.withUnsafeBufferPointer { c in
            try s1.withUnsafeMutableBufferPointer { try model.scores(hidden: h.baseAddress!, candidates: c, into: $0) }
            try s2.withUnsafeMutableBufferPointer { try loaded.scores(hidden: h.baseAddress!, candidates: c, into: $0) }
        }}
        #expect(s1 == s2)
        // A scoring-only model refuses to train.
        let b = try SASRecBatch(B: 1, T: 2, inputs: [0, 1], targets: [1, 2], negatives: [3, 3], config: loaded.config)
        #expect(throws: SASRecError.self) { try loaded.forwardBackward(b, objective: .bce) }
        // Batched hidden states equal one-at-a-time ones (padding is inert at inference too).
        let single = try model.hiddenStates(sequences: [seqs[0]])
        for i in 0..<16 { #expect(abs(single[i] - h1[i]) < 1e-5) }
    }

    @Test("typed errors for bad configs, data, features and items")
    func errors() throws {
        #expect(throws: SASRecError.invalidConfig("width 10 is not divisible by heads 3")) {
            try SASRecConfig(itemCount: 5, width: 10, heads: 3).validate()
        }
        #expect(throws: SASRecError.featureShapeMismatch(expected: 10, got: 9)) {
            _ = try SASRecModel(config: SASRecConfig(itemCount: 5, featureDimension: 2), features: Array(repeating: 0, count: 9), seed: 1)
        }
        #expect(throws: SASRecError.self) {
            _ = try SASRecData(userCount: 2, itemCount: 3, users: [1, 0], items: [0, 1])   // not sorted by user
        }
        #expect(throws: SASRecError.itemOutOfRange(item: 9, itemCount: 3)) {
            _ = try SASRecData(userCount: 1, itemCount: 3, users: [0, 0], items: [0, 9])
        }
        #expect(throws: SASRecError.self) {
            _ = try SASRecData(userCount: 2, itemCount: 3, users: [0, 1], items: [0, 1])   // nobody has 2 items
        }
        let model = try SASRecModel(config: SASRecConfig(itemCount: 5, maxLength: 4, width: 8), seed: 1)
        #expect(throws: SASRecError.itemOutOfRange(item: 5, itemCount: 5)) { _ = try model.hiddenStates(sequences: [[1, 5]]) }
        #expect(throws: SASRecError.self) {
            _ = try SASRecBatch(B: 1, T: 5, inputs: [0, 1, 2, 3, 4], targets: [1, 2, 3, 4, 0], negatives: [0, 0, 0, 0, 1],
                                config: model.config)   // T > maxLength
        }
        var bad = SASRecTrainingOptions()
        bad.learningRate = 0
        #expect(throws: SASRecError.invalidOption("learning rate must be positive, got 0.0")) { try bad.validate() }
    }
}

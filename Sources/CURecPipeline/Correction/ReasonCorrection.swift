import Foundation

/// Settings of reason correction (stage 5).
public struct CorrectionConfig: Sendable, Codable, Equatable {
    /// Candidates per subject: the greedy reason plus `candidates - 1` samples.
    public var candidates = 4
    /// Sampling temperature of the extra candidates.
    public var temperature: Float = 0.9
    /// Top-k of the extra candidates (0: full distribution).
    public var topK = 40
    /// Further rounds of `candidates - 1` samples for subjects whose every candidate lost all
    /// its sentences to the verifier.
    public var regenerationRounds = 1
    /// Subjects handled per generation batch.
    public var subjectsPerBatch = 8
    public var seed: UInt64 = 5

    public init() {}
}

/// Errors of building reason tables.
public enum ReasonCorrectionError: Error, CustomStringConvertible, Sendable {
    case invalidConfig(String)
    case writing(ReasonWriterError)
    case reward(ReasonRewardError)
    case cancelled

    public var description: String {
        switch self {
        case .invalidConfig(let detail): return "invalid correction config: \(detail)"
        case .writing(let error): return error.description
        case .reward(let error): return error.description
        case .cancelled: return "reason correction was cancelled"
        }
    }
}

/// Builds the reason tables of the pipeline: one greedy reason per subject (the pretrain-only
/// and RL-without-correction variants) and the corrected table (stage 5: best of K under the
/// reward, failing sentences removed, regenerated when nothing survives).
public enum ReasonCorrection {
    /// Every user, then every item, of a dataset with these sizes.
    public static func allSubjects(userCount: Int, itemCount: Int) -> [ReasonSubject] {
        (0..<userCount).map { .user(Int32($0)) } + (0..<itemCount).map { .item(Int32($0)) }
    }

    /// One greedy reason per subject, scored but not corrected.
    ///
    /// - Parameters:
    ///   - prompt: the corpus prompt of a subject (``CorpusBuilder/userPrompt(user:)``, ``CorpusBuilder/itemPrompt(item:)``).
    ///   - userCount, itemCount: sizes of the embedding matrices.
    ///   - progress: `(done, total)` subjects.
    public static func greedyTable(
        subjects: [ReasonSubject], prompt: (ReasonSubject) -> String, writer: ReasonWriter, rewarder: ReasonRewarder,
        userCount: Int, itemCount: Int, progress: (Int, Int) -> Void = { _, _ in },
        isCancelled: () -> Bool = { false }
    ) throws(ReasonCorrectionError) -> ReasonTable {
        var table = emptyTable(userCount: userCount, itemCount: itemCount, dimension: rewarder.embedder.dimension)
        let chunk = max(writer.batchSize, 1)
        var start = 0
        while start < subjects.count {
            if isCancelled() { throw .cancelled }
            let batch = Array(subjects[start..<min(subjects.count, start + chunk)])
            let written: [WrittenReason]
            do {
                written = try writer.write(prompts: batch.map(prompt), temperature: 0, isCancelled: isCancelled)
            } catch {
                if case .cancelled = error { throw .cancelled }
                throw .writing(error)
            }
            let scored: [(score: ReasonScore, embedding: [Float]?)]
            do {
                scored = try rewarder.scoreAndEmbed(zip(batch, written).map { ($0, $1.reason) })
            } catch {
                throw .reward(error)
            }
            for (index, subject) in batch.enumerated() {
                let entry = ReasonTableEntry(
                    subject: subject, text: written[index].reason, reward: scored[index].score.total,
                    collaborative: scored[index].score.collaborative, checksPassed: scored[index].score.checksPassed,
                    failedChecks: scored[index].score.failedChecks, removedSentences: 0, candidates: 1)
                place(entry, embedding: scored[index].embedding, in: &table)
            }
            start += batch.count
            progress(start, subjects.count)
        }
        return table
    }

    /// Stage 5: for each subject, `config.candidates` reasons (the greedy one from `greedy`
    /// when given, else written greedily here, plus samples); every candidate loses the
    /// sentences whose claims fail the verifier and those that are not well-formed
    /// (``isWellFormed(_:)``); among the surviving texts, one passing every check beats one
    /// that does not, then the highest reward wins and is kept. A subject whose candidates all end up empty gets `regenerationRounds` more
    /// rounds of samples; if still nothing survives its entry is empty.
    public static func correctedTable(
        subjects: [ReasonSubject], prompt: (ReasonSubject) -> String, writer: ReasonWriter, rewarder: ReasonRewarder,
        greedy: ReasonTable?, userCount: Int, itemCount: Int, config: CorrectionConfig,
        progress: (Int, Int) -> Void = { _, _ in }, isCancelled: () -> Bool = { false }
    ) throws(ReasonCorrectionError) -> ReasonTable {
        guard config.candidates >= 1, config.subjectsPerBatch >= 1, config.regenerationRounds >= 0,
              config.temperature > 0, config.topK >= 0 else {
            throw .invalidConfig("candidates >= 1, subjectsPerBatch >= 1, regenerationRounds >= 0, temperature > 0, topK >= 0")
        }
        var table = emptyTable(userCount: userCount, itemCount: itemCount, dimension: rewarder.embedder.dimension)
        var start = 0
        var round = 0
        let greedyEntries = greedy?.entriesBySubject()
        while start < subjects.count {
            if isCancelled() { throw .cancelled }
            let batch = Array(subjects[start..<min(subjects.count, start + config.subjectsPerBatch)])
            // Candidate reason texts per subject.
            var candidates = [[String]](repeating: [], count: batch.count)
            if let greedyEntries {
                for (index, subject) in batch.enumerated() {
                    if let entry = greedyEntries[subject] { candidates[index].append(entry.text) }
                }
            } else {
                let written = try write(writer, batch.map(prompt), temperature: 0, topK: 0, seed: 0, isCancelled)
                for index in batch.indices { candidates[index].append(written[index].reason) }
            }
            let samples = config.candidates - 1
            var pending = Array(batch.indices)
            var rounds = 0
            var chosen = [(text: String, score: ReasonScore, embedding: [Float]?, removed: Int)?](repeating: nil, count: batch.count)
            var tried = [Int](repeating: 0, count: batch.count)
            while true {
                if samples > 0 {
                    var prompts: [String] = []
                    var owners: [Int] = []
                    for index in pending {
                        for _ in 0..<samples { prompts.append(prompt(batch[index])); owners.append(index) }
                    }
                    round += 1
                    let written = try write(writer, prompts, temperature: config.temperature, topK: config.topK,
                                            seed: config.seed &+ UInt64(round) &* 0x9E37_79B9, isCancelled)
                    for (owner, text) in zip(owners, written) { candidates[owner].append(text.reason) }
                }
                // Filter every candidate, score the survivors in one call.
                var queries: [(subject: ReasonSubject, text: String?)] = []
                var queryOwner: [(index: Int, removed: Int)] = []
                for index in pending {
                    let context = rewarder.context(batch[index])
                    tried[index] += candidates[index].count
                    for text in candidates[index] where !text.isEmpty {
                        let filtered = rewarder.verifier.filterSentences(text, context: context)
                        let kept = filtered.kept.filter(Self.isWellFormed)
                        guard !kept.isEmpty else { continue }
                        queries.append((batch[index], kept.joined(separator: " ")))
                        queryOwner.append((index, filtered.removed.count + filtered.kept.count - kept.count))
                    }
                }
                let scored: [(score: ReasonScore, embedding: [Float]?)]
                do {
                    scored = try rewarder.scoreAndEmbed(queries)
                } catch {
                    throw .reward(error)
                }
                for (slot, owner) in queryOwner.enumerated() {
                    let candidate = (text: queries[slot].text ?? "", score: scored[slot].score,
                                     embedding: scored[slot].embedding, removed: owner.removed)
                    // Candidates passing every check win over those that do not, then the higher reward.
                    if let current = chosen[owner.index], !Self.better(candidate.score, than: current.score) { continue }
                    chosen[owner.index] = candidate
                }
                pending = pending.filter { chosen[$0] == nil }
                if pending.isEmpty || rounds >= config.regenerationRounds || samples == 0 { break }
                rounds += 1
                for index in pending { candidates[index] = [] }
            }
            for (index, subject) in batch.enumerated() {
                let entry: ReasonTableEntry
                if let best = chosen[index] {
                    entry = ReasonTableEntry(subject: subject, text: best.text, reward: best.score.total,
                                             collaborative: best.score.collaborative, checksPassed: best.score.checksPassed,
                                             failedChecks: best.score.failedChecks, removedSentences: best.removed,
                                             candidates: tried[index])
                } else {
                    entry = ReasonTableEntry(subject: subject, text: "", reward: rewarder.config.missingReasonReward,
                                             collaborative: 0, checksPassed: false,
                                             failedChecks: [ReasonCheck.notEmpty.rawValue], removedSentences: 0,
                                             candidates: tried[index])
                }
                place(entry, embedding: chosen[index]?.embedding, in: &table)
            }
            start += batch.count
            progress(start, subjects.count)
        }
        return table
    }

    /// Whether `a` should replace `b`: passing every check first, then the higher reward.
    static func better(_ a: ReasonScore, than b: ReasonScore) -> Bool {
        if a.checksPassed != b.checksPassed { return a.checksPassed }
        return a.total > b.total
    }

    /// A sentence worth keeping: at least four words with letters, beginning with a letter or
    /// a quote, ending in sentence punctuation, and no left-over format text (markers,
    /// numbered steps, section names).
    public static func isWellFormed(_ sentence: String) -> Bool {
        let trimmed = sentence.trimmingCharacters(in: .whitespacesAndNewlines)
        guard let first = trimmed.first, let last = trimmed.last else { return false }
        guard first.isLetter || first == "\"" || first == "'" else { return false }
        guard ".!?\"')".contains(last) else { return false }
        let words = trimmed.split(whereSeparator: \.isWhitespace).filter { $0.contains(where: \.isLetter) }
        guard words.count >= 4 else { return false }
        for marker in ["###", "Task:", "Instruction", "Reasoning", "<|", "|>"] where trimmed.contains(marker) { return false }
        return true
    }

    static func write(_ writer: ReasonWriter, _ prompts: [String], temperature: Float, topK: Int, seed: UInt64,
                      _ isCancelled: () -> Bool) throws(ReasonCorrectionError) -> [WrittenReason] {
        do {
            return try writer.write(prompts: prompts, temperature: temperature, topK: topK, seed: seed, isCancelled: isCancelled)
        } catch {
            if case .cancelled = error { throw .cancelled }
            throw .writing(error)
        }
    }

    static func emptyTable(userCount: Int, itemCount: Int, dimension: Int) -> ReasonTable {
        ReasonTable(entries: [], userEmbeddings: [Float](repeating: 0, count: userCount * dimension),
                    itemEmbeddings: [Float](repeating: 0, count: itemCount * dimension), dimension: dimension)
    }

    static func place(_ entry: ReasonTableEntry, embedding: [Float]?, in table: inout ReasonTable) {
        table.entries.append(entry)
        guard let embedding, embedding.count == table.dimension else { return }
        let d = table.dimension
        switch entry.subject {
        case .user(let user):
            let row = Int(user) * d
            guard row >= 0, row + d <= table.userEmbeddings.count else { return }
            table.userEmbeddings.replaceSubrange(row..<(row + d), with: embedding)
        case .item(let item):
            let row = Int(item) * d
            guard row >= 0, row + d <= table.itemEmbeddings.count else { return }
            table.itemEmbeddings.replaceSubrange(row..<(row + d), with: embedding)
        }
    }
}

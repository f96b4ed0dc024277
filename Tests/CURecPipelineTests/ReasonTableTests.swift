import Foundation
import Testing
@testable import CURecPipeline

@Suite struct ReasonTableTests {
    @Test func aTableRoundTripsThroughItsFiles() throws {
        let directory = NSTemporaryDirectory() + "curec-table-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let entries = [
            ReasonTableEntry(subject: .user(0), text: "You like \"dramas\" | a lot.", reward: 0.7, collaborative: 0.8,
                             checksPassed: true, failedChecks: [], removedSentences: 1, candidates: 3),
            ReasonTableEntry(subject: .item(1), text: "", reward: -1, collaborative: 0, checksPassed: false,
                             failedChecks: ["not-empty"], removedSentences: 0, candidates: 3),
        ]
        let table = ReasonTable(entries: entries, userEmbeddings: [1, 2, 3, 4], itemEmbeddings: [5, 6, 7, 8], dimension: 2)
        try table.write(to: directory)
        let read = try ReasonTable.read(from: directory)
        #expect(read.entries == entries)
        #expect(read.userEmbeddings == [1, 2, 3, 4] && read.itemEmbeddings == [5, 6, 7, 8] && read.dimension == 2)
        #expect(read.entriesBySubject()[.item(1)]?.failedChecks == ["not-empty"])
        let summary = read.summary
        #expect(summary.entries == 2 && summary.nonEmpty == 1)
        #expect(abs(summary.meanReward - (-0.15)) < 1e-12)
        #expect(summary.passRate == 0.5)
    }

    @Test func aDamagedTableIsRefusedWithItsPath() throws {
        let directory = NSTemporaryDirectory() + "curec-table-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let table = ReasonTable(entries: [], userEmbeddings: [1, 2], itemEmbeddings: [3, 4], dimension: 2)
        try table.write(to: directory)
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: directory + "/item_embeddings.f32"))
        #expect(throws: ReasonTableError.self) { try ReasonTable.read(from: directory) }
        #expect(throws: ReasonTableError.self) { try ReasonTable.read(from: directory + "-missing") }
    }

    @Test func wellFormedSentencesAreWholeSentencesWithoutFormatText() {
        #expect(ReasonCorrection.isWellFormed("Fans of quiet dramas will enjoy this film."))
        #expect(ReasonCorrection.isWellFormed("\"Fargo\" (1996) viewers will like it!"))
        #expect(!ReasonCorrection.isWellFormed("2). 8):"))
        #expect(!ReasonCorrection.isWellFormed("Task: user this title)."))
        #expect(!ReasonCorrection.isWellFormed("Good film."))
        #expect(!ReasonCorrection.isWellFormed("### Reason Fans of dramas like it."))
        #expect(!ReasonCorrection.isWellFormed("Fans of dramas will like it and"))
    }

    @Test func extractReasonTakesTheReasonBlockOnly() {
        let completion = "1. They like dramas.\n### Reason\nYou enjoy slow dramas.\n### End\n"
        #expect(ReasonWriter.extractReason(from: completion) == "You enjoy slow dramas.")
        #expect(ReasonWriter.extractReason(from: "1. Steps only") == "")
        #expect(ReasonWriter.extractReason(from: "### Reasoning\n1. Steps again") == "")
        #expect(ReasonWriter.extractReason(from: "### Reasoning\n1. Step\n### Reason\nKept.\n### End") == "Kept.")
        #expect(ReasonWriter.extractReason(from: "### Reason\nCut short ### Task") == "Cut short")
        #expect(ReasonWriter.extractReason(from: "### Reason\nThen it ended.<|endoftext|>### Task") == "Then it ended.")
    }
}

import Foundation
import Testing
@testable import CURecData
@testable import CURecPipeline

@Suite struct VerifierTests {
    let dataset = Synthetic.dataset()
    let split: LeaveOneOutSplit
    let verifier: ReasonVerifier
    /// User 0 (comedy fan) about "Pizza Night" (item 4, Comedy, 1995), cut off at the end of training.
    let context: ReasonContext

    init() {
        split = LeaveOneOutSplit(dataset)
        verifier = ReasonVerifier(dataset: dataset)
        context = ReasonContext(user: 0, item: 4, cutoff: split.trainTimesByUser[0].last)
    }

    private func failed(_ text: String, _ context: ReasonContext? = nil) -> [CheckResult] {
        verifier.verify(text, context: context ?? self.context).failures
    }

    @Test func trueClaimsPass() {
        // User 0 watched "Big Wedding Day" (item 2, 1993, Comedy Romance) in training.
        let text = "Because you watched \"Big Wedding Day\" (1993) and enjoy comedies, this 1995 comedy should suit you."
        let verdict = verifier.verify(text, context: context)
        #expect(verdict.failures.isEmpty, "\(verdict.failures)")
        #expect(verdict.penalty == 0)
        let checks = Set(verdict.passed.map(\.check))
        #expect(checks.isSuperset(of: [.titleExists, .watchedBeforeCutoff, .itemYear, .itemGenre, .tasteSupported]))
        // Unquoted titles, a moved article, decades and "it is" also resolve.
        #expect(failed("Fans of Big Wedding Day love it; it is a romantic 1990s comedy.", ReasonContext(user: 0, item: 2, cutoff: context.cutoff)).isEmpty)
        #expect(failed("The Usual Strangers (1968) is a drama.").isEmpty)
    }

    @Test func catchesPlantedFalseTitles() {
        let failures = failed("Because you watched \"Moonlight Zebra Heist\", this comedy fits you.")
        #expect(failures.count == 1)
        #expect(failures.first?.check == .titleExists)
        #expect(failures.first?.text == "\"Moonlight Zebra Heist\"")
        // An unquoted capitalised non-title after "you watched" is caught too.
        #expect(failed("Because you watched Moonlight Zebra Heist, this comedy fits you.").map(\.check) == [.titleExists])
    }

    @Test func catchesWrongYearsAndDecades() {
        let year = failed("\"Big Wedding Day\" (1987) is one of your favourites.")
        #expect(year.map(\.check) == [.itemYear])
        #expect(year.first?.text == "(1987)")
        let decade = failed("This 1970s comedy suits you.")
        #expect(decade.map(\.check) == [.itemDecade])
        #expect(decade.first?.text == "1970s")
        #expect(failed("It is a comedy from the '80s.").map(\.check) == [.itemDecade])
        #expect(failed("It came out in 1995.").isEmpty)
        #expect(failed("This film came out in 1994.").map(\.check) == [.itemYear])
    }

    @Test func catchesWrongGenres() {
        let failures = failed("This western is exactly your kind of film.")
        #expect(failures.map(\.check) == [.itemGenre])
        #expect(failures.first?.text == "western")
        // A genre attributed to a named title is checked against that title.
        #expect(failed("You liked the thriller \"Big Wedding Day\" (1993).").map(\.check) == [.itemGenre])
        // Plural and adjective forms are recognised.
        #expect(failed("It is one of the great thrillers.").map(\.check) == [.itemGenre])
        #expect(failed("It is a romantic comedy.", ReasonContext(user: 0, item: 2, cutoff: context.cutoff)).isEmpty)
        // A taste the user never showed is unsupported.
        #expect(failed("You love thrillers.").map(\.check) == [.tasteSupported])
    }

    @Test func catchesClaimsFromTheFuture() {
        // The validation item is consumed after the training cut-off.
        let future = failed("Since you watched \"Quokka Validation Only\" (2001), this comedy suits you.")
        #expect(future.map(\.check) == [.watchedBeforeCutoff])
        let mention = failed("Fans of \"Quokka Validation Only\" (2001) also like this comedy.")
        #expect(mention.map(\.check) == [.notFromFuture])
        #expect(mention.first?.text == "\"Quokka Validation Only\"")
        // With a later cut-off the same mention is history, not future.
        let later = ReasonContext(user: 0, item: 4, cutoff: Int64.max)
        #expect(failed("Since you watched \"Quokka Validation Only\" (2001), this comedy suits you.", later).isEmpty)
        // Never watched at all.
        #expect(failed("Because you watched \"Machine Dawn\" (1979), this comedy suits you.").map(\.check) == [.watchedBeforeCutoff])
        // The item itself may be named even though it lies after the cut-off.
        let next = ReasonContext(user: 0, item: 19, cutoff: context.cutoff)
        #expect(failed("The next title is \"Zyzzyva Planted Test\" (2002).", next).isEmpty)
    }

    @Test func formatChecks() {
        #expect(failed("  ").map(\.check).contains(.notEmpty))
        #expect(failed("### Reason\nThis comedy suits you.").map(\.check).contains(.noMarkers))
        #expect(failed("This comedy suits you.<|endoftext|>").map(\.check).contains(.noMarkers))
        #expect(failed("1. This comedy suits you.").map(\.check).contains(.noMarkers))
        let repeated = failed("This comedy suits you. You will like it. This comedy suits you.")
        #expect(repeated.map(\.check) == [.noRepetition])
        #expect(repeated.first?.text == "This comedy suits you.")
        let long = String(repeating: "You will like it a lot, really. ", count: 3) + String(repeating: "x", count: 500)
        #expect(failed(long).map(\.check).contains(.length))
    }

    @Test func sentenceFilterRemovesExactlyTheBadSentences() {
        let good1 = "Because you watched \"Big Wedding Day\" (1993), this comedy should suit you."
        let bad1 = "It is a gripping western."
        let good2 = "Viewers aged under 18 like it too."
        let bad2 = "Fans of \"Quokka Validation Only\" (2001) will agree."
        let bad3 = "You also loved \"Invisible Title Nowhere\"."
        let text = [good1, bad1, good2, bad2, bad3].joined(separator: " ")
        let filtered = verifier.filterSentences(text, context: context)
        #expect(filtered.kept == [good1, good2])
        #expect(filtered.removed.map(\.sentence) == [bad1, bad2, bad3])
        #expect(filtered.text == good1 + " " + good2)
        #expect(verifier.verify(filtered.text, context: context).isClean)
        #expect(filtered.removed[0].failures.map(\.check) == [.itemGenre])
        #expect(filtered.removed[1].failures.map(\.check) == [.notFromFuture])
        // A clean text is untouched; titles with periods do not split sentences.
        #expect(verifier.filterSentences(good1, context: context).text == good1)
    }

    @Test func sentencesDoNotSplitInsideTitles() {
        let items = [ItemInfo(externalID: "1", title: "Mrs. Brown (Her Majesty, Mrs. Brown)", year: 1997, genres: ["Drama"]),
                     ItemInfo(externalID: "2", title: "L.A. Confidential", year: 1997, genres: ["Crime", "Film-Noir"])]
        let small = RecDataset(name: "t", users: [UserInfo(externalID: "u", age: 30, gender: "F", occupation: "writer")], items: items,
                               interactions: [Interaction(user: 0, item: 0, rating: 5, timestamp: 1)])
        let check = ReasonVerifier(dataset: small)
        let text = "You watched \"Mrs. Brown\" (1997). This film-noir crime story suits you."
        #expect(check.sentences(of: text).count == 2)
        #expect(check.verify(text, context: ReasonContext(user: 0, item: 1, cutoff: 1)).isClean)
        #expect(check.verify("L.A. Confidential (1997) is a noir.", context: ReasonContext(user: 0, item: 1, cutoff: 1)).isClean)
    }
}

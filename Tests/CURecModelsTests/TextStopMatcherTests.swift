import CURecModels
import Testing

@Suite("Text stop strings")
struct TextStopMatcherTests {
    private func scalars(_ text: String) -> [Unicode.Scalar] { Array(text.unicodeScalars) }

    @Test("no stop strings: everything is safe")
    func noStops() {
        let matcher = TextStopMatcher(stops: ["", ""])
        #expect(matcher.check(scalars("Hello")) == .running(safe: 5))
    }

    @Test("a tail that could begin a stop string is held back until it is decided")
    func holdsPrefix() {
        let matcher = TextStopMatcher(stops: ["\n\nUser:"])
        #expect(matcher.check(scalars("It is good.\n")) == .running(safe: 11))
        #expect(matcher.check(scalars("It is good.\n\nUs")) == .running(safe: 11))
        // The tail turned out not to be the stop string: it is released.
        #expect(matcher.check(scalars("It is good.\n\nUsually")) == .running(safe: 20))
    }

    @Test("the earliest of several stop strings ends the text")
    func earliestStop() {
        let matcher = TextStopMatcher(stops: ["END", "."])
        #expect(matcher.check(scalars("One. Two END")) == .stopped(at: 3))
        #expect(matcher.check(scalars("END.")) == .stopped(at: 0))
    }

    @Test("matching is by scalars, across multi-scalar characters")
    func scalarsMatch() {
        let matcher = TextStopMatcher(stops: ["🎬"])
        #expect(matcher.check(scalars("Films 🎬 are")) == .stopped(at: 6))
        #expect(matcher.check(scalars("Café")) == .running(safe: 4))
    }
}

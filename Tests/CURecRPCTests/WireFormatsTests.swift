import Testing
@testable import CURecRPC

@Suite struct WireFormatsTests {
    @Test func parsesEveryTimeoutUnit() {
        #expect(WireFormats.parseTimeout("1H") == 3_600_000_000_000)
        #expect(WireFormats.parseTimeout("2M") == 120_000_000_000)
        #expect(WireFormats.parseTimeout("3S") == 3_000_000_000)
        #expect(WireFormats.parseTimeout("1m") == 1_000_000)
        #expect(WireFormats.parseTimeout("250u") == 250_000)
        #expect(WireFormats.parseTimeout("99999999n") == 99_999_999)
    }

    @Test func refusesMalformedTimeouts() {
        for text in ["", "S", "10", "123456789S", "1x", "-1S", "1.5S", " 1S"] {
            #expect(WireFormats.parseTimeout(text) == nil, "accepted \(text)")
        }
    }

    @Test func percentEncodingRoundTripsAnyText() {
        let message = "\t\ntest with whitespace\r\nand Unicode BMP ☺ and non-BMP 😈\t\n 100%"
        let encoded = WireFormats.percentEncode(message)
        #expect(encoded.utf8.allSatisfy { $0 >= 0x20 && $0 <= 0x7E })
        #expect(!encoded.contains("\n"))
        #expect(WireFormats.percentDecode(encoded) == message)
    }

    @Test func percentDecodingKeepsMalformedEscapes() {
        #expect(WireFormats.percentDecode("50%") == "50%")
        #expect(WireFormats.percentDecode("%zz ok") == "%zz ok")
        #expect(WireFormats.percentDecode("a%20b") == "a b")
    }

    @Test func binaryMetadataIsBase64WithOptionalPadding() {
        let bytes: [UInt8] = [0xAB, 0xAB, 0xAB]
        #expect(Base64.encode([0x01]) == "AQ")
        #expect(Base64.decode("AQ") == [0x01])
        #expect(Base64.decode("AQ==") == [0x01])
        #expect(Base64.decode(Base64.encode(bytes)) == bytes)
        #expect(Base64.decode("A") == nil)
        var metadata = Metadata()
        let accepted = metadata.addWireHeader(name: "x-trace-bin", value: "q6ur")
        #expect(accepted)
        #expect(metadata.firstBinary("x-trace-bin") == bytes)
        let rejected = !metadata.addWireHeader(name: "x-bad-bin", value: "!!!")
        #expect(rejected)
    }

    @Test func listenAddressesParse() throws {
        #expect(try RPCServerConfiguration.parseListenAddress("127.0.0.1:0") == ("127.0.0.1", 0))
        #expect(try RPCServerConfiguration.parseListenAddress("[::1]:50051") == ("::1", 50051))
        #expect(throws: RPCServerError.self) { try RPCServerConfiguration.parseListenAddress("localhost") }
        #expect(throws: RPCServerError.self) { try RPCServerConfiguration.parseListenAddress("h:70000") }
        #expect(throws: RPCServerError.self) { try RPCServerConfiguration.parseListenAddress(":80") }
    }

    @Test func statusMessagesAreCappedAtACharacterBoundary() {
        let short = "no job with id 'x'"
        #expect(WireFormats.capStatusMessage(short) == short)
        let long = String(repeating: "é", count: 70_000)
        let capped = WireFormats.capStatusMessage(long)
        #expect(capped.utf8.count <= WireFormats.maximumStatusMessageBytes)
        #expect(capped.hasSuffix("…") && capped.dropLast().allSatisfy { $0 == "é" })
        let encoded = WireFormats.percentEncode(String(repeating: "x", count: 70_000))
        #expect(encoded.utf8.count == WireFormats.maximumStatusMessageBytes - 3 + "%E2%80%A6".utf8.count)
        #expect(WireFormats.percentDecode(encoded).hasSuffix("…"))
    }
}

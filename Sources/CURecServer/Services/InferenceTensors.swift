import CURecProto
import Foundation

/// A tensor datatype of the inference protocol that the daemon's models take or give.
enum TensorDatatype: String, Sendable {
    case bytes = "BYTES"
    case fp32 = "FP32"
    case int32 = "INT32"
    case int64 = "INT64"

    /// Bytes per element in raw contents; nil for BYTES (length-prefixed elements).
    var elementSize: Int? {
        switch self {
        case .bytes: return nil
        case .fp32, .int32: return 4
        case .int64: return 8
        }
    }
}

/// One input or output tensor a model declares.
struct TensorSignature: Sendable {
    let name: String
    /// The datatypes accepted (inputs) or given (outputs, the first); the first is the one
    /// ModelMetadata states.
    let datatypes: [TensorDatatype]
    /// -1: any size along that dimension.
    let shape: [Int64]
}

/// The values of one decoded input tensor.
enum TensorValues: Sendable {
    case strings([String])
    case floats([Float])
    case integers([Int64])
}

/// One input tensor as the request declared it, decoded and checked against its signature.
struct DecodedTensor: Sendable {
    let name: String
    let shape: [Int]
    let values: TensorValues
}

/// Checks the input tensors of a `ModelInferRequest` against a model's signatures and decodes
/// them, from typed `contents` or from `raw_input_contents` (little-endian; BYTES elements as
/// a 4-byte little-endian length and the bytes). Every refusal is INVALID_ARGUMENT naming the
/// tensor; client text in a message is quoted and cut to 32 characters.
struct InferenceInputDecoder: Sendable {
    /// The most elements one input may declare; the models' own limits are lower.
    static let maxElements = 1 << 20

    let inputs: [TensorSignature]

    /// The inputs by name, each present at most once and known to the model.
    func decode(_ request: Inference_ModelInferRequest) throws(ServingError) -> [String: DecodedTensor] {
        let raw = request.rawInputContents
        if !raw.isEmpty && raw.count != request.inputs.count {
            throw .invalidArgument(
                "raw_input_contents has \(raw.count) entries for \(request.inputs.count) inputs; give one per input, in order, or none")
        }
        var decoded: [String: DecodedTensor] = [:]
        for (index, input) in request.inputs.enumerated() {
            guard let signature = inputs.first(where: { $0.name == input.name }) else {
                throw .invalidArgument("unknown input \(ResourceName.quoted(input.name)); this model takes \(inputs.map(\.name).joined(separator: ", "))")
            }
            guard decoded[input.name] == nil else {
                throw .invalidArgument("input \(input.name) appears more than once")
            }
            guard let datatype = TensorDatatype(rawValue: input.datatype), signature.datatypes.contains(datatype) else {
                throw .invalidArgument("input \(input.name) has datatype \(ResourceName.quoted(input.datatype)); expected \(signature.datatypes.map(\.rawValue).joined(separator: " or "))")
            }
            let (shape, count) = try Self.checkShape(input.shape, against: signature)
            let values: TensorValues
            if raw.isEmpty {
                values = try Self.typed(input, datatype: datatype, count: count)
            } else {
                if input.hasContents && input.contents != Inference_InferTensorContents() {
                    throw .invalidArgument("input \(input.name) has both contents and raw_input_contents; give one")
                }
                values = try Self.raw(raw[index], name: input.name, datatype: datatype, count: count)
            }
            decoded[input.name] = DecodedTensor(name: input.name, shape: shape, values: values)
        }
        return decoded
    }

    /// The text of `bytes`, or nil when they are not valid UTF-8. (Decoding with repair and
    /// comparing stays on the specialized UTF-8 path; `String(validating:as:)` instantiates
    /// generic metadata on every call.)
    static func utf8Text(_ bytes: UnsafeRawBufferPointer) -> String? {
        let units = bytes.bindMemory(to: UInt8.self)
        let text = String(decoding: units, as: UTF8.self)
        return text.utf8.elementsEqual(units) ? text : nil
    }

    /// The shape as `Int`s and its element count, after checking rank, fixed dimensions and size.
    static func checkShape(_ shape: [Int64], against signature: TensorSignature) throws(ServingError) -> ([Int], Int) {
        let expected = "[" + signature.shape.map { $0 < 0 ? "n" : String($0) }.joined(separator: ", ") + "]"
        guard shape.count == signature.shape.count else {
            throw .invalidArgument("input \(signature.name) has \(shape.count) dimensions; expected shape \(expected)")
        }
        var count = 1
        var dimensions: [Int] = []
        for (dimension, wanted) in zip(shape, signature.shape) {
            guard dimension >= 0, dimension <= Int64(maxElements) else {
                throw .invalidArgument("input \(signature.name) has a dimension of \(dimension); each must be 0 to \(maxElements)")
            }
            if wanted >= 0 && dimension != wanted {
                throw .invalidArgument("input \(signature.name) has shape \(shapeText(shape)); expected \(expected)")
            }
            let (product, overflow) = count.multipliedReportingOverflow(by: Int(dimension))
            guard !overflow, product <= maxElements else {
                throw .invalidArgument("input \(signature.name) declares more than \(maxElements) elements")
            }
            count = product
            dimensions.append(Int(dimension))
        }
        return (dimensions, count)
    }

    static func shapeText(_ shape: [Int64]) -> String {
        "[" + shape.prefix(8).map(String.init).joined(separator: ", ") + (shape.count > 8 ? ", ..." : "") + "]"
    }

    /// The values of typed `contents`: the field of the datatype must hold `count` elements.
    static func typed(_ input: Inference_ModelInferRequest.InferInputTensor, datatype: TensorDatatype,
                      count: Int) throws(ServingError) -> TensorValues {
        let contents = input.contents
        let given: Int
        let values: TensorValues
        switch datatype {
        case .bytes:
            guard contents.bytesContents.count == count else {
                throw .invalidArgument("input \(input.name) has \(contents.bytesContents.count) BYTES elements in contents; its shape holds \(count)")
            }
            var strings: [String] = []
            strings.reserveCapacity(count)
            for (index, element) in contents.bytesContents.enumerated() {
                guard let text = element.withUnsafeBytes({ utf8Text($0) }) else {
                    throw .invalidArgument("input \(input.name) element \(index) is not UTF-8 text")
                }
                strings.append(text)
            }
            return .strings(strings)
        case .fp32:
            given = contents.fp32Contents.count
            values = .floats(contents.fp32Contents)
        case .int32:
            given = contents.intContents.count
            values = .integers(contents.intContents.map(Int64.init))
        case .int64:
            given = contents.int64Contents.count
            values = .integers(contents.int64Contents)
        }
        guard given == count else {
            throw .invalidArgument("input \(input.name) has \(given) \(datatype.rawValue) elements in contents; its shape holds \(count)")
        }
        return values
    }

    /// The values of one entry of `raw_input_contents`.
    static func raw(_ bytes: Data, name: String, datatype: TensorDatatype, count: Int) throws(ServingError) -> TensorValues {
        if let size = datatype.elementSize {
            guard bytes.count == count * size else {
                throw .invalidArgument("input \(name) has \(bytes.count) raw bytes; its shape and datatype need \(count * size)")
            }
            return bytes.withUnsafeBytes { buffer -> TensorValues in
                switch datatype {
                case .fp32:
                    return .floats((0..<count).map { Float(bitPattern: UInt32(littleEndian: buffer.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self))) })
                case .int32:
                    return .integers((0..<count).map { Int64(Int32(littleEndian: buffer.loadUnaligned(fromByteOffset: $0 * 4, as: Int32.self))) })
                default:
                    return .integers((0..<count).map { Int64(littleEndian: buffer.loadUnaligned(fromByteOffset: $0 * 8, as: Int64.self)) })
                }
            }
        }
        let strings = bytes.withUnsafeBytes { buffer in
            Result { () throws(ServingError) in try lengthPrefixedStrings(buffer, name: name, count: count) }
        }
        return .strings(try strings.get())
    }

    /// BYTES elements, each a 4-byte little-endian length and its bytes; exactly `count` of them.
    static func lengthPrefixedStrings(_ buffer: UnsafeRawBufferPointer, name: String, count: Int) throws(ServingError) -> [String] {
        var strings: [String] = []
        strings.reserveCapacity(min(count, buffer.count / 4))
        var offset = 0
        while offset < buffer.count {
            guard strings.count < count else {
                throw .invalidArgument("input \(name) has more raw BYTES elements than its shape holds (\(count))")
            }
            guard buffer.count - offset >= 4 else {
                throw .invalidArgument("input \(name) raw element \(strings.count) has a cut length prefix")
            }
            let length = Int(UInt32(littleEndian: buffer.loadUnaligned(fromByteOffset: offset, as: UInt32.self)))
            offset += 4
            guard length <= buffer.count - offset else {
                throw .invalidArgument("input \(name) raw element \(strings.count) declares \(length) bytes; \(buffer.count - offset) remain")
            }
            guard let text = utf8Text(UnsafeRawBufferPointer(rebasing: buffer[offset..<offset + length])) else {
                throw .invalidArgument("input \(name) element \(strings.count) is not UTF-8 text")
            }
            strings.append(text)
            offset += length
        }
        guard strings.count == count else {
            throw .invalidArgument("input \(name) has \(strings.count) raw BYTES elements; its shape holds \(count)")
        }
        return strings
    }
}

/// Output tensors, typed in `contents` or raw in `raw_output_contents`.
struct InferenceOutputEncoder: Sendable {
    /// Raw when the request sent its inputs raw or asked for a binary output (`binary_data`).
    let raw: Bool

    static func wantsRaw(_ request: Inference_ModelInferRequest) -> Bool {
        if !request.rawInputContents.isEmpty { return true }
        return request.outputs.contains { output in
            if case .boolParam(true)? = output.parameters["binary_data"]?.parameterChoice { return true }
            return false
        }
    }

    func append(_ name: String, floats: [Float], to response: inout Inference_ModelInferResponse) {
        var tensor = Inference_ModelInferResponse.InferOutputTensor()
        tensor.name = name
        tensor.datatype = TensorDatatype.fp32.rawValue
        tensor.shape = [Int64(floats.count)]
        if raw {
            var bytes = Data(count: floats.count * 4)
            bytes.withUnsafeMutableBytes { output in
                for (index, value) in floats.enumerated() {
                    output.storeBytes(of: value.bitPattern.littleEndian, toByteOffset: index * 4, as: UInt32.self)
                }
            }
            response.rawOutputContents.append(bytes)
        } else {
            tensor.contents.fp32Contents = floats
        }
        response.outputs.append(tensor)
    }

    func append(_ name: String, strings: [String], to response: inout Inference_ModelInferResponse) {
        var tensor = Inference_ModelInferResponse.InferOutputTensor()
        tensor.name = name
        tensor.datatype = TensorDatatype.bytes.rawValue
        tensor.shape = [Int64(strings.count)]
        if raw {
            let size = strings.reduce(0) { $0 + 4 + $1.utf8.count }
            var bytes = Data(count: size)
            bytes.withUnsafeMutableBytes { output in
                var offset = 0
                for text in strings {
                    let utf8 = text.utf8
                    output.storeBytes(of: UInt32(utf8.count).littleEndian, toByteOffset: offset, as: UInt32.self)
                    offset += 4
                    UnsafeMutableRawBufferPointer(rebasing: output[offset..<offset + utf8.count]).copyBytes(from: utf8)
                    offset += utf8.count
                }
            }
            response.rawOutputContents.append(bytes)
        } else {
            tensor.contents.bytesContents = strings.map { Data($0.utf8) }
        }
        response.outputs.append(tensor)
    }
}

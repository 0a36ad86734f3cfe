import PonderBase
import PonderJSON

/// A safetensors file: an 8-byte little-endian header length, a JSON header of
/// {name: {dtype, shape, data_offsets}}, then the raw tensor bytes.
public final class SafetensorsFile: @unchecked Sendable {
    public struct TensorInfo: Sendable {
        public let name: String
        public let dtype: String
        public let shape: [Int]
        public let offset: Int  // absolute in the file
        public let byteCount: Int
        public var elementCount: Int { shape.reduce(1, *) }
    }

    public let file: MappedFile
    public let tensors: [String: TensorInfo]
    public let metadata: [String: String]

    public init(path: String) throws {
        file = try MappedFile(path: path)
        let b = file.bytes
        guard b.count >= 8 else { throw PonderError.format("\(path): too short for a safetensors header") }
        let n = b.loadUnaligned(as: UInt64.self).littleEndian
        guard n <= UInt64(b.count - 8) else {
            throw PonderError.format("\(path): header length \(n) runs past the end of the file (\(b.count) bytes)")
        }
        let header = try JSONValue.parse(UnsafeRawBufferPointer(rebasing: b[8..<(8 + Int(n))]), what: "\(path) header")
        guard case let .object(fields) = header else { throw PonderError.format("\(path): header is not a JSON object") }
        let dataStart = 8 + Int(n)
        var out: [String: TensorInfo] = [:]
        var meta: [String: String] = [:]
        for (name, v) in fields {
            if name == "__metadata__" {
                if case let .object(m) = v { for (k, x) in m { meta[k] = x.asString } }
                continue
            }
            guard let dtype = v["dtype"]?.asString, let shapeV = v["shape"]?.asArray,
                  let offs = v["data_offsets"]?.asArray, offs.count == 2,
                  let begin = offs[0].asInt, let end = offs[1].asInt else {
                throw PonderError.format("\(path): tensor \(name): header entry needs dtype, shape and data_offsets")
            }
            var shape: [Int] = []
            var count = 1
            for d in shapeV {
                guard let x = d.asInt, x >= 0, x < 1 << 40 else { throw PonderError.format("\(path): tensor \(name): bad shape") }
                shape.append(Int(x))
                count = count.multipliedReportingOverflow(by: Int(x)).overflow ? Int.max : count * Int(x)
            }
            let width: Int
            switch dtype {
            case "F32": width = 4
            case "F16", "BF16": width = 2
            default: throw PonderError(.unsupported, "\(path): tensor \(name): dtype \(dtype) (F32, F16, BF16 are supported)")
            }
            guard begin >= 0, end >= begin, Int(end) <= b.count - dataStart, count < Int.max / width,
                  Int(end - begin) == count * width else {
                throw PonderError.format("\(path): tensor \(name): data_offsets [\(begin), \(end)) do not fit shape \(shape) of \(dtype) within the file")
            }
            out[name] = TensorInfo(name: name, dtype: dtype, shape: shape, offset: dataStart + Int(begin),
                                   byteCount: Int(end - begin))
        }
        tensors = out
        metadata = meta
    }

    public func read(_ t: TensorInfo, into out: UnsafeMutablePointer<Float>) {
        let type: GGMLType = t.dtype == "F32" ? .f32 : t.dtype == "F16" ? .f16 : .bf16
        type.dequantize(file.bytes.baseAddress! + t.offset, into: out, count: t.elementCount)
    }
}

extension SafetensorsFile {
    /// Reads the tensors named in `entries` into `base` (same offsets), checking every name and
    /// shape; `rename` maps an entry name to its name in the file.
    public func read(into base: UnsafeMutablePointer<Float>, entries: [ParameterLayout.Entry],
                     rename: (String) -> String = { $0 }) throws {
        for e in entries {
            let n = rename(e.name)
            guard let t = tensors[n] else { throw PonderError.format("\(file.path): tensor \(n) missing") }
            guard t.shape == e.shape else {
                throw PonderError.format("\(file.path): tensor \(n) has shape \(t.shape), expected \(e.shape)")
            }
            read(t, into: base + e.offset)
        }
    }
}

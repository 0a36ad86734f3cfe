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
                guard case let .object(m) = v else { throw PonderError.format("\(path): __metadata__ is not an object") }
                for (k, x) in m {
                    guard let s = x.asString else { throw PonderError.format("\(path): __metadata__.\(k) is not a string") }
                    meta[k] = s
                }
                continue
            }
            guard out[name] == nil else { throw PonderError.format("\(path): tensor \(name) appears twice in the header") }
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
        // As the safetensors format requires: the tensors' byte ranges tile the data section
        // exactly, without gaps or overlaps, to the end of the file. This is what catches a
        // header length that is off by one or two tensors sharing their bytes.
        var end = 0
        for t in out.values.sorted(by: { ($0.offset, $0.byteCount) < ($1.offset, $1.byteCount) }) {
            guard t.offset - dataStart == end else {
                throw PonderError.format("\(path): tensor \(t.name): data begins at \(t.offset - dataStart), expected \(end) (tensor data must be contiguous and must not overlap)")
            }
            end += t.byteCount
        }
        guard dataStart + end == b.count else {
            throw PonderError.format("\(path): the tensors cover \(end) bytes of data but the file has \(b.count - dataStart) after the header (header length off, or trailing bytes)")
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

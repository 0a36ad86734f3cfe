import PonderBase

/// GGUF (v2/v3) files: metadata, tensor directory and tensor data, read in place from a memory
/// map. Every count, offset and size is checked against the file, so a truncated or corrupt
/// file is an error naming the byte offset or tensor, never a crash.
public final class GGUFFile: @unchecked Sendable {
    public enum Value: Sendable {
        case int(Int64)
        case uint(UInt64)
        case float(Double)
        case bool(Bool)
        case string(String)
        case array([Value])
        /// An array as it lies in the file, decoded only when read: a header may declare
        /// arrays of millions of entries under keys nobody asks for, and materialising every
        /// one as [Value] would cost ~30 bytes of memory per byte of input.
        case lazyArray(LazyArray)

        public var int: Int? {
            switch self {
            case let .int(v): return Int(exactly: v)
            case let .uint(v): return Int(exactly: v)
            default: return nil
            }
        }
        public var double: Double? {
            switch self {
            case let .float(v): return v
            case let .int(v): return Double(v)
            case let .uint(v): return Double(v)
            default: return nil
            }
        }
        public var string: String? { if case let .string(s) = self { return s } else { return nil } }
        public var bool: Bool? { if case let .bool(b) = self { return b } else { return nil } }
        public var array: [Value]? {
            switch self {
            case let .array(a): return a
            case let .lazyArray(a): return try? a.values()
            default: return nil
            }
        }
        /// The element count without decoding the elements.
        public var arrayCount: Int? {
            switch self {
            case let .array(a): return a.count
            case let .lazyArray(a): return a.count
            default: return nil
            }
        }
    }

    public struct LazyArray: @unchecked Sendable {
        let file: MappedFile
        let elementType: UInt32
        public let count: Int
        let start: Int
        let depth: Int

        public func values() throws -> [Value] {
            var r = ByteReader(file.bytes, name: file.path)
            r.offset = start
            var out: [Value] = []
            out.reserveCapacity(count)
            for _ in 0..<count { out.append(try r.value(type: elementType, depth: depth + 1, file: nil)) }
            return out
        }
    }

    public struct TensorInfo: Sendable {
        public let name: String
        /// ggml order: dims[0] is the fastest-varying (a weight [out, in] has dims [in, out]).
        public let dims: [Int]
        public let type: GGMLType
        /// Absolute byte offset of the data in the file.
        public let offset: Int
        public let byteCount: Int
        public var elementCount: Int { dims.reduce(1, *) }
    }

    public let file: MappedFile
    public let version: Int
    public let metadata: [String: Value]
    public let tensors: [TensorInfo]
    public let tensorsByName: [String: TensorInfo]

    public convenience init(path: String) throws {
        try self.init(file: MappedFile(path: path))
    }

    public init(file: MappedFile) throws {
        self.file = file
        var r = ByteReader(file.bytes, name: file.path)
        guard try r.u32() == 0x4655_4747 else { throw r.error("not a GGUF file (bad magic)", at: 0) }
        version = Int(try r.u32())
        guard version == 2 || version == 3 else { throw PonderError(.unsupported, "\(file.path): GGUF version \(version) (2 and 3 are supported)") }
        let tensorCount = try r.count(perItem: 24, what: "tensor count")
        let kvCount = try r.count(perItem: 12, what: "metadata count")
        var md: [String: Value] = [:]
        for _ in 0..<kvCount {
            let at = r.offset
            let key = try r.string()
            let type = try r.u32()
            guard md[key] == nil else { throw r.error("metadata key \(key) appears twice", at: at) }
            md[key] = try r.value(type: type, depth: 0, file: file)
        }
        metadata = md
        var infos: [TensorInfo] = []
        var seen: Set<String> = []
        var raw: [(String, [Int], GGMLType, UInt64, Int)] = []
        for _ in 0..<tensorCount {
            let at = r.offset
            let name = try r.string()
            let nd = Int(try r.u32())
            guard (1...4).contains(nd) else { throw r.error("tensor \(name): \(nd) dimensions", at: at) }
            var dims: [Int] = []
            var n = 1
            for _ in 0..<nd {
                let d = try r.u64()
                guard d > 0 && d < 1 << 40 else { throw r.error("tensor \(name): dimension \(d) out of range", at: at) }
                dims.append(Int(d))
                let (p, o) = n.multipliedReportingOverflow(by: Int(d))
                guard !o && p < 1 << 40 else { throw r.error("tensor \(name): too many elements", at: at) }
                n = p
            }
            let typeRaw = try r.u32()
            guard let type = GGMLType(rawValue: typeRaw) else {
                throw PonderError(.unsupported, "\(file.path): tensor \(name): ggml type \(typeRaw) is not supported (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q6_K are)")
            }
            guard n % type.blockSize == 0, dims[0] % type.blockSize == 0 else {
                throw r.error("tensor \(name): \(dims) is not a multiple of the \(type) block size", at: at)
            }
            let off = try r.u64()
            guard seen.insert(name).inserted else { throw r.error("tensor \(name) appears twice", at: at) }
            raw.append((name, dims, type, off, n / type.blockSize * type.blockBytes))
        }
        let alignment = md["general.alignment"]?.int ?? 32
        guard alignment > 0 && alignment <= 1 << 20 && alignment.nonzeroBitCount == 1 else {
            throw PonderError.format("\(file.path): general.alignment \(alignment) is not a power of two up to 1 MiB")
        }
        func pad(_ x: Int) -> Int { (x + alignment - 1) / alignment * alignment }
        let dataStart = pad(r.offset)
        // As llama.cpp's reader requires: tensor data follows the directory's order, each
        // tensor at the padded end of the previous one, so no two overlap and a type or shape
        // edited to a smaller size leaves the next offset wrong instead of loading garbage.
        var expected = 0
        for (name, dims, type, off, bytes) in raw {
            guard off == UInt64(expected) else {
                throw PonderError.format("\(file.path): tensor \(name): data offset \(off), expected \(expected) (tensor data must be contiguous in directory order; a type, shape or offset was changed?)")
            }
            let end = dataStart + expected + bytes
            guard end <= file.bytes.count else {
                throw PonderError.format("\(file.path): tensor \(name): data [\(dataStart + expected), +\(bytes)) lies beyond the end of the file (\(file.bytes.count) bytes): truncated?")
            }
            infos.append(TensorInfo(name: name, dims: dims, type: type, offset: dataStart + expected, byteCount: bytes))
            expected = pad(expected + bytes)
        }
        if !raw.isEmpty, file.bytes.count > dataStart + expected {
            throw PonderError.format("\(file.path): \(file.bytes.count - dataStart - expected) bytes after the last tensor's data (a tensor's type or shape was changed to a smaller one?)")
        }
        tensors = infos
        tensorsByName = Dictionary(uniqueKeysWithValues: infos.map { ($0.name, $0) })
    }

    public subscript(key: String) -> Value? { metadata[key] }

    /// Bytes of one value of a fixed-width type; 0 for strings and arrays; nil if unknown.
    static func valueWidth(_ type: UInt32) -> Int? {
        switch type {
        case 0, 1, 7: return 1
        case 2, 3: return 2
        case 4, 5, 6: return 4
        case 10, 11, 12: return 8
        case 8, 9: return 0
        default: return nil
        }
    }

    /// Dequantizes a tensor into `out` (elementCount floats).
    public func read(_ t: TensorInfo, into out: UnsafeMutablePointer<Float>) {
        let src = file.bytes.baseAddress! + t.offset
        t.type.dequantize(src, into: out, count: t.elementCount)
    }
}

/// Little-endian cursor over untrusted bytes.
struct ByteReader {
    let bytes: UnsafeRawBufferPointer
    let name: String
    var offset = 0

    init(_ bytes: UnsafeRawBufferPointer, name: String) {
        self.bytes = bytes
        self.name = name
    }

    func error(_ msg: String, at: Int) -> PonderError {
        PonderError.format("\(name): \(msg) (at byte offset \(at))")
    }

    mutating func take(_ n: Int) throws -> UnsafeRawBufferPointer {
        guard n >= 0, n <= bytes.count - offset else {
            throw error("unexpected end of file reading \(n) bytes", at: offset)
        }
        defer { offset += n }
        return UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + n)])
    }

    mutating func u8() throws -> UInt8 { try take(1)[0] }
    mutating func u16() throws -> UInt16 { try take(2).loadUnaligned(as: UInt16.self).littleEndian }
    mutating func u32() throws -> UInt32 { try take(4).loadUnaligned(as: UInt32.self).littleEndian }
    mutating func u64() throws -> UInt64 { try take(8).loadUnaligned(as: UInt64.self).littleEndian }

    /// A u64 count, rejected when even `perItem` bytes per item would overrun the file.
    mutating func count(perItem: Int, what: String) throws -> Int {
        let at = offset
        let n = try u64()
        guard n <= UInt64(bytes.count - offset) / UInt64(max(1, perItem)) else {
            throw error("\(what) \(n) is larger than the file could hold", at: at)
        }
        return Int(n)
    }

    /// Steps over `count` values without decoding them (no allocation).
    mutating func skipElements(type: UInt32, count n: Int, width: Int, depth: Int) throws {
        if width > 0 { _ = try take(n * width); return }
        for _ in 0..<n {
            if type == 8 {
                _ = try take(try count(perItem: 1, what: "string length"))
            } else {
                let at = offset
                guard depth < 4 else { throw error("arrays nested too deeply", at: at) }
                let et = try u32()
                guard let w = GGUFFile.valueWidth(et) else { throw error("unknown array element type \(et)", at: at) }
                try skipElements(type: et, count: try count(perItem: max(1, w), what: "array length"), width: w, depth: depth + 1)
            }
        }
    }

    mutating func string() throws -> String {
        let at = offset
        let n = try count(perItem: 1, what: "string length")
        let b = try take(n)
        guard let s = String(validating: b, as: UTF8.self) else { throw error("string is not valid UTF-8", at: at) }
        return s
    }

    /// One metadata value. With `file`, arrays are skipped over and kept as lazy views of it.
    mutating func value(type: UInt32, depth: Int, file: MappedFile?) throws -> GGUFFile.Value {
        switch type {
        case 0: return .uint(UInt64(try u8()))
        case 1: return .int(Int64(Int8(bitPattern: try u8())))
        case 2: return .uint(UInt64(try u16()))
        case 3: return .int(Int64(Int16(bitPattern: try u16())))
        case 4: return .uint(UInt64(try u32()))
        case 5: return .int(Int64(Int32(bitPattern: try u32())))
        case 6: return .float(Double(Float(bitPattern: try u32())))
        case 7:
            let at = offset
            let b = try u8()
            guard b <= 1 else { throw error("boolean value \(b)", at: at) }
            return .bool(b == 1)
        case 8: return .string(try string())
        case 9:
            let at = offset
            guard depth < 4 else { throw error("arrays nested too deeply", at: at) }
            let et = try u32()
            guard let width = GGUFFile.valueWidth(et) else { throw error("unknown array element type \(et)", at: at + 4) }
            let n = try count(perItem: max(1, width), what: "array length")
            let start = offset
            try skipElements(type: et, count: n, width: width, depth: depth + 1)
            if let file { return .lazyArray(.init(file: file, elementType: et, count: n, start: start, depth: depth)) }
            // Decoding a lazy array: its bytes were checked when it was skipped over.
            var out: [GGUFFile.Value] = []
            out.reserveCapacity(n)
            offset = start
            for _ in 0..<n { out.append(try value(type: et, depth: depth + 1, file: nil)) }
            return .array(out)
        case 10: return .uint(try u64())
        case 11: return .int(Int64(bitPattern: try u64()))
        case 12: return .float(Double(bitPattern: try u64()))
        default: throw error("unknown metadata value type \(type)", at: offset - 4)
        }
    }
}

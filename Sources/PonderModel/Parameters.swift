import PonderBase
import PonderKernels

/// Where each named tensor lives in a flat float arena. Names are Hugging Face's, the single
/// source of truth for weights; GGUF names are mapped onto them at the file boundary.
///
/// Per layer the order is fixed so that fused matmuls need no copies: q, k, v rows are
/// contiguous (one [qkvDim × hidden] matrix) and so are gate and up ([2·intermediate × hidden]).
public struct ParameterLayout: Sendable {
    public struct Entry: Sendable {
        public let name: String
        /// [rows, cols] for matrices (HF Linear: [out, in]), [n] for vectors.
        public let shape: [Int]
        public let offset: Int
        public var count: Int { shape.reduce(1, *) }
    }

    public let entries: [Entry]
    public let count: Int
    let index: [String: Int]

    public init(_ c: LlamaConfig) {
        var list: [Entry] = []
        var off = 0
        // 16-float alignment keeps tensors on 64-byte boundaries for SIMD and BLAS; members of
        // a fused group (q/k/v, gate/up) are packed instead, so the group is one matrix.
        func add(_ name: String, _ shape: [Int], packed: Bool = false) {
            list.append(Entry(name: name, shape: shape, offset: off))
            off += packed ? shape.reduce(1, *) : (shape.reduce(1, *) + 15) / 16 * 16
        }
        add("model.embed_tokens.weight", [c.vocabSize, c.hiddenSize])
        for l in 0..<c.numLayers {
            let p = "model.layers.\(l)."
            add(p + "input_layernorm.weight", [c.hiddenSize])
            add(p + "self_attn.q_proj.weight", [c.qDim, c.hiddenSize], packed: true)
            add(p + "self_attn.k_proj.weight", [c.kvDim, c.hiddenSize], packed: true)
            add(p + "self_attn.v_proj.weight", [c.kvDim, c.hiddenSize])
            if c.attentionBias {
                add(p + "self_attn.q_proj.bias", [c.qDim], packed: true)
                add(p + "self_attn.k_proj.bias", [c.kvDim], packed: true)
                add(p + "self_attn.v_proj.bias", [c.kvDim])
            }
            add(p + "self_attn.o_proj.weight", [c.hiddenSize, c.qDim])
            add(p + "post_attention_layernorm.weight", [c.hiddenSize])
            add(p + "mlp.gate_proj.weight", [c.intermediateSize, c.hiddenSize], packed: true)
            add(p + "mlp.up_proj.weight", [c.intermediateSize, c.hiddenSize])
            add(p + "mlp.down_proj.weight", [c.hiddenSize, c.intermediateSize])
        }
        add("model.norm.weight", [c.hiddenSize])
        if !c.tieWordEmbeddings { add("lm_head.weight", [c.vocabSize, c.hiddenSize]) }
        entries = list
        count = off
        index = Dictionary(uniqueKeysWithValues: list.enumerated().map { ($1.name, $0) })
    }

    public subscript(name: String) -> Entry? { index[name].map { entries[$0] } }
}

/// One 64-byte-aligned allocation of floats (weights, and later gradients and Adam moments of
/// the same layout), so zeroing, clipping, updating and saving are single loops.
public final class Arena: @unchecked Sendable {
    public let pointer: UnsafeMutablePointer<Float>
    public let count: Int

    /// zeroed: false leaves the memory as the allocator gives it, for buffers every read of
    /// which follows a write (KV caches): their pages are then only backed as they fill, where
    /// zeroing a group's cache for max_tokens up front took seconds and all of its memory.
    /// hugePages: false for an arena that is mostly never touched (a model whose matrices stay in
    /// their file's blocks keeps only its norms here): a huge page would back 2 MiB per norm.
    public init(count: Int, zeroed: Bool = true, hugePages: Bool = true) throws {
        let (bytes, overflow) = count.multipliedReportingOverflow(by: 4)
        guard count >= 0, !overflow, let raw = try? UnsafeMutableRawPointer.allocateChecked(bytes: bytes, hugePages: hugePages) else {
            throw PonderError(.outOfMemory, "cannot allocate \(count) floats")
        }
        pointer = raw.bindMemory(to: Float.self, capacity: count)
        if zeroed { pointer.initialize(repeating: 0, count: count) }
        self.count = count
    }

    deinit { free(pointer) }
}

#if canImport(Glibc)
import Glibc
#endif

extension UnsafeMutableRawPointer {
    /// posix_memalign, reporting failure instead of trapping as Swift's allocator would.
    /// Large blocks are 2 MiB-aligned and marked for transparent huge pages: decode streams
    /// every weight once per token, and 4 KiB pages cost it a TLB miss per page.
    static func allocateChecked(bytes: Int, hugePages: Bool = true) throws -> UnsafeMutableRawPointer {
        var p: UnsafeMutableRawPointer? = nil
        let huge = hugePages && bytes >= 8 << 20
        guard posix_memalign(&p, huge ? 2 << 20 : 64, max(bytes, 64)) == 0, let p else {
            throw PonderError(.outOfMemory, "cannot allocate \(bytes) bytes")
        }
        if huge { _ = madvise(p, (bytes + (2 << 20) - 1) / (2 << 20) * (2 << 20), MADV_HUGEPAGE) }
        return p
    }
}

/// Named views into a weight arena for one layer (pointers are valid while the arena lives).
public struct LayerWeights {
    public let inputNorm: UnsafeMutablePointer<Float>
    /// [q; k; v] rows, [qkvDim × hidden]
    public let qkv: Linear
    /// [q; k; v] biases or nil
    public let qkvBias: UnsafeMutablePointer<Float>?
    public let o: Linear
    public let postNorm: UnsafeMutablePointer<Float>
    /// [gate; up] rows, [2·intermediate × hidden]
    public let gateUp: Linear
    public let down: Linear
}

public struct ModelWeights {
    public let embed: UnsafeMutablePointer<Float>
    /// The embedding table when it stays in its file's blocks (then `embed` is not backed).
    public let embedBlocks: QuantizedMatrix?
    public let layers: [LayerWeights]
    public let norm: UnsafeMutablePointer<Float>
    public let lmHead: Linear

    /// blocks: the matrices kept in a block format, by name; a fused group (q/k/v, gate/up) is
    /// in blocks whole or not at all (the loader sees to that).
    public init(layout: ParameterLayout, config c: LlamaConfig, base p: UnsafeMutablePointer<Float>,
                blocks: [String: QuantizedTensor] = [:]) {
        func at(_ name: String) -> UnsafeMutablePointer<Float> { p + layout[name]!.offset }
        func linear(_ names: [String], out: Int, in k: Int) -> Linear {
            let parts = names.compactMap { blocks[$0] }
            guard parts.count == names.count else { return Linear(at(names[0]), out: out, in: k) }
            let m = QuantizedMatrix(parts.map { (Int32($0.type.rawValue), $0.data, $0.rowBytes, $0.rows) }, inDim: k)
            return Linear(at(names[0]), out: out, in: k, blocks: m)
        }
        embed = at("model.embed_tokens.weight")
        let embedding = linear(["model.embed_tokens.weight"], out: c.vocabSize, in: c.hiddenSize)
        embedBlocks = embedding.blocks
        layers = (0..<c.numLayers).map { l in
            let pre = "model.layers.\(l)."
            let d = c.hiddenSize, inter = c.intermediateSize
            return LayerWeights(inputNorm: at(pre + "input_layernorm.weight"),
                                qkv: linear(["q_proj", "k_proj", "v_proj"].map { pre + "self_attn.\($0).weight" }, out: c.qkvDim, in: d),
                                qkvBias: c.attentionBias ? at(pre + "self_attn.q_proj.bias") : nil,
                                o: linear([pre + "self_attn.o_proj.weight"], out: d, in: c.qDim),
                                postNorm: at(pre + "post_attention_layernorm.weight"),
                                gateUp: linear([pre + "mlp.gate_proj.weight", pre + "mlp.up_proj.weight"], out: 2 * inter, in: d),
                                down: linear([pre + "mlp.down_proj.weight"], out: d, in: inter))
        }
        norm = at("model.norm.weight")
        lmHead = c.tieWordEmbeddings ? embedding : linear(["lm_head.weight"], out: c.vocabSize, in: c.hiddenSize)
    }
}

/// A weight matrix left in its file's block format: rows × cols values, rowBytes a row, at data
/// (a memory map, or an owned copy whose rows the loader reordered).
public struct QuantizedTensor: @unchecked Sendable {
    public let type: GGMLType
    public let data: UnsafeRawPointer
    public let rowBytes: Int
    public let rows: Int
    public let cols: Int
    public var bytes: Int { rowBytes * rows }
}

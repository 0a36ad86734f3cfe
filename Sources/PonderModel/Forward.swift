import PonderKernels

/// Where one transformer layer reads and writes. Inference points every field at one shared
/// scratch set and updates the residual in place (xIn == xMid == xOut); training gives each
/// layer its own slices, which are the activations its backward needs.
struct LayerIO {
    var xIn, xMid, xOut: UnsafeMutablePointer<Float>
    var xn1, xn2, qkv, attn, gateUp, h: UnsafeMutablePointer<Float>
    var rstd1, rstd2: UnsafeMutablePointer<Float>?
    /// x·Aᵀ of each LoRA module, [modules × rows × r] (training keeps it; inference reuses it)
    var loraU: UnsafeMutablePointer<Float>
}

extension LlamaModel {
    /// One Llama block: RMSNorm → fused q/k/v (+bias, +LoRA) → RoPE → attention (by the
    /// caller, which owns the KV layout) → o_proj + residual → RMSNorm → fused gate/up →
    /// SwiGLU → down_proj + residual.
    func layerForward(_ l: Int, rows: Int, positions: UnsafePointer<Int32>, io: LayerIO, attend: () -> Void) {
        let c = config, lw = w.layers[l]
        let d = c.hiddenSize, inter = c.intermediateSize
        let mods = adapters?.modules[l] ?? []
        let r = adapters?.config.rank ?? 0
        func lora(_ output: LoRAOutput, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>) {
            for (i, m) in mods.enumerated() where m.target.output == output {
                adapters!.forward(m, x: x, y: y, rows: rows, u: io.loraU + i * rows * r)
            }
        }
        rmsnormForward(io.xn1, rstd: io.rstd1, io.xIn, lw.inputNorm, rows: rows, dim: d, eps: c.rmsNormEps)
        linear(io.qkv, io.xn1, lw.qkv, rows: rows, out: c.qkvDim, in: d)
        if let b = lw.qkvBias { for i in 0..<rows { addInPlace(io.qkv + i * c.qkvDim, b, c.qkvDim) } }
        lora(.qkv, x: io.xn1, y: io.qkv)
        rope.forward(io.qkv, rows: rows, heads: c.numHeads, rowStride: c.qkvDim, positions: positions)
        rope.forward(io.qkv + c.qDim, rows: rows, heads: c.numKVHeads, rowStride: c.qkvDim, positions: positions)
        attend()
        if io.xMid != io.xIn { io.xMid.update(from: io.xIn, count: rows * d) }
        linear(io.xMid, io.attn, lw.o, rows: rows, out: d, in: c.qDim, accumulate: true)
        lora(.o, x: io.attn, y: io.xMid)
        rmsnormForward(io.xn2, rstd: io.rstd2, io.xMid, lw.postNorm, rows: rows, dim: d, eps: c.rmsNormEps)
        linear(io.gateUp, io.xn2, lw.gateUp, rows: rows, out: 2 * inter, in: d)
        lora(.gateUp, x: io.xn2, y: io.gateUp)
        swigluForward(io.h, gateUp: io.gateUp, rows: rows, hidden: inter)
        if io.xOut != io.xMid { io.xOut.update(from: io.xMid, count: rows * d) }
        linear(io.xOut, io.h, lw.down, rows: rows, out: d, in: inter, accumulate: true)
        lora(.down, x: io.h, y: io.xOut)
    }
}

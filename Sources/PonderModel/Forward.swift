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

/// The gradient buffers of one layer's backward. Backward runs one layer at a time, so every
/// layer uses the same ones; dX is the residual stream's gradient, carried from layer to layer.
struct LayerGradIO {
    var dX, dXn, dQKV, dAttn, dGateUp, dH: UnsafeMutablePointer<Float>
    /// dL/d(x·Aᵀ) of one LoRA module at a time
    var dU: UnsafeMutablePointer<Float>
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
        lw.qkv.forward(io.qkv, io.xn1, rows: rows, exact: exactProducts)
        if let b = lw.qkvBias { for i in 0..<rows { addInPlace(io.qkv + i * c.qkvDim, b, c.qkvDim) } }
        lora(.qkv, x: io.xn1, y: io.qkv)
        rope.forward(io.qkv, rows: rows, heads: c.numHeads, rowStride: c.qkvDim, positions: positions)
        rope.forward(io.qkv + c.qDim, rows: rows, heads: c.numKVHeads, rowStride: c.qkvDim, positions: positions)
        attend()
        if io.xMid != io.xIn { io.xMid.update(from: io.xIn, count: rows * d) }
        lw.o.forward(io.xMid, io.attn, rows: rows, accumulate: true, exact: exactProducts)
        lora(.o, x: io.attn, y: io.xMid)
        rmsnormForward(io.xn2, rstd: io.rstd2, io.xMid, lw.postNorm, rows: rows, dim: d, eps: c.rmsNormEps)
        lw.gateUp.forward(io.gateUp, io.xn2, rows: rows, exact: exactProducts)
        lora(.gateUp, x: io.xn2, y: io.gateUp)
        swigluForward(io.h, gateUp: io.gateUp, rows: rows, hidden: inter)
        if io.xOut != io.xMid { io.xOut.update(from: io.xMid, count: rows * d) }
        lw.down.forward(io.xOut, io.h, rows: rows, accumulate: true, exact: exactProducts)
        lora(.down, x: io.h, y: io.xOut)
    }

    /// Where the gradient of a base weight accumulates: its offset in `grads` (laid out like the
    /// model's arena), or nil when LoRA adapters are attached (the base is frozen then).
    func gradient(of p: UnsafeMutablePointer<Float>, in grads: UnsafeMutablePointer<Float>) -> UnsafeMutablePointer<Float>? {
        adapters == nil ? grads + (p - weights.pointer) : nil
    }

    /// Backward of layerForward, from the activations the forward left in `io`. xn1, xn2 and h
    /// are rebuilt first, since training shares them across layers. dio.dX holds dL/dxOut on
    /// entry and dL/dxIn on return; weight gradients accumulate into `grads` (the model's layout,
    /// or the adapters' when attached). `attendBackward` turns dio.dAttn into dio.dQKV (zeroed
    /// here; the gradient of q/k after RoPE), as `attend` turned qkv into attn.
    func layerBackward(_ l: Int, rows: Int, positions: UnsafePointer<Int32>, io: LayerIO, dio: LayerGradIO,
                       grads: UnsafeMutablePointer<Float>, attendBackward: () -> Void) {
        let c = config, lw = w.layers[l]
        let d = c.hiddenSize, inter = c.intermediateSize
        let mods = adapters?.modules[l] ?? []
        let r = adapters?.config.rank ?? 0
        let dX = dio.dX
        func g(_ p: UnsafeMutablePointer<Float>) -> UnsafeMutablePointer<Float>? { gradient(of: p, in: grads) }
        func loraBack(_ output: LoRAOutput, dy: UnsafePointer<Float>, x: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>) {
            for (i, m) in mods.enumerated() where m.target.output == output {
                adapters!.backward(m, grads: grads, dy: dy, x: x, u: io.loraU + i * rows * r, dx: dx, rows: rows, du: dio.dU)
            }
        }
        // MLP branch: xOut = xMid + down(swiglu(gateUp(norm(xMid)))).
        swigluForward(io.h, gateUp: io.gateUp, rows: rows, hidden: inter)
        rmsnormForward(io.xn2, rstd: nil, io.xMid, lw.postNorm, rows: rows, dim: d, eps: c.rmsNormEps)
        lw.down.backwardInput(dio.dH, dX, rows: rows)
        if let gd = g(lw.down.weight) { lw.down.accumulateGradient(gd, dX, io.h, rows: rows) }
        loraBack(.down, dy: dX, x: io.h, dx: dio.dH)
        swigluBackward(dGateUp: dio.dGateUp, dh: dio.dH, gateUp: io.gateUp, rows: rows, hidden: inter)
        lw.gateUp.backwardInput(dio.dXn, dio.dGateUp, rows: rows)
        if let gg = g(lw.gateUp.weight) { lw.gateUp.accumulateGradient(gg, dio.dGateUp, io.xn2, rows: rows) }
        loraBack(.gateUp, dy: dio.dGateUp, x: io.xn2, dx: dio.dXn)
        rmsnormBackward(dx: dX, dweight: g(lw.postNorm), dout: dio.dXn, x: io.xMid, weight: lw.postNorm,
                        rstd: io.rstd2!, rows: rows, dim: d)
        // Attention branch: xMid = xIn + o(attn(rope(qkv(norm(xIn))))).
        lw.o.backwardInput(dio.dAttn, dX, rows: rows)
        if let go = g(lw.o.weight) { lw.o.accumulateGradient(go, dX, io.attn, rows: rows) }
        loraBack(.o, dy: dX, x: io.attn, dx: dio.dAttn)
        dio.dQKV.update(repeating: 0, count: rows * c.qkvDim)
        attendBackward()
        rope.backward(dio.dQKV, rows: rows, heads: c.numHeads, rowStride: c.qkvDim, positions: positions)
        rope.backward(dio.dQKV + c.qDim, rows: rows, heads: c.numKVHeads, rowStride: c.qkvDim, positions: positions)
        if let bias = lw.qkvBias, let gb = g(bias) {
            for i in 0..<rows { addInPlace(gb, dio.dQKV + i * c.qkvDim, c.qkvDim) }
        }
        rmsnormForward(io.xn1, rstd: nil, io.xIn, lw.inputNorm, rows: rows, dim: d, eps: c.rmsNormEps)
        lw.qkv.backwardInput(dio.dXn, dio.dQKV, rows: rows)
        if let gq = g(lw.qkv.weight) { lw.qkv.accumulateGradient(gq, dio.dQKV, io.xn1, rows: rows) }
        loraBack(.qkv, dy: dio.dQKV, x: io.xn1, dx: dio.dXn)
        rmsnormBackward(dx: dX, dweight: g(lw.inputNorm), dout: dio.dXn, x: io.xIn, weight: lw.inputNorm,
                        rstd: io.rstd1!, rows: rows, dim: d)
    }
}

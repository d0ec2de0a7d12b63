// y = x · Wᵀ for a weight W kept in the packed quantized layout (`[n, k]` in 32-value blocks),
// dequantised in registers: the WebGPU path of the quantized projections. Each block's codes meet
// the f32 activations as f32, so the result is dequantise-then-f32 up to the order of the sums.
//
// Launched by: crates/kernels/src/wgpu/quant.rs (`QuantBackend::quant_matmul`).
// Reference: crates/kernels/src/quant/gpu.rs `matmul_reference` (the dequantised weight times x).
//
// Bindings: x [m, k/4] vec4; codes [n, nb, words] u32 (the packed bytes, little-endian); scales
// [n, nb · scales per block]; mins [n, nb] (one unused value for signed codes); out [m, n];
// info = [m, n, nb].
// `layout`: 0 = 4-bit codes (byte j of a block holds code j in its low nibble, code j + 16 in its
// high one), 1 = unsigned bytes, 2 = signed bytes with a scale per 16 values and no min.

@group(0) @binding(0) var<storage, read_write> x: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> codes: array<u32>;
@group(0) @binding(2) var<storage, read_write> scales: array<f32>;
@group(0) @binding(3) var<storage, read_write> mins: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<storage, read_write> info: array<u32>;

const LAYOUT: u32 = {{ layout }}u;
// u32 words of codes per 32-value block.
const WORDS: u32 = {{ words }}u;

// Four 4-bit codes of a word: bits shift..shift+4 of each byte.
fn nibbles(w: u32, shift: u32) -> vec4<f32> {
    return vec4<f32>(vec4<u32>(w >> shift, w >> (shift + 8u), w >> (shift + 16u), w >> (shift + 24u)) & vec4<u32>(15u));
}

fn unsigned_bytes(w: u32) -> vec4<f32> {
    return vec4<f32>(vec4<u32>(w, w >> 8u, w >> 16u, w >> 24u) & vec4<u32>(255u));
}

// Each byte moved to the top and shifted back arithmetically: sign-extended.
fn signed_bytes(w: u32) -> vec4<f32> {
    let top = bitcast<vec4<i32>>(vec4<u32>(w << 24u, w << 16u, w << 8u, w));
    return vec4<f32>(top >> vec4<u32>(24u));
}

// One thread per output: x over weight rows, y (then z past 65,535) over activation rows — no
// integer division, which software adapters emulate lane by lane.
@compute @workgroup_size({{ workgroup }}, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wg: vec3<u32>) {
    let m = info[0];
    let n = info[1];
    let nb = info[2];
    let row = gid.x;
    let c = wg.y + wg.z * {{ max_groups }}u;
    if (row >= n || c >= m) {
        return;
    }
    var acc = 0.0;
    for (var b = 0u; b < nb; b++) {
        let block = row * nb + b;
        let cw = block * WORDS;
        // Block b of activation row c: eight vec4s.
        let xb = (c * nb + b) * 8u;
        if (LAYOUT == 0u) {
            var d = 0.0;
            var s = vec4<f32>(0.0);
            for (var q = 0u; q < 4u; q++) {
                let w = codes[cw + q];
                let low = x[xb + q];
                let high = x[xb + 4u + q];
                d += dot(nibbles(w, 0u), low) + dot(nibbles(w, 4u), high);
                s += low + high;
            }
            acc += scales[block] * d + mins[block] * (s.x + s.y + s.z + s.w);
        } else if (LAYOUT == 1u) {
            var d = 0.0;
            var s = vec4<f32>(0.0);
            for (var q = 0u; q < 8u; q++) {
                let v = x[xb + q];
                d += dot(unsigned_bytes(codes[cw + q]), v);
                s += v;
            }
            acc += scales[block] * d + mins[block] * (s.x + s.y + s.z + s.w);
        } else {
            var first = 0.0;
            var second = 0.0;
            for (var q = 0u; q < 4u; q++) {
                first += dot(signed_bytes(codes[cw + q]), x[xb + q]);
                second += dot(signed_bytes(codes[cw + 4u + q]), x[xb + 4u + q]);
            }
            acc += scales[2u * block] * first + scales[2u * block + 1u] * second;
        }
    }
    out[c * n + row] = acc;
}

// Per-input-feature activation statistics over tokens: Σ x² and max |x|, skipping tokens whose
// mask is 0 (padding) — what Wanda scores and magnitude-feature analysis accumulate.
// Grid (feature blocks, token chunks): each thread walks one chunk of tokens down its feature
// (neighbouring threads read neighbouring addresses) and writes a partial; the Rust side folds
// the chunks (sum of Σ x², max of max |x|). Chunks keep the grid wide when there are many tokens
// and few features, which one thread per feature would leave mostly idle.
//
// Launched by: crates/kernels/src/wgpu/masking.rs (`feature_stats`).
// Reference: crates/kernels/src/masking.rs `feature_stats_reference`.
//
// Bindings: x [tokens, d]; mask [tokens] (1.0 count, 0.0 skip); partials [chunks, 2, d] (Σ x²,
// then max |x|, per chunk); info = [tokens, d, has_mask, chunk_len]. Elements (the `elem`
// placeholder) are vec4<f32> (four features) when d is a multiple of 4, else f32; d is in
// elements.

@group(0) @binding(0) var<storage, read_write> x: array<{{ elem }}>;
@group(0) @binding(1) var<storage, read_write> mask: array<f32>;
@group(0) @binding(2) var<storage, read_write> partials: array<{{ elem }}>;
@group(0) @binding(3) var<storage, read_write> info: array<u32>;

@compute @workgroup_size({{ workgroup }}, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wg: vec3<u32>) {
    let tokens = info[0];
    let d = info[1];
    let has_mask = info[2] != 0u;
    let chunk_len = info[3];
    let feature = gid.x;
    if (feature >= d) {
        return;
    }
    let first = wg.y * chunk_len;
    let last = min(first + chunk_len, tokens);
    var s = {{ elem }}(0.0);
    var m = {{ elem }}(0.0);
    for (var t = first; t < last; t++) {
        if (has_mask && mask[t] < 0.5) {
            continue;
        }
        let v = x[t * d + feature];
        s += v * v;
        m = max(m, abs(v));
    }
    partials[wg.y * 2u * d + feature] = s;
    partials[wg.y * 2u * d + d + feature] = m;
}

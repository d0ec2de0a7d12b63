// Per-input-feature activation statistics over tokens: Σ x² and max |x|, skipping tokens whose
// mask is 0 (padding) — what Wanda scores and magnitude-feature analysis accumulate.
// One thread per feature walks the tokens; neighbouring threads read neighbouring addresses.
//
// Launched by: crates/kernels/src/wgpu/masking.rs (`feature_stats`).
// Reference: crates/kernels/src/masking.rs `feature_stats_reference`.
//
// Bindings: x [tokens, d]; mask [tokens] (1.0 count, 0.0 skip); sum_sq, max_abs [d];
// info = [tokens, d, has_mask].

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> mask: array<f32>;
@group(0) @binding(2) var<storage, read_write> sum_sq: array<f32>;
@group(0) @binding(3) var<storage, read_write> max_abs: array<f32>;
@group(0) @binding(4) var<storage, read_write> info: array<u32>;

@compute @workgroup_size({{ workgroup }}, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let tokens = info[0];
    let d = info[1];
    let has_mask = info[2] != 0u;
    let feature = gid.x;
    if (feature >= d) {
        return;
    }
    var s = 0.0;
    var m = 0.0;
    for (var t = 0u; t < tokens; t++) {
        if (has_mask && mask[t] < 0.5) {
            continue;
        }
        let v = x[t * d + feature];
        s += v * v;
        m = max(m, abs(v));
    }
    sum_sq[feature] = s;
    max_abs[feature] = m;
}

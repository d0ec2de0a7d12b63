// Gradient of ShifCon's symmetric InfoNCE loss with respect to its logits L = s · A P'ᵀ:
//   G_ij = (softmax_row(L)_ij + softmax_col(L)_ij − 2 δ_ij) / (2n)
//        = (exp(L_ij − row_lse_i) + exp(L_ij − col_lse_j) − 2 δ_ij) / (2n),
// recomputing each BLOCK × BLOCK logit block (logit_block.wgsl) instead of storing L in the
// forward pass. dA = s · G P' and dP' = s · Gᵀ A follow as two matmuls (and the shift's
// correction) in Rust.
//
// Launched by: crates/kernels/src/wgpu/contrastive.rs (`logit_gradient`), with
// logit_block.wgsl prepended, in the autodiff backward of `ContrastiveBackend::contrastive_infonce`.
// Reference: autodiff of crates/kernels/src/contrastive.rs `contrastive_loss_reference`.
//
// Bindings: a, p [n, d], info = [n, d] and params = [scale] (declared in logit_block.wgsl);
// lse [2, n] (rows, then columns); g [n, n].

@group(0) @binding(2) var<storage, read_write> lse: array<f32>;
@group(0) @binding(3) var<storage, read_write> g: array<f32>;

@compute @workgroup_size({{ tile }}, {{ tile }}, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let tx = lid.x;
    let ty = lid.y;
    let size = uniform_dims(tx, ty);
    let n = size.x;
    let row0 = wg.x * BLOCK;
    let col0 = wg.y * BLOCK;
    let logits = logit_block(row0, col0, n, size.y, tx, ty, params[0]);
    let norm = 2.0 * f32(n);
    let cols = col0 + tx + LANES;
    let cols_ok = cols < vec4<u32>(n);
    var col_lse = vec4<f32>(0.0);
    for (var j = 0u; j < 4u; j++) {
        if (cols_ok[j]) {
            col_lse[j] = lse[n + cols[j]];
        }
    }
    for (var i = 0u; i < 4u; i++) {
        let row = row0 + ty + TILE * i;
        if (row < n) {
            let value = exp(logits[i] - lse[row]) + exp(logits[i] - col_lse) - select(vec4<f32>(0.0), vec4<f32>(2.0), cols == vec4<u32>(row));
            for (var j = 0u; j < 4u; j++) {
                if (cols_ok[j]) {
                    g[row * n + cols[j]] = value[j] / norm;
                }
            }
        }
    }
}

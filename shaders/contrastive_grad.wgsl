// Gradient of ShifCon's symmetric InfoNCE loss with respect to its logits L = s · A P'ᵀ:
//   G_ij = (softmax_row(L)_ij + softmax_col(L)_ij − 2 δ_ij) / (2n)
//        = (exp(L_ij − row_lse_i) + exp(L_ij − col_lse_j) − 2 δ_ij) / (2n),
// recomputing each logit tile with a tiled matmul instead of storing L in the forward pass.
// dA = s · G P' and dP' = s · Gᵀ A follow as two matmuls (and the shift's correction) in Rust.
//
// Launched by: crates/kernels/src/wgpu/contrastive.rs (`logit_gradient`), in the autodiff
// backward of `ContrastiveBackend::contrastive_infonce`.
// Reference: autodiff of crates/kernels/src/contrastive.rs `contrastive_loss_reference`.
//
// Bindings: a, p [n, d]; row_lse, col_lse [n]; g [n, n]; info = [n, d]; params = [scale].
// All read_write, sizes made uniform: see contrastive_lse.wgsl.

@group(0) @binding(0) var<storage, read_write> a: array<f32>;
@group(0) @binding(1) var<storage, read_write> p: array<f32>;
@group(0) @binding(2) var<storage, read_write> row_lse: array<f32>;
@group(0) @binding(3) var<storage, read_write> col_lse: array<f32>;
@group(0) @binding(4) var<storage, read_write> g: array<f32>;
@group(0) @binding(5) var<storage, read_write> info: array<u32>;
@group(0) @binding(6) var<storage, read_write> params: array<f32>;

const TILE: u32 = {{ tile }}u;

var<workgroup> dims: vec2<u32>;
var<workgroup> a_tile: array<f32, {{ tile_sq }}>;
var<workgroup> p_tile: array<f32, {{ tile_sq }}>;

@compute @workgroup_size({{ tile }}, {{ tile }}, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    if (lid.x == 0u && lid.y == 0u) {
        dims = vec2<u32>(info[0], info[1]);
    }
    let size = workgroupUniformLoad(&dims);
    let n = size.x;
    let d = size.y;
    let scale = params[0];
    let tx = lid.x;
    let ty = lid.y;
    let row = wg.x * TILE + ty;
    let col = wg.y * TILE + tx;
    let p_row = wg.y * TILE + ty;

    var acc = 0.0;
    for (var k0 = 0u; k0 < d; k0 += TILE) {
        let k = k0 + tx;
        var av = 0.0;
        if (row < n && k < d) {
            av = a[row * d + k];
        }
        a_tile[ty * TILE + tx] = av;
        var pv = 0.0;
        if (p_row < n && k < d) {
            pv = p[p_row * d + k];
        }
        p_tile[ty * TILE + tx] = pv;
        workgroupBarrier();
        for (var kk = 0u; kk < TILE; kk++) {
            acc += a_tile[ty * TILE + kk] * p_tile[tx * TILE + kk];
        }
        workgroupBarrier();
    }
    if (row < n && col < n) {
        let logit = acc * scale;
        var value = exp(logit - row_lse[row]) + exp(logit - col_lse[col]);
        if (row == col) {
            value -= 2.0;
        }
        g[row * n + col] = value / (2.0 * f32(n));
    }
}

// Row-wise log-sum-exp and diagonal of the scaled logits s · X Yᵀ, without materialising them:
// one workgroup owns TILE rows of X and streams tiles of Y through workgroup memory (a tiled
// matmul), folding each logit tile into an online log-sum-exp per row.
//
// Launched by: crates/kernels/src/wgpu/contrastive.rs (`row_logsumexp`), once with (X, Y) =
// (A, P') for the rows and once with (P', A) for the columns of ShifCon's symmetric InfoNCE.
// Reference: crates/kernels/src/contrastive.rs `contrastive_loss_reference`.
//
// Bindings: x, y [n, d] row-major; lse, diag [n]; info = [n, d]; params = [scale].
// Every binding is read_write: cubecl may place several small tensors in one wgpu buffer, and
// WebGPU forbids one buffer as read-only and writable storage in the same dispatch. The sizes are
// therefore made workgroup-uniform with workgroupUniformLoad before they steer barriers.

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<storage, read_write> lse: array<f32>;
@group(0) @binding(3) var<storage, read_write> diag: array<f32>;
@group(0) @binding(4) var<storage, read_write> info: array<u32>;
@group(0) @binding(5) var<storage, read_write> params: array<f32>;

const TILE: u32 = {{ tile }}u;
const MIN_F32: f32 = -3.402823e38;

var<workgroup> dims: vec2<u32>;
var<workgroup> x_tile: array<f32, {{ tile_sq }}>;
var<workgroup> y_tile: array<f32, {{ tile_sq }}>;
var<workgroup> logits: array<f32, {{ tile_sq }}>;

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

    var run_max = MIN_F32;
    var run_sum = 0.0;
    var diag_value = 0.0;

    let col_tiles = (n + TILE - 1u) / TILE;
    for (var ct = 0u; ct < col_tiles; ct++) {
        let y_row = ct * TILE + ty;
        var acc = 0.0;
        for (var k0 = 0u; k0 < d; k0 += TILE) {
            let k = k0 + tx;
            var xv = 0.0;
            if (row < n && k < d) {
                xv = x[row * d + k];
            }
            x_tile[ty * TILE + tx] = xv;
            var yv = 0.0;
            if (y_row < n && k < d) {
                yv = y[y_row * d + k];
            }
            y_tile[ty * TILE + tx] = yv;
            workgroupBarrier();
            for (var kk = 0u; kk < TILE; kk++) {
                acc += x_tile[ty * TILE + kk] * y_tile[tx * TILE + kk];
            }
            workgroupBarrier();
        }
        logits[ty * TILE + tx] = acc * scale;
        workgroupBarrier();
        if (tx == 0u && row < n) {
            for (var c = 0u; c < TILE; c++) {
                let j = ct * TILE + c;
                if (j < n) {
                    let v = logits[ty * TILE + c];
                    if (j == row) {
                        diag_value = v;
                    }
                    if (v > run_max) {
                        run_sum = run_sum * exp(run_max - v) + 1.0;
                        run_max = v;
                    } else {
                        run_sum += exp(v - run_max);
                    }
                }
            }
        }
        workgroupBarrier();
    }
    if (tx == 0u && row < n) {
        lse[row] = run_max + log(run_sum);
        diag[row] = diag_value;
    }
}

// Shared by the contrastive kernels (prepended to contrastive_partials.wgsl and
// contrastive_grad.wgsl by crates/kernels/src/wgpu/contrastive.rs): one BLOCK × BLOCK block of
// the scaled logits s · A Pᵀ, computed by TILE × TILE threads that each hold a 4 × 4 register
// tile — thread (tx, ty) owns rows ty + TILE·i and columns tx + TILE·j (i, j < 4), kept as four
// vec4 rows so that nothing is indexed at run time. A and P stream through workgroup memory TILE
// columns of d at a time, k-major, the four rows a thread needs packed in one vec4 and the
// stride padded by one so that the loads do not hit one memory bank twice: 16 multiply-adds per
// thread per k from two vec4 reads, two barriers per TILE of k.
//
// Bindings 0, 1, 4 and 5 are declared here for both including shaders: a, p [n, d] row-major;
// info = [n, d, ...]; params = [scale]. Every binding is read_write: cubecl may place several
// small tensors in one wgpu buffer, and WebGPU forbids one buffer as read-only and writable
// storage in the same dispatch.

@group(0) @binding(0) var<storage, read_write> a: array<f32>;
@group(0) @binding(1) var<storage, read_write> p: array<f32>;
@group(0) @binding(4) var<storage, read_write> info: array<u32>;
@group(0) @binding(5) var<storage, read_write> params: array<f32>;

const TILE: u32 = {{ tile }}u;
const BLOCK: u32 = 4u * TILE;
const STRIDE: u32 = TILE + 1u;
const MIN_F32: f32 = -3.402823e38;
const LANES: vec4<u32> = vec4<u32>(0u, TILE, 2u * TILE, 3u * TILE);

var<workgroup> dims: vec2<u32>;
// [k][t]: rows t, t + TILE, t + 2·TILE, t + 3·TILE of A (of P) at column k of this TILE of d.
// Reused by the including shader once the logits are in registers (WebGPU guarantees only
// 16 KiB of workgroup memory).
var<workgroup> a_tile: array<vec4<f32>, {{ tile_stride }}>;
var<workgroup> p_tile: array<vec4<f32>, {{ tile_stride }}>;

// [n, d], made workgroup-uniform so that loops bounded by them may contain barriers.
fn uniform_dims(tx: u32, ty: u32) -> vec2<u32> {
    if (tx == 0u && ty == 0u) {
        dims = vec2<u32>(info[0], info[1]);
    }
    return workgroupUniformLoad(&dims);
}

// Row `row` of `a` (or `p`) at column k, 0 outside the matrix.
fn a_at(row: u32, k: u32, n: u32, d: u32) -> f32 {
    if (row < n && k < d) {
        return a[row * d + k];
    }
    return 0.0;
}

fn p_at(row: u32, k: u32, n: u32, d: u32) -> f32 {
    if (row < n && k < d) {
        return p[row * d + k];
    }
    return 0.0;
}

// Row i of the result: s · <A[row0 + ty + TILE·i], P[col0 + tx + TILE·j]> in component j
// (0 outside [n, n]).
fn logit_block(row0: u32, col0: u32, n: u32, d: u32, tx: u32, ty: u32, scale: f32) -> array<vec4<f32>, 4> {
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    let rows = row0 + ty + LANES;
    let cols = col0 + ty + LANES;
    for (var k0 = 0u; k0 < d; k0 += TILE) {
        let k = k0 + tx;
        a_tile[tx * STRIDE + ty] = vec4<f32>(a_at(rows.x, k, n, d), a_at(rows.y, k, n, d), a_at(rows.z, k, n, d), a_at(rows.w, k, n, d));
        p_tile[tx * STRIDE + ty] = vec4<f32>(p_at(cols.x, k, n, d), p_at(cols.y, k, n, d), p_at(cols.z, k, n, d), p_at(cols.w, k, n, d));
        workgroupBarrier();
        for (var kk = 0u; kk < TILE; kk++) {
            let av = a_tile[kk * STRIDE + ty];
            let pv = p_tile[kk * STRIDE + tx];
            acc0 += av.x * pv;
            acc1 += av.y * pv;
            acc2 += av.z * pv;
            acc3 += av.w * pv;
        }
        workgroupBarrier();
    }
    return array<vec4<f32>, 4>(acc0 * scale, acc1 * scale, acc2 * scale, acc3 * scale);
}

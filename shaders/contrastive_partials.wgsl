// Forward of ShifCon's symmetric InfoNCE, pass 1 of 2: for each BLOCK × BLOCK block of the logits
// L = s · A P'ᵀ (never stored), a log-sum-exp partial (max, Σ exp(L − max)) per row over the
// block's columns and per column over the block's rows, and the diagonal. One matmul pass gives
// both directions; the grid covers every block, so even n = 256 fills a GPU with work.
// Pass 2 (contrastive_merge.wgsl) folds the partials into the row and column log-sum-exps.
//
// Launched by: crates/kernels/src/wgpu/contrastive.rs (`logsumexp_both_ways`), with
// logit_block.wgsl prepended. Reference: crates/kernels/src/contrastive.rs
// `contrastive_loss_reference`.
//
// Bindings: a, p [n, d], info = [n, d, blocks] and params = [scale] (declared in
// logit_block.wgsl); partials [4, n, blocks] (row max, row sum, column max, column sum, each
// [n, blocks]); diag [n].

@group(0) @binding(2) var<storage, read_write> partials: array<f32>;
@group(0) @binding(3) var<storage, read_write> diag: array<f32>;

// The TILE (max, sum) vec4 pairs that a_tile / p_tile hold at [line][0..TILE], folded into one
// pair per component: the partials of lines line, line + TILE, line + 2·TILE, line + 3·TILE.
fn fold_line(line: u32) -> array<vec4<f32>, 2> {
    var m = vec4<f32>(MIN_F32);
    for (var t = 0u; t < TILE; t++) {
        m = max(m, a_tile[line * STRIDE + t]);
    }
    var s = vec4<f32>(0.0);
    for (var t = 0u; t < TILE; t++) {
        let part = p_tile[line * STRIDE + t];
        s += select(vec4<f32>(0.0), part * exp(a_tile[line * STRIDE + t] - m), part > vec4<f32>(0.0));
    }
    return array<vec4<f32>, 2>(m, s);
}

// (max, Σ exp(x − max)) over the components of `x` where `valid`; (MIN_F32, 0) when none is.
fn partial(x: vec4<f32>, valid: vec4<bool>) -> vec2<f32> {
    let masked = select(vec4<f32>(MIN_F32), x, valid);
    let m = max(max(masked.x, masked.y), max(masked.z, masked.w));
    let e = select(vec4<f32>(0.0), exp(x - m), valid);
    return vec2<f32>(m, e.x + e.y + e.z + e.w);
}

// Writes the folded partials of lines `first + TILE·i` (i < 4) that lie inside [0, n).
fn store_partials(maxes: u32, sums: u32, first: u32, n: u32, blocks: u32, block: u32, folded: array<vec4<f32>, 2>) {
    let lines = first + LANES;
    for (var i = 0u; i < 4u; i++) {
        if (lines[i] < n) {
            let at = lines[i] * blocks + block;
            partials[maxes + at] = folded[0][i];
            partials[sums + at] = folded[1][i];
        }
    }
}

@compute @workgroup_size({{ tile }}, {{ tile }}, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let tx = lid.x;
    let ty = lid.y;
    let size = uniform_dims(tx, ty);
    let n = size.x;
    let blocks = info[2];
    let row0 = wg.x * BLOCK;
    let col0 = wg.y * BLOCK;
    let logits = logit_block(row0, col0, n, size.y, tx, ty, params[0]);
    let rows_ok = (row0 + ty + LANES) < vec4<u32>(n);
    let cols_ok = (col0 + tx + LANES) < vec4<u32>(n);
    let flat = ty * TILE + tx;
    let plane = n * blocks;

    // Rows: each thread's partial over its 4 columns for each of its 4 rows; then TILE threads
    // fold the TILE threads of a row line.
    let r0 = partial(logits[0], cols_ok);
    let r1 = partial(logits[1], cols_ok);
    let r2 = partial(logits[2], cols_ok);
    let r3 = partial(logits[3], cols_ok);
    a_tile[ty * STRIDE + tx] = vec4<f32>(r0.x, r1.x, r2.x, r3.x);
    p_tile[ty * STRIDE + tx] = vec4<f32>(r0.y, r1.y, r2.y, r3.y);
    // The diagonal lies in the blocks with row0 == col0, in the threads with tx == ty.
    if (row0 == col0 && tx == ty) {
        let on_diagonal = vec4<f32>(logits[0].x, logits[1].y, logits[2].z, logits[3].w);
        for (var i = 0u; i < 4u; i++) {
            if (rows_ok[i]) {
                diag[row0 + ty + TILE * i] = on_diagonal[i];
            }
        }
    }
    workgroupBarrier();
    if (flat < TILE) {
        store_partials(0u, plane, row0 + flat, n, blocks, wg.y, fold_line(flat));
    }
    workgroupBarrier();

    // Columns, the same way over each thread's 4 rows.
    var m = vec4<f32>(MIN_F32);
    for (var i = 0u; i < 4u; i++) {
        m = select(m, max(m, logits[i]), rows_ok[i]);
    }
    var s = vec4<f32>(0.0);
    for (var i = 0u; i < 4u; i++) {
        s += select(vec4<f32>(0.0), exp(logits[i] - m), rows_ok[i]);
    }
    a_tile[tx * STRIDE + ty] = m;
    p_tile[tx * STRIDE + ty] = s;
    workgroupBarrier();
    if (flat < TILE) {
        store_partials(2u * plane, 3u * plane, col0 + flat, n, blocks, wg.x, fold_line(flat));
    }
}

// Shared by the kernels that give each row of their input one workgroup (rms_norm.wgsl,
// attention.wgsl), prepended to them: `info` made uniform, and the workgroup's tree reductions.
// The including shader declares `info` (its first value the number of rows, its length the
// `info_len` placeholder) and fills the `workgroup` placeholder with a power of two.
//
// Uniformity: a storage read is not uniform to WGSL, and a loop whose exit depends on the thread
// may leave what follows it non-uniform (the analysis Chrome's Tint enforces; naga checks less).
// So `info` goes through workgroup memory, and the row loops step over WORKGROUP-wide chunks with
// a bound test inside: their exits are uniform, and the barriers after them valid everywhere.

const WORKGROUP: u32 = {{ workgroup }}u;
// One value per thread for the tree reductions; the result lands in partial[0].
var<workgroup> partial: array<f32, {{ workgroup }}>;
var<workgroup> shared_info: array<u32, {{ info_len }}>;

// `info`, the same for every thread of the workgroup in WGSL's uniformity analysis.
fn uniform_info(lane: u32) -> array<u32, {{ info_len }}> {
    if (lane == 0u) {
        for (var i = 0u; i < {{ info_len }}u; i++) {
            shared_info[i] = info[i];
        }
    }
    return workgroupUniformLoad(&shared_info);
}

fn tree_max(lane: u32) {
    for (var half = WORKGROUP / 2u; half > 0u; half /= 2u) {
        if (lane < half) {
            partial[lane] = max(partial[lane], partial[lane + half]);
        }
        workgroupBarrier();
    }
}

fn tree_sum(lane: u32) {
    for (var half = WORKGROUP / 2u; half > 0u; half /= 2u) {
        if (lane < half) {
            partial[lane] += partial[lane + half];
        }
        workgroupBarrier();
    }
}

// Bindings of rms_norm.wgsl for a residual connection followed by RMSNorm: the row is x + delta,
// written to sum (the residual stream the decoder carries on) as well as normalised into out.
// x, delta, sum, out [rows, D]; gamma [D]; info = [rows].

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> delta: array<f32>;
@group(0) @binding(2) var<storage, read_write> gamma: array<f32>;
@group(0) @binding(3) var<storage, read_write> sum: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<storage, read_write> info: array<u32>;

fn row_value(i: u32) -> f32 {
    return x[i] + delta[i];
}

fn keep_row_value(i: u32, v: f32) {
    sum[i] = v;
}

//! `rosetta bench kernels`: the fused WGSL contrastive loss against the same loss from composed
//! tensor ops (time and device memory, forward and forward+backward), and the masking kernels'
//! throughput against the bytes they must move. The fused path exists on wgpu devices (build with
//! `--features wgpu`); elsewhere both columns are the composed reference. On the CPU, the routes
//! of a packed (Q4_1) weight by activation rows: what `BF16_ROWS` and `DEQUANTIZED_ROWS` in
//! `rosetta_model::nn::projection` are chosen from.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::Result;
use rosetta_kernels::contrastive::{ContrastiveOptions, contrastive_loss, contrastive_loss_reference};
use rosetta_kernels::masking::{Sparsity, apply_keep, feature_stats, prune_keep, wanda_scores};
use rosetta_model::burn::prelude::*;
use rosetta_model::burn::tensor::{Distribution, TimingMethod};
use rosetta_model::readback::block_on;
use rosetta_viz::{BarChart, BarGroup, stack_vertically};
use serde_json::{Value, json};

use crate::output::{table, write_json, write_result};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[arg(long, default_value = "wgpu", value_parser = |s: &str| rosetta_model::device_from_spec(s).map(|_| s.to_string()).map_err(|e| e.to_string()))]
    device: String,
    #[arg(long, value_delimiter = ',', default_value = "64,256,1024")]
    n: Vec<usize>,
    #[arg(long, value_delimiter = ',', default_value = "576,2048")]
    d: Vec<usize>,
    /// Weight shapes (out×in) for the masking kernels.
    #[arg(long, value_delimiter = ',', default_value = "1536x576,4096x11008")]
    mask_shapes: Vec<String>,
    /// Activation rows for the CPU routes of a packed weight (empty: skip that section).
    #[arg(long, value_delimiter = ',', default_value = "1,16,64,128,256,1024")]
    packed_rows: Vec<usize>,
    /// Packed weight shapes (out×in) for those routes.
    #[arg(long, value_delimiter = ',', default_value = "1536x576,576x1536,49152x576")]
    packed_shapes: Vec<String>,
    #[arg(long, default_value_t = 5)]
    iters: usize,
    #[arg(long)]
    json: Option<PathBuf>,
    /// SVG: the fused kernel's speed-up over the composed ops, and each masking kernel's GB/s.
    #[arg(long)]
    plot: Option<PathBuf>,
}

/// What one benchmark cell measured.
struct Measured {
    /// Mean time per call the device spent on the work, in ms: GPU timestamps where the adapter
    /// has them (`TIMESTAMP_QUERY`), otherwise wall time between two syncs.
    device_ms: f64,
    /// `"device"` (timestamps) or `"system"` (wall clock between syncs).
    timing: &'static str,
    /// Mean wall time per call including launch and the read-back of the result, in ms.
    wall_ms: f64,
    /// Device memory reserved over a cleaned pool, where the backend reports its pool.
    reserved_bytes: Option<u64>,
}

/// Times `f(i)` for `i` in `1..=iters` after one warm-up call `f(0)`. Each call runs inside a
/// profiling window of the device, so on wgpu the GPU's own timestamps bound exactly the work
/// `f` launched; inputs must already be on the device (made before, by `inputs`), and `f(i)`
/// must use inputs of its own for every `i`, so no call reads what the previous one left warm.
/// An error when the device cannot run it (a software adapter's buffer limit, say).
fn measure(device: &Device, iters: usize, f: impl Fn(usize) -> Result<Tensor<1>> + Sync) -> Result<Measured> {
    // One element read back surfaces any failure and waits for the work, without timing a copy.
    let read = |t: Tensor<1>| t.slice(0..1).try_into_data().map(drop).map_err(|e| anyhow::anyhow!("{e}"));
    read(f(0)?)?;
    device.memory_cleanup();
    let before = device.memory_pool_usage().map(|u| u.bytes_reserved);
    let mut device_seconds = 0.0;
    let mut timing = "system";
    let start = Instant::now();
    for i in 1..=iters {
        // Nothing queued before may fall into the window.
        device.sync().map_err(|e| anyhow::anyhow!("{e}"))?;
        let (out, window) = device.profile(|| f(i)).map_err(|e| anyhow::anyhow!("{e}"))?;
        read(out?)?;
        if window.timing_method() == TimingMethod::Device {
            timing = "device";
        }
        let ticks = block_on(window.resolve()).ok_or_else(|| anyhow::anyhow!("the device returned no timing for the window"))?;
        device_seconds += ticks.duration().as_secs_f64();
    }
    let wall_seconds = start.elapsed().as_secs_f64();
    let after = device.memory_pool_usage().map(|u| u.bytes_reserved);
    Ok(Measured {
        device_ms: device_seconds * 1e3 / iters as f64,
        timing,
        wall_ms: wall_seconds * 1e3 / iters as f64,
        reserved_bytes: before.zip(after).map(|(b, a)| a.saturating_sub(b)),
    })
}

/// `count` distinct random `[rows, cols]` tensors, computed before any timing starts; an error
/// when the device cannot hold them (a software adapter's buffer limit, say).
fn inputs(device: &Device, count: usize, rows: usize, cols: usize, seed: u64) -> Result<Vec<Tensor<2>>> {
    device.seed(seed);
    let made: Vec<Tensor<2>> = (0..count).map(|_| Tensor::<2>::random([rows, cols], Distribution::Normal(0.0, 1.0), device)).collect();
    for t in &made {
        t.clone().sum().try_into_data().map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    Ok(made)
}

/// The masking kernels on `[out, inp]` weights, each with the bytes it must move at least, and
/// `x + 0.5` beside them: what a plain elementwise operation reaches on the same device.
/// A kernel that cannot run on the shape (2:4 on a width not divisible by 4) is an error of its
/// own; the others still run.
fn masking_rows(device: &Device, iters: usize, out: usize, inp: usize) -> Result<Vec<(&'static str, f64, Result<Measured>)>> {
    let weights = inputs(device, iters + 1, out, inp, 2)?;
    let norms: Vec<Tensor<1>> = inputs(device, iters + 1, 1, inp, 3)?.into_iter().map(|t| t.abs().reshape([inp])).collect();
    let scores: Vec<Tensor<2>> = weights.iter().map(|w| w.clone().abs()).collect();
    let half = Sparsity::Unstructured(0.5);
    let keeps = scores.iter().map(|s| prune_keep(s.clone(), half)).collect::<Result<Vec<_>, _>>()?;
    // In-place application needs weights no other tensor shares: one copy per call, taken out.
    let owned: Mutex<Vec<Option<Tensor<2>>>> = Mutex::new(weights.iter().map(|w| Some(w.clone().mul_scalar(1.0))).collect());
    let tokens = Tensor::<1>::ones([out], device);
    device.sync().map_err(|e| anyhow::anyhow!("{e}"))?;

    let n = (out * inp) as f64;
    let flat = |t: Tensor<2>| t.reshape([out * inp]);
    let mut measured = Vec::new();
    // read W, write x + 0.5
    measured.push(("x + 0.5 (burn, for scale)", 8.0 * n, measure(device, iters, |i| Ok(flat(weights[i].clone().add_scalar(0.5))))));
    // read W and the norms, write S
    measured.push((
        "wanda score",
        8.0 * n + 4.0 * inp as f64,
        measure(device, iters, |i| Ok(flat(wanda_scores(weights[i].clone(), norms[i].clone())?))),
    ));
    // read S, write keep (the binary search rereads each row 31 times, from cache)
    measured.push(("exact-k mask (50%)", 8.0 * n, measure(device, iters, |i| Ok(flat(prune_keep(scores[i].clone(), half)?)))));
    let two_four = Sparsity::NM { n: 2, m: 4 };
    let two_four_time = match two_four.validate(inp) {
        Ok(()) => measure(device, iters, |i| Ok(flat(prune_keep(scores[i].clone(), two_four)?))),
        Err(e) => Err(e.into()),
    };
    measured.push(("2:4 mask", 8.0 * n, two_four_time));
    // read W and keep, write W
    measured.push((
        "apply mask (new buffer)",
        12.0 * n,
        measure(device, iters, |i| Ok(flat(apply_keep(weights[i].clone(), keeps[i].clone())?))),
    ));
    measured.push((
        "apply mask (in place)",
        12.0 * n,
        measure(device, iters, |i| {
            let mut copies = owned.lock().map_err(|_| anyhow::anyhow!("a measurement panicked"))?;
            let weight = copies[i].take().ok_or_else(|| anyhow::anyhow!("in-place copy {i} was used twice"))?;
            Ok(flat(apply_keep(weight, keeps[i].clone())?))
        }),
    ));
    // read x [tokens = out, d = inp] and the token mask, write Σx² and max|x| per feature
    measured.push((
        "feature statistics",
        4.0 * n + 4.0 * out as f64 + 8.0 * inp as f64,
        measure(device, iters, |i| {
            let (sum_sq, max_abs) = feature_stats(weights[i].clone(), Some(tokens.clone()))?;
            Ok(Tensor::cat(vec![sum_sq, max_abs], 0))
        }),
    ));
    Ok(measured)
}

/// The innermost cause of an error, for a table cell.
fn short(e: &anyhow::Error) -> String {
    let text = e.to_string();
    let boilerplate = |line: &&str| matches!(line.trim(), "" | "Caused by:" | "Asked at:" | "No backtrace available");
    text.lines().rfind(|line| !boilerplate(line)).unwrap_or("failed").trim().chars().take(60).collect()
}

fn ms(value: f64) -> String {
    format!("{value:.3}")
}

fn mib(bytes: Option<u64>) -> String {
    bytes.map(|b| format!("{:.1}", b as f64 / (1 << 20) as f64)).unwrap_or_else(|| "-".into())
}

pub fn run(args: Args) -> Result<()> {
    anyhow::ensure!(args.iters > 0, "--iters must be at least 1");
    let device = rosetta_model::device_from_spec(&args.device)?;
    #[cfg(feature = "wgpu")]
    let fused_available = rosetta_kernels::is_wgpu(&device);
    #[cfg(not(feature = "wgpu"))]
    let fused_available = false;
    if !fused_available {
        eprintln!("note: {} has no WGSL path in this build; the fused column measures the reference too", args.device);
    }
    let options = ContrastiveOptions { scale: 20.0, shift: true };
    let mut rows = Vec::new();
    let mut records: Vec<Value> = Vec::new();
    let mut timing = "system";
    let mut speedups = Vec::new();
    for &d in &args.d {
        for &n in &args.n {
            let normalised = |t: Tensor<2>| {
                let norm = t.clone().square().sum_dim(1).sqrt().clamp_min(1e-12);
                t / norm
            };
            let a_set: Vec<Tensor<2>> = inputs(&device, args.iters + 1, n, d, 0)?.into_iter().map(normalised).collect();
            let p_set: Vec<Tensor<2>> = inputs(&device, args.iters + 1, n, d, 1)?.into_iter().map(normalised).collect();
            let ad = device.clone().autodiff();
            let on_ad = |t: &Tensor<2>| Tensor::<2>::from_data(t.to_data(), &ad);
            let (a_ad, p_ad): (Vec<Tensor<2>>, Vec<Tensor<2>>) = (a_set.iter().map(on_ad).collect(), p_set.iter().map(on_ad).collect());
            let cell = |fused: bool, backward: bool| {
                measure(&device, args.iters, |i| {
                    if backward {
                        let (a, p) = (a_ad[i].clone().require_grad(), p_ad[i].clone().require_grad());
                        let loss = if fused {
                            contrastive_loss(a.clone(), p, options)
                        } else {
                            contrastive_loss_reference(a.clone(), p, options)
                        }?;
                        let grads = loss.backward();
                        Ok(a.grad(&grads).map(|g| g.sum()).unwrap_or_else(|| Tensor::zeros([1], &device)))
                    } else if fused {
                        Ok(contrastive_loss(a_set[i].clone(), p_set[i].clone(), options)?)
                    } else {
                        Ok(contrastive_loss_reference(a_set[i].clone(), p_set[i].clone(), options)?)
                    }
                })
            };
            let fused_forward = cell(true, false)?;
            let composed_forward = cell(false, false)?;
            let fused_both = cell(true, true)?;
            let composed_both = cell(false, true)?;
            timing = fused_forward.timing;
            rows.push(vec![
                format!("{n}×{d}"),
                ms(fused_forward.device_ms),
                ms(composed_forward.device_ms),
                ms(fused_both.device_ms),
                ms(composed_both.device_ms),
                mib(fused_forward.reserved_bytes),
                mib(composed_forward.reserved_bytes),
            ]);
            speedups.push(BarGroup {
                label: format!("{n}×{d}"),
                values: vec![composed_forward.device_ms / fused_forward.device_ms, composed_both.device_ms / fused_both.device_ms],
            });
            let cell_json =
                |m: &Measured| json!({"ms": m.device_ms, "wall_ms": m.wall_ms, "timing": m.timing, "reserved_bytes": m.reserved_bytes});
            records.push(json!({"n": n, "d": d,
                "fused_forward": cell_json(&fused_forward), "composed_forward": cell_json(&composed_forward),
                "fused_forward_backward": cell_json(&fused_both), "composed_forward_backward": cell_json(&composed_both)}));
        }
    }
    println!("contrastive InfoNCE on {} (scale 20, shift; ms per call, {timing} time)", args.device);
    println!(
        "{}",
        table(&["n×d", "fused fwd ms", "composed fwd ms", "fused f+b ms", "composed f+b ms", "fused MiB", "composed MiB"], &rows)
    );

    // Masking: every kernel on a SmolLM2 MLP matrix and a 7B-sized one (feature statistics read
    // the same matrix as [tokens, d] activations).
    let shapes = parse_shapes(&args.mask_shapes, "--mask-shapes")?;
    let mut mask_rows = Vec::new();
    let mut mask_records = Vec::new();
    let (mut kernel_names, mut throughput) = (Vec::new(), Vec::new());
    for (out, inp) in shapes {
        let label = format!("{out}×{inp}");
        match masking_rows(&device, args.iters, out, inp) {
            Ok(measured) => {
                if kernel_names.is_empty() {
                    kernel_names = measured.iter().map(|(kernel, _, _)| kernel.to_string()).collect();
                }
                let rate = |bytes: f64, m: &Measured| bytes / (m.device_ms * 1e-3) / 1e9;
                // A kernel that failed gets no bar (NaN is skipped by the chart).
                let values = measured.iter().map(|(_, bytes, m)| m.as_ref().map_or(f64::NAN, |m| rate(*bytes, m))).collect();
                throughput.push(BarGroup { label: label.clone(), values });
                for (kernel, bytes, m) in measured {
                    match m {
                        Ok(m) => {
                            let gb_per_s = rate(bytes, &m);
                            mask_rows.push(vec![
                                label.clone(),
                                kernel.to_string(),
                                ms(m.device_ms),
                                ms(m.wall_ms),
                                format!("{:.1}", bytes / 1e6),
                                format!("{gb_per_s:.2}"),
                            ]);
                            mask_records.push(json!({"rows": out, "cols": inp, "kernel": kernel, "ms": m.device_ms, "wall_ms": m.wall_ms,
                                "timing": m.timing, "bytes_moved": bytes, "gb_per_s": gb_per_s}));
                        }
                        Err(e) => {
                            mask_rows.push(vec![
                                label.clone(),
                                kernel.to_string(),
                                "failed".into(),
                                short(&e),
                                String::new(),
                                String::new(),
                            ]);
                            mask_records
                                .push(json!({"rows": out, "cols": inp, "kernel": kernel, "bytes_moved": bytes, "error": e.to_string()}));
                        }
                    }
                }
            }
            Err(e) => {
                mask_rows.push(vec![label, "all".into(), "failed".into(), short(&e), String::new(), String::new()]);
                mask_records.push(json!({"rows": out, "cols": inp, "error": e.to_string()}));
            }
        }
    }
    println!(
        "\nmasking kernels on {} (ms per call, {timing} time; bytes = each input read once and each output written once)",
        args.device
    );
    println!("{}", table(&["weight", "kernel", "ms", "wall ms", "MB moved", "GB/s"], &mask_rows));

    let (packed_table, packed_records, packed_chart) =
        packed_routes(&parse_shapes(&args.packed_shapes, "--packed-shapes")?, &args.packed_rows, args.iters)?;
    if !packed_records.is_empty() {
        println!(
            "\npacked Q4_1 weight × f32 activations on the CPU, by route (GFLOP/s; {} threads)",
            std::thread::available_parallelism().map_or(1, |n| n.get())
        );
        println!("{}", table(&["weight", "rows", "integer tiles", "bf16", "dequantised f32 GEMM", "route taken"], &packed_table));
    }

    let report = json!({"benchmark": "kernels", "device": args.device, "fused_path": fused_available, "contrastive": records, "masking": mask_records, "packed_matmul": packed_records});
    if let Some(path) = &args.json {
        write_json(path, &report)?;
    }
    if let Some(path) = &args.plot {
        let speedup = BarChart {
            title: format!("Fused InfoNCE on {}: speed-up over composed ops (>1 = fused faster)", args.device),
            y_label: "composed time / fused time".into(),
            series: vec!["forward".into(), "forward + backward".into()],
            groups: speedups,
        };
        let masking = BarChart {
            title: format!("Masking kernels on {}: GB/s of compulsory bytes ({timing} time)", args.device),
            y_label: "GB/s".into(),
            series: kernel_names,
            groups: throughput,
        };
        let mut charts = vec![speedup.to_svg(), masking.to_svg()];
        charts.extend(packed_chart.map(|c| c.to_svg()));
        write_result(path, stack_vertically(&charts).as_bytes())?;
    }
    Ok(())
}

/// `OUTxIN` shapes of a command-line list.
fn parse_shapes(specs: &[String], flag: &str) -> Result<Vec<(usize, usize)>> {
    specs
        .iter()
        .map(|s| {
            let parse = |v: &str| v.trim().parse::<usize>().ok().filter(|&v| v > 0);
            s.split_once('x')
                .and_then(|(o, i)| Some((parse(o)?, parse(i)?)))
                .ok_or_else(|| anyhow::anyhow!("{flag}: `{s}` is not OUTxIN (e.g. 1536x576)"))
        })
        .collect()
}

/// A packed Q4_1 weight of each shape times `rows` activation rows on the CPU through each
/// route: the integer tiles, the bf16 route (CPUs with AVX-512 BF16) and the weight dequantised
/// then multiplied by burn's f32 GEMM — GFLOP/s of the product (`2·rows·out·in`), best of
/// `iters` after a warm-up. Returns the table's rows, the JSON records and a chart of the first
/// shape.
type PackedRoutes = (Vec<Vec<String>>, Vec<Value>, Option<BarChart>);

fn packed_routes(shapes: &[(usize, usize)], rows: &[usize], iters: usize) -> Result<PackedRoutes> {
    use rosetta_kernels::quant::{PackedMatrix, QuantizeTo, Tiles, matmul_with};
    use rosetta_model::nn::projection::CpuRoute;
    let (mut table_rows, mut records, mut groups) = (Vec::new(), Vec::new(), Vec::new());
    let best_gflops = |flops: f64, f: &dyn Fn() -> Result<()>| -> Result<f64> {
        f()?;
        let mut best = f64::INFINITY;
        for _ in 0..iters {
            let start = Instant::now();
            f()?;
            best = best.min(start.elapsed().as_secs_f64());
        }
        Ok(flops / best / 1e9)
    };
    let cpu = Device::flex();
    for (index, &(out, inp)) in shapes.iter().enumerate() {
        anyhow::ensure!(inp % 32 == 0, "--packed-shapes: {out}x{inp} needs inputs in whole 32-value blocks");
        let values: Vec<f32> =
            (0..out * inp).map(|i| ((i as u32).wrapping_mul(2_654_435_761) >> 8) as f32 / (1u32 << 24) as f32 - 0.5).collect();
        let weight = PackedMatrix::quantize(QuantizeTo::Q4_1, out, inp, &values)?;
        for &m in rows {
            let x: Vec<f32> = (0..m * inp).map(|i| ((i as u32).wrapping_mul(40_503) % 1000) as f32 / 500.0 - 1.0).collect();
            let flops = 2.0 * (m * out * inp) as f64;
            let integer = best_gflops(flops, &|| Ok(matmul_with(Tiles::best(), &weight, &x, m).map(drop)?))?;
            #[cfg(target_arch = "x86_64")]
            let bf16 = match rosetta_kernels::quant::bf16::Bf16Route::detect() {
                Some(route) => Some(best_gflops(flops, &|| Ok(route.matmul_many(&[(&weight).into()], &x, m).map(drop)?))?),
                None => None,
            };
            #[cfg(not(target_arch = "x86_64"))]
            let bf16: Option<f64> = None;
            let dequantised = best_gflops(flops, &|| {
                let w = Tensor::<2>::from_data(TensorData::new(weight.dequantize(), [out, inp]), &cpu);
                let a = Tensor::<2>::from_data(TensorData::new(x.clone(), [m, inp]), &cpu);
                a.matmul(w.transpose()).into_data();
                Ok(())
            })?;
            let route = CpuRoute::for_rows(m).name();
            table_rows.push(vec![
                format!("{out}×{inp}"),
                m.to_string(),
                format!("{integer:.1}"),
                bf16.map_or("—".into(), |g| format!("{g:.1}")),
                format!("{dequantised:.1}"),
                route.to_string(),
            ]);
            records.push(json!({"out": out, "in": inp, "rows": m, "integer_gflops": integer, "bf16_gflops": bf16,
                "dequantised_f32_gflops": dequantised, "route": route}));
            if index == 0 {
                groups.push(BarGroup { label: m.to_string(), values: vec![integer, bf16.unwrap_or(f64::NAN), dequantised] });
            }
        }
    }
    let chart = shapes.first().filter(|_| !groups.is_empty()).map(|&(out, inp)| BarChart {
        title: format!("Packed Q4_1 {out}×{inp} weight on the CPU: GFLOP/s by activation rows"),
        y_label: "GFLOP/s".into(),
        series: vec!["integer tiles".into(), "bf16".into(), "dequantised f32 GEMM".into()],
        groups,
    });
    Ok((table_rows, records, chart))
}

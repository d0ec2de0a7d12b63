//! `rosetta bench kernels`: the fused WGSL contrastive loss against the same loss from composed
//! tensor ops (time and device memory, forward and forward+backward), and the masking kernels'
//! throughput against the bytes they must move. The fused path exists on wgpu devices (build with
//! `--features wgpu`); elsewhere both columns are the composed reference.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use rosetta_kernels::contrastive::{ContrastiveOptions, contrastive_loss, contrastive_loss_reference};
use rosetta_kernels::masking::{Sparsity, apply_mask, prune_mask, wanda_scores};
use rosetta_model::burn::prelude::*;
use rosetta_model::burn::tensor::Distribution;
use serde_json::{Value, json};

use crate::output::{table, write_json};

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
    #[arg(long, default_value_t = 5)]
    iters: usize,
    #[arg(long)]
    json: Option<PathBuf>,
}

/// Seconds per call (after one warm-up) and the device memory reserved over a cleaned pool; an
/// error when the device cannot run it (a software adapter's buffer limit, say). `f(i)` must
/// compute on inputs of its own for every `i` in `0..=iters`: burn reuses the result of an
/// operation repeated on the very same tensors, which would time a cache, not the kernel.
fn measure(device: &Device, iters: usize, mut f: impl FnMut(usize) -> Tensor<1>) -> Result<(f64, Option<u64>)> {
    let run = |t: Tensor<1>| t.try_into_data().map(drop).map_err(|e| anyhow::anyhow!("{e}"));
    run(f(0))?;
    device.memory_cleanup();
    let before = device.memory_pool_usage().map(|u| u.bytes_reserved);
    let start = Instant::now();
    for i in 1..=iters {
        run(f(i))?;
    }
    let seconds = start.elapsed().as_secs_f64() / iters as f64;
    let after = device.memory_pool_usage().map(|u| u.bytes_reserved);
    Ok((seconds, before.zip(after).map(|(b, a)| a.saturating_sub(b))))
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

/// The first line of an error, for a table cell.
fn short(e: &anyhow::Error) -> String {
    e.to_string().lines().last().unwrap_or("failed").chars().take(60).collect()
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
                        let loss = if fused { contrastive_loss(a.clone(), p, options) } else { contrastive_loss_reference(a.clone(), p, options) }
                            .expect("shapes were checked");
                        let grads = loss.backward();
                        a.grad(&grads).map(|g| g.sum()).unwrap_or_else(|| Tensor::zeros([1], &device))
                    } else if fused {
                        contrastive_loss(a_set[i].clone(), p_set[i].clone(), options).expect("shapes were checked")
                    } else {
                        contrastive_loss_reference(a_set[i].clone(), p_set[i].clone(), options).expect("shapes were checked")
                    }
                })
            };
            let (f_fwd, f_mem) = cell(true, false)?;
            let (c_fwd, c_mem) = cell(false, false)?;
            let (f_both, _) = cell(true, true)?;
            let (c_both, _) = cell(false, true)?;
            rows.push(vec![
                format!("{n}×{d}"),
                format!("{:.2}", f_fwd * 1e3),
                format!("{:.2}", c_fwd * 1e3),
                format!("{:.2}", f_both * 1e3),
                format!("{:.2}", c_both * 1e3),
                mib(f_mem),
                mib(c_mem),
            ]);
            records.push(json!({"n": n, "d": d, "fused_forward_ms": f_fwd * 1e3, "composed_forward_ms": c_fwd * 1e3,
                "fused_forward_backward_ms": f_both * 1e3, "composed_forward_backward_ms": c_both * 1e3,
                "fused_forward_reserved_bytes": f_mem, "composed_forward_reserved_bytes": c_mem}));
        }
    }
    println!("contrastive InfoNCE on {} (scale 20, shift)", args.device);
    println!("{}", table(&["n×d", "fused fwd ms", "composed fwd ms", "fused f+b ms", "composed f+b ms", "fused MiB", "composed MiB"], &rows));

    // Masking: Wanda score + 50% mask + apply on a SmolLM2 MLP matrix and a 7B-sized one.
    let mut mask_rows = Vec::new();
    let mut mask_records = Vec::new();
    let shapes = args
        .mask_shapes
        .iter()
        .map(|s| {
            let parse = |v: &str| v.trim().parse::<usize>().ok().filter(|&v| v > 0);
            s.split_once('x')
                .and_then(|(o, i)| Some((parse(o)?, parse(i)?)))
                .ok_or_else(|| anyhow::anyhow!("--mask-shapes: `{s}` is not OUTxIN (e.g. 1536x576)"))
        })
        .collect::<Result<Vec<_>>>()?;
    for (out, inp) in shapes {
        let made = inputs(&device, args.iters + 1, out, inp, 2).and_then(|w| Ok((w, inputs(&device, args.iters + 1, 1, inp, 3)?)));
        let (w, norms) = match made {
            Ok(pair) => pair,
            Err(e) => {
                mask_rows.push(vec![format!("{out}×{inp}"), "all".into(), "failed".into(), short(&e)]);
                mask_records.push(json!({"rows": out, "cols": inp, "error": e.to_string()}));
                continue;
            }
        };
        let norms: Vec<Tensor<1>> = norms.into_iter().map(|t| t.abs().reshape([inp])).collect();
        let elements = (out * inp) as f64;
        // Every timed call makes its input in the same submission (`w + i`): on some adapters a
        // kernel launched on a resident input returned in ~0.2 ms for 2048² — faster than the
        // memory allows — so the time of the input alone (made and reduced the same way) is
        // measured too and subtracted; the difference is the kernel's.
        let fresh = |i: usize| w[i].clone().add_scalar(i as f32 * 1e-3);
        let baseline = measure(&device, args.iters, |i| fresh(i).sum());
        let steps: [(&str, f64, Box<dyn Fn(usize) -> Tensor<1>>); 3] = [
            // bytes: read W and norms, write S
            ("wanda score", elements * 8.0, Box::new(|i| wanda_scores(fresh(i), norms[i].clone()).expect("shapes").sum())),
            // bytes: read S (≈32 passes of the binary search), write keep
            ("exact-k mask (50%)", elements * 4.0 * 33.0 + elements * 4.0, Box::new(|i| prune_mask(fresh(i).abs(), Sparsity::Unstructured(0.5)).expect("valid").float().sum())),
            // bytes: read W and keep, write W
            ("apply mask", elements * 12.0, Box::new(|i| {
                let x = fresh(i);
                apply_mask(x.clone(), x.greater_elem(0.0)).expect("shapes").sum()
            })),
        ];
        let base_seconds = match &baseline {
            Ok((seconds, _)) => *seconds,
            Err(e) => {
                mask_rows.push(vec![format!("{out}×{inp}"), "all".into(), "failed".into(), short(e), String::new()]);
                mask_records.push(json!({"rows": out, "cols": inp, "error": e.to_string()}));
                continue;
            }
        };
        for (name, bytes, f) in steps {
            match measure(&device, args.iters, f) {
                Ok((seconds, _)) => {
                    let kernel = (seconds - base_seconds).max(0.0);
                    let rate = if kernel > 0.0 { format!("{:.2}", bytes / kernel / 1e9) } else { "—".into() };
                    mask_rows.push(vec![format!("{out}×{inp}"), name.to_string(), format!("{:.2}", seconds * 1e3), format!("{:.2}", kernel * 1e3), rate]);
                    mask_records.push(json!({
                        "rows": out, "cols": inp, "kernel": name, "ms_with_input": seconds * 1e3, "ms_input_alone": base_seconds * 1e3,
                        "ms": kernel * 1e3, "bytes_moved": bytes, "gb_per_s": if kernel > 0.0 { bytes / kernel / 1e9 } else { f64::NAN },
                    }));
                }
                Err(e) => {
                    mask_rows.push(vec![format!("{out}×{inp}"), name.to_string(), "failed".into(), short(&e), String::new()]);
                    mask_records.push(json!({"rows": out, "cols": inp, "kernel": name, "error": e.to_string()}));
                }
            }
        }
    }
    println!("\nmasking kernels on {} (each call on a fresh input made in the same submission; kernel = total − input alone)", args.device);
    println!("{}", table(&["weight", "kernel", "ms total", "ms kernel", "GB/s moved"], &mask_rows));

    let report = json!({"benchmark": "kernels", "device": args.device, "fused_path": fused_available, "contrastive": records, "masking": mask_records});
    if let Some(path) = &args.json {
        write_json(path, &report)?;
    }
    Ok(())
}

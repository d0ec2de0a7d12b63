//! The training loop: causal-LM continued pretraining or SFT of the shared model on any device,
//! full or LoRA, with AdamW (decoupled weight decay, Loshchilov & Hutter 2019), warmup + cosine,
//! global-norm gradient clipping, gradient accumulation, data parallelism over several devices,
//! NaN/Inf detection, held-out bits/char evaluation, resumable checkpoints and an HF export.
//!
//! Determinism: the data order is a pure function of the seed and the stream state, the learning
//! rate a pure function of the step, and the optimizer state is checkpointed, so `--resume` on the
//! CPU continues with exactly the losses of an uninterrupted run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rosetta_kernels::adamw::AdamWHyper;
use rosetta_model::burn::module::{Module, ModuleVisitor, Param};
use rosetta_model::burn::optim::{GradientsParams, ModuleOptimizer};
use rosetta_model::burn::prelude::*;
use rosetta_model::export::{ExportOptions, export_hf};
use rosetta_model::peft::PeftAdapter;
use rosetta_model::scoring::{ScoreOptions, TextCost, score_texts_blocking};
use rosetta_model::{CausalLm, Checkpoint, Interventions, device_from_spec};
use serde_json::json;

use crate::adapt::{TrainableRows, prepare};
use crate::checkpoint::{CheckpointStore, DataDigest, RunState};
use crate::config::{IDENTITY_KEYS, Objective, TrainConfig};
use crate::error::{Result, TrainError};
use crate::loss::packed_loss;
use crate::method::{Method, MethodLoss, MicroBatch};
use crate::metrics::MetricsLog;
use crate::optimizer::FusedAdamW;
use crate::precision::{LossScale, TrainPrecision};
use crate::remote::{QuietPanics, RemoteDevices, panic_message, read_scalar};
use crate::schedule::learning_rate;
use crate::stream::TrainingStream;

/// What a step did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StepMetrics {
    pub step: usize,
    pub loss: f64,
    pub lr: f64,
    pub grad_norm: f64,
    pub tokens: u64,
    pub tokens_per_second: f64,
    pub elapsed_seconds: f64,
    /// A method's loss terms (e.g. ShifCon's generation and contrastive losses).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub parts: BTreeMap<String, f64>,
}

/// Held-out cost per language.
pub type EvalResult = BTreeMap<String, TextCost>;

/// Progress reporting (the CLI draws a bar; tests stay quiet).
pub trait Observer {
    fn started(&mut self, _start_step: usize, _total_steps: usize) {}
    fn step(&mut self, _metrics: &StepMetrics) {}
    fn evaluated(&mut self, _step: usize, _result: &EvalResult) {}
    fn message(&mut self, _text: &str) {}
}

pub struct Quiet;
impl Observer for Quiet {}

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub resume: bool,
    /// Stop after this step without finishing the run (simulates an interruption in tests).
    pub stop_after: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct RunSummary {
    pub last_step: usize,
    pub metrics: PathBuf,
    pub final_model: Option<PathBuf>,
    /// A LoRA run's adapter in PEFT's format (`<out>/adapter`), beside the merged `final/`.
    pub final_adapter: Option<PathBuf>,
    pub first_eval: Option<EvalResult>,
    pub last_eval: Option<EvalResult>,
}

/// Held-out documents per language.
struct EvalSet {
    texts: BTreeMap<String, Vec<String>>,
}

impl EvalSet {
    fn load(config: &TrainConfig, mixture_langs: Vec<String>) -> Result<Option<Self>> {
        let Some(path) = &config.data.eval else { return Ok(None) };
        let (docs, _) = rosetta_data::monolingual::read_documents(path, config.data.lang.as_deref(), rosetta_data::BadLines::Fail)?;
        let langs = if config.data.eval_langs.is_empty() { mixture_langs } else { config.data.eval_langs.clone() };
        let mut texts = BTreeMap::new();
        for lang in langs {
            let chosen: Vec<String> =
                docs.iter().filter(|d| d.lang == lang).take(config.data.eval_docs_per_lang).map(|d| d.text.clone()).collect();
            if chosen.is_empty() {
                return Err(TrainError::Invalid(format!("{}: no held-out documents in `{lang}`", path.display())));
            }
            texts.insert(lang, chosen);
        }
        Ok(Some(EvalSet { texts }))
    }

    fn run(&self, model: &CausalLm, tokenizer: &rosetta_model::TextTokenizer, method: Option<&dyn Method>) -> Result<EvalResult> {
        let inference = model.valid();
        let mut options = ScoreOptions::for_model(&inference);
        let mut out = BTreeMap::new();
        for (lang, texts) in &self.texts {
            if let Some(method) = method {
                options.interventions = method.eval_interventions(lang, &inference.device())?;
            }
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            let cost = score_texts_blocking(&inference, tokenizer, &refs, &options)?.into_iter().fold(TextCost::default(), |a, b| a + b);
            out.insert(lang.clone(), cost);
        }
        Ok(out)
    }
}

fn eval_json(step: usize, result: &EvalResult) -> serde_json::Value {
    let langs: serde_json::Map<String, serde_json::Value> = result
        .iter()
        .map(|(l, c)| {
            (
                l.clone(),
                json!({"bits_per_char": c.bits_per_char(), "bits_per_byte": c.bits_per_byte(), "tokens": c.tokens, "chars": c.chars}),
            )
        })
        .collect();
    json!({"step": step, "eval": langs})
}

/// Σ of squared gradients → global L2 norm; then, if above `max`, every gradient scaled by
/// `max / norm` (PyTorch's `clip_grad_norm_`).
fn clip_global_norm(model: &CausalLm, grads: &mut GradientsParams, max: Option<f64>) -> Result<f64> {
    struct SquaredNorms<'a> {
        grads: &'a GradientsParams,
        parts: Vec<Tensor<1>>,
    }
    impl ModuleVisitor for SquaredNorms<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.get::<D>(param.id) {
                self.parts.push(g.square().sum());
            }
        }
    }
    let mut norms = SquaredNorms { grads, parts: Vec::new() };
    model.visit(&mut norms);
    if norms.parts.is_empty() {
        return Err(TrainError::Invalid("no parameter received a gradient: nothing is trainable".into()));
    }
    let total: f64 = Tensor::cat(norms.parts, 0).sum().into_scalar::<f32>() as f64;
    let norm = total.sqrt();
    if let Some(max) = max
        && norm.is_finite()
        && norm > max
    {
        crate::precision::scale_gradients(model, grads, max / (norm + 1e-6));
    }
    Ok(norm)
}

/// Sums the gradients of every parameter from several parts (devices, or one device's
/// micro-batches) onto `main`.
fn reduce_onto(model: &CausalLm, parts: Vec<GradientsParams>, main: &Device) -> GradientsParams {
    struct Reduce<'a> {
        parts: &'a mut [GradientsParams],
        out: GradientsParams,
        device: &'a Device,
    }
    impl ModuleVisitor for Reduce<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let mut sum: Option<Tensor<D>> = None;
            for part in self.parts.iter_mut() {
                if let Some(g) = part.remove::<D>(param.id) {
                    let g = g.to_device(self.device);
                    sum = Some(match sum {
                        Some(s) => s + g,
                        None => g,
                    });
                }
            }
            if let Some(s) = sum {
                self.out.register(param.id, s);
            }
        }
    }
    let mut parts = parts;
    let mut reduce = Reduce { parts: &mut parts, out: GradientsParams::new(), device: main };
    model.visit(&mut reduce);
    reduce.out
}

/// A config's method table and the method handed to the trainer must agree, and a method trains
/// on one device.
fn check_method(config: &TrainConfig, method: Option<&dyn Method>) -> std::result::Result<(), String> {
    let table = config.methods.keys().next();
    match (table, method) {
        (Some(table), None) => Err(format!(
            "[{table}] configures a training method, but no method was given to the trainer (callers build it from the table \
             with the method's crate, as `rosetta train` does)"
        )),
        (Some(table), Some(m)) if table != m.name() => {
            Err(format!("the config's method table is [{table}], but the trainer was given the `{}` method", m.name()))
        }
        (_, Some(m)) if config.model.devices.len() > 1 => {
            Err(format!("{} trains on one device; list one entry in model.devices", m.name()))
        }
        _ => Ok(()),
    }
}

/// A checkpoint's config identity in the current layout. Before method tables were carried
/// verbatim (Rosetta 0.1 up to the change of shape), a method's parsed section sat at the top
/// level (`"shifcon": {…}`) in the same form [`Method::settings`] gives now; it moves under
/// `"methods"`, so such runs resume.
fn upgrade_identity(mut stored: serde_json::Value) -> serde_json::Value {
    let Some(object) = stored.as_object_mut() else { return stored };
    if object.contains_key("methods") {
        return stored;
    }
    let legacy: Vec<String> = object.keys().filter(|k| !IDENTITY_KEYS.contains(&k.as_str())).cloned().collect();
    let mut methods = serde_json::Map::new();
    for key in legacy {
        if let Some(section) = object.remove(&key)
            && !section.is_null()
        {
            methods.insert(key, section);
        }
    }
    object.insert("methods".into(), serde_json::Value::Object(methods));
    stored
}

/// Runs (or resumes) the training run `config` describes.
pub fn train(config: &TrainConfig, options: &RunOptions, observer: &mut dyn Observer) -> Result<RunSummary> {
    train_with(config, options, observer, None)
}

/// [`train`] with a training method's loss, evaluation and state (see [`Method`]).
pub fn train_with(
    config: &TrainConfig,
    options: &RunOptions,
    observer: &mut dyn Observer,
    method: Option<&mut dyn Method>,
) -> Result<RunSummary> {
    if !config.model.devices.iter().any(|spec| rosetta_model::is_remote_spec(spec)) {
        return run(config, options, observer, method);
    }
    // A read from a server that died panics inside burn wherever the trainer cannot use a
    // fallible read (see `crate::remote`); the run then names the device that stopped answering,
    // with the panic's message and place, in place of the panic hook's report.
    let quiet = QuietPanics::new();
    let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(config, options, observer, method)));
    drop(quiet);
    ran.unwrap_or_else(|payload| {
        let store = CheckpointStore::new(&config.run.out, config.run.keep_last);
        let checkpoint = || store.latest().map(|(_, p)| p.display().to_string()).unwrap_or_else(|| "none (the base model)".into());
        let mut devices = Vec::with_capacity(config.model.devices.len());
        for spec in &config.model.devices {
            match device_from_spec(spec) {
                Ok(device) => devices.push(device),
                Err(e) => {
                    let reason = format!("after a panic ({}), connecting again: {e}", panic_message(payload.as_ref()));
                    return Err(TrainError::DeviceLost { device: spec.clone(), reason, checkpoint: checkpoint() });
                }
            }
        }
        Err(RemoteDevices::of(&config.model.devices, &devices).after_panic(payload.as_ref(), checkpoint))
    })
}

fn run(config: &TrainConfig, options: &RunOptions, observer: &mut dyn Observer, mut method: Option<&mut dyn Method>) -> Result<RunSummary> {
    let config_path = || config.run.out.join("config.toml");
    config.validate().map_err(|reason| TrainError::Config { path: config_path(), reason })?;
    check_method(config, method.as_deref()).map_err(|reason| TrainError::Config { path: config_path(), reason })?;
    let method_settings: BTreeMap<String, serde_json::Value> =
        method.as_deref().map(|m| (m.name().to_string(), m.settings())).into_iter().collect();
    let identity = config.identity(&method_settings);
    let out = &config.run.out;
    let store = CheckpointStore::new(out, config.run.keep_last);
    let latest = store.latest();
    match (options.resume, &latest) {
        (false, Some((step, path))) => {
            return Err(TrainError::Resume(format!(
                "{} already holds checkpoints (latest: step {step} at {}); resume it (RunOptions::resume; --resume on the command line), \
                 or choose another run.out — nothing was overwritten",
                out.display(),
                path.display()
            )));
        }
        (true, None) => {
            return Err(TrainError::Resume(format!(
                "nothing to resume: {} has no checkpoints; start it without resuming",
                store.dir.display()
            )));
        }
        _ => {}
    }

    // What killed runs left behind: half-written files, staging directories holding a model.
    for dir in [out.as_path(), store.dir.as_path()] {
        let (removed, bytes) = rosetta_model::atomic::remove_stale(dir)?;
        if !removed.is_empty() {
            observer.message(&format!(
                "removed {} unfinished write(s) of killed runs in {} ({:.1} MB)",
                removed.len(),
                dir.display(),
                bytes as f64 / 1e6
            ));
        }
    }
    let model_path = config.model.path.as_ref().ok_or_else(|| TrainError::Invalid("model.path is not set".into()))?;
    let checkpoint = Checkpoint::open(model_path, config.model.tokenizer.as_deref())?;
    let devices: Vec<Device> = config.model.devices.iter().map(|d| device_from_spec(d)).collect::<rosetta_model::Result<_>>()?;
    let main = devices[0].clone().autodiff();
    let remote = RemoteDevices::of(&config.model.devices, &devices);
    let precision = config.optim.precision;
    for device in &devices {
        precision.check_device(device).map_err(|reason| TrainError::Config { path: config_path(), reason })?;
    }
    if config.optim.activation_checkpointing && !crate::adapt::layer_checkpointing_runs(config, &devices) {
        return Err(TrainError::Config {
            path: config_path(),
            reason: format!(
                "[optim] activation_checkpointing replays f32 layers (precision = \"f32\", or \"bf16\" on a CPU with AVX-512 BF16), \
                 on the CPU or a GPU backend, not on {:?} with precision = \"{}\"; drop it, or train in f32",
                config.model.devices,
                precision.name()
            ),
        });
    }
    // f16 scales its loss (see `crate::precision`); restored from the checkpoint on resume.
    let mut loss_scale = (precision == TrainPrecision::F16).then(LossScale::default);
    let storage = crate::adapt::load_precision(config, &devices);
    let model = checkpoint.load_with(&main, storage)?;
    let (model, trainable_rows): (CausalLm, Option<TrainableRows>) = prepare(model, config, checkpoint.extras.as_ref())?;
    let mut model = model.with_layer_checkpointing(config.optim.activation_checkpointing);
    let tokenizer = checkpoint.tokenizer.clone();
    let base_extras = checkpoint.extras.clone();

    let data_files: Vec<&Path> = config.data.train.iter().chain(&config.data.eval).map(PathBuf::as_path).collect();
    let data_digests = DataDigest::of_files(data_files)?;
    if options.resume
        && let Some((step, path)) = &latest
    {
        // Before the data is read: a file that shrank must be named, not fail the mixture.
        DataDigest::check_unchanged(&store.read_state(path)?.data, &data_digests, *step)?;
    }
    let mut stream = TrainingStream::new(&config.data, tokenizer.clone(), config.run.seed)?;
    let mixture_langs: Vec<String> = {
        let mut langs: Vec<String> = stream.mixture().components.iter().map(|c| c.lang.clone()).collect();
        langs.dedup();
        langs
    };
    let eval_set = EvalSet::load(config, mixture_langs)?;

    let o = &config.optim;
    // burn's AdamW, each tensor's step one WGSL dispatch on wgpu (`crate::optimizer`).
    let adamw = FusedAdamW::new(AdamWHyper {
        beta_1: o.beta1 as f32,
        beta_2: o.beta2 as f32,
        epsilon: o.epsilon as f32,
        weight_decay: o.weight_decay as f32,
    });
    let mut optimizer = ModuleOptimizer::from(adamw.clone());
    // Vocabulary stage 1: the tables step on their new rows alone, with state for those rows.
    if let Some(rows) = &trainable_rows {
        optimizer = optimizer.with_group(TrainableRows::tables()?, rows.optimizer(adamw.burn_adamw()), None);
    }

    let mut start_step = 0;
    let mut tokens_seen = 0u64;
    if options.resume {
        let (_, path) = latest.clone().ok_or_else(|| TrainError::Resume(format!("nothing to resume in {}", store.dir.display())))?;
        let (loaded_model, loaded_optimizer, state) = store.load(&path, model, optimizer).map_err(|e| match storage {
            // Runs begun before LoRA kept a quantized base packed stored it dequantised.
            rosetta_model::Precision::PackedBase => TrainError::Resume(format!(
                "{e}; if this LoRA run began before Rosetta kept a quantized base packed (QLoRA), its checkpoints hold f32 weights: resume it with [lora] base = \"f32\""
            )),
            _ => e,
        })?;
        let mut stored = upgrade_identity(state.config.clone());
        if let Some(method) = method.as_deref()
            && let Some(settings) = stored.get_mut("methods").and_then(|m| m.get_mut(method.name()))
        {
            *settings = method.upgrade_settings(settings.take());
        }
        if stored != identity {
            let differs: Vec<&str> = IDENTITY_KEYS.into_iter().chain(["methods"]).filter(|k| stored.get(*k) != identity.get(*k)).collect();
            return Err(TrainError::Resume(format!(
                "{} was written by a run with different settings ({}); resume with the same config or start a new run.out",
                path.display(),
                differs.join(", ")
            )));
        }
        model = loaded_model;
        optimizer = loaded_optimizer;
        stream.restore(state.stream)?;
        if let Some(m) = method.as_deref_mut() {
            m.restore(state.method)?;
        }
        start_step = state.step;
        tokens_seen = state.tokens_seen;
        if loss_scale.is_some() {
            loss_scale = Some(state.loss_scale.unwrap_or_default());
        }
        observer.message(&format!("resumed from {} (step {start_step})", path.display()));
    }
    if !options.resume
        && let Some(m) = method.as_deref_mut()
    {
        m.start(&model, &tokenizer)?;
    }
    rosetta_model::atomic::write_file(&out.join("config.toml"), config.to_toml(&method_settings).as_bytes())?;
    let metrics_path = out.join("metrics.jsonl");
    let mut metrics = MetricsLog::open(&metrics_path, options.resume.then_some(start_step))?;
    let last_checkpoint =
        |store: &CheckpointStore| store.latest().map(|(_, p)| p.display().to_string()).unwrap_or_else(|| "none (the base model)".into());

    let mut first_eval = None;
    let mut last_eval = None;
    if !options.resume
        && let Some(set) = &eval_set
    {
        let result = set.run(&model, &tokenizer, method.as_deref())?;
        metrics.write(&eval_json(0, &result))?;
        observer.evaluated(0, &result);
        first_eval = Some(result);
    }

    let total = config.run.steps;
    let rows_per_device = config.data.batch_size / devices.len();
    observer.started(start_step, total);
    let run_start = Instant::now();
    let mut step = start_step;
    while step < total {
        step += 1;
        // A server whose connection closed since the last step is named here, before this
        // step's work is sent to it (burn's client drops what it sends to a closed connection).
        remote.check(&format!("before step {step}"), || last_checkpoint(&store))?;
        let step_start = Instant::now();
        let lr = learning_rate(o, step, total);
        let micro_batches: Vec<Vec<rosetta_data::PackedRow>> =
            (0..config.data.grad_accum).map(|_| stream.next_rows(config.data.batch_size)).collect::<Result<_>>()?;
        let predictions: usize = micro_batches.iter().flatten().map(|r| r.num_predictions()).sum();
        if predictions == 0 {
            return Err(TrainError::Invalid(format!("step {step}: the batch has no target tokens (every SFT response empty?)")));
        }
        let normalizer = predictions as f32;
        // f16's loss scaling (none otherwise); gradients are unscaled below.
        let scale = loss_scale.as_ref();
        let mut loss_sum = 0f64;
        let mut parts: BTreeMap<String, f64> = BTreeMap::new();
        let mut device_grads: Vec<GradientsParams> = Vec::new();
        // Data parallel: the model goes to each device once a step, not once a micro-batch (a
        // remote device receives it over the network), and each device sums its micro-batches'
        // gradients before they travel to the first device.
        let replicas: Vec<(CausalLm, &String, Device)> = if devices.len() > 1 && method.is_none() {
            devices
                .iter()
                .zip(&config.model.devices)
                .map(|(device, spec)| {
                    let device = device.clone().autodiff();
                    (model.clone().fork(&device), spec, device)
                })
                .collect()
        } else {
            Vec::new()
        };
        let mut grads_by_device: Vec<Vec<GradientsParams>> = replicas.iter().map(|_| Vec::new()).collect();
        for (index, rows) in micro_batches.iter().enumerate() {
            if let Some(m) = method.as_deref_mut() {
                let micro = MicroBatch { step, index, count: micro_batches.len(), normalizer };
                let MethodLoss { total, parts: these } = m.loss(&precision.compute_model(&model), &tokenizer, rows, micro)?;
                loss_sum += read_scalar(total.clone(), &config.model.devices[0], "loss", step, || last_checkpoint(&store))?;
                these.into_iter().for_each(|(k, v)| *parts.entry(k).or_default() += v);
                device_grads.push(GradientsParams::from_grads(LossScale::scale_loss(scale, total).backward(), &model));
            } else if devices.len() == 1 {
                let loss = packed_loss(&precision.compute_model(&model), rows, normalizer, &Interventions::none())?;
                loss_sum += read_scalar(loss.clone(), &config.model.devices[0], "loss", step, || last_checkpoint(&store))?;
                device_grads.push(GradientsParams::from_grads(LossScale::scale_loss(scale, loss).backward(), &model));
            } else {
                use rayon::prelude::*;
                let shards: Vec<&[rosetta_data::PackedRow]> = rows.chunks(rows_per_device).collect();
                // Tasks of the compute pool, not threads beside it: a pool thread (the CLI runs
                // every command on one) that blocked on threads of its own would leave their
                // kernels one worker fewer — none, with one thread — while rayon's wait runs
                // a shard itself. (A replica's clone shares its tensors: nothing is copied.)
                let this_batch: Vec<(CausalLm, &String)> =
                    replicas.iter().take(shards.len()).map(|(replica, spec, _)| (replica.clone(), *spec)).collect();
                let results: Vec<Result<(f64, GradientsParams)>> = this_batch
                    .into_par_iter()
                    .zip(shards.into_par_iter())
                    .map(|((replica, spec), shard)| {
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| -> Result<(f64, GradientsParams)> {
                            let loss = packed_loss(&precision.compute_model(&replica), shard, normalizer, &Interventions::none())?;
                            let value = read_scalar(loss.clone(), spec, "loss", step, || last_checkpoint(&store))?;
                            Ok((value, GradientsParams::from_grads(LossScale::scale_loss(scale, loss).backward(), &replica)))
                        }))
                        .unwrap_or_else(|payload| Err(remote.after_panic(payload.as_ref(), || last_checkpoint(&store))))
                    })
                    .collect();
                for (result, sums) in results.into_iter().zip(grads_by_device.iter_mut()) {
                    let (value, grads) = result?;
                    loss_sum += value;
                    sums.push(grads);
                }
            }
        }
        for (parts, (_, _, device)) in grads_by_device.into_iter().zip(&replicas) {
            if !parts.is_empty() {
                device_grads.push(reduce_onto(&model, parts, device));
            }
        }
        drop(replicas);
        let mut grads = reduce_onto(&model, device_grads, &main);
        let rows_description = || format!("{} rows of {} tokens", micro_batches.len() * config.data.batch_size, config.data.seq_len);
        // (Under f16 loss scaling an overflow in the forward is a skipped step, like one in the
        // gradients.)
        if !loss_sum.is_finite() && loss_scale.is_none() {
            return Err(TrainError::NonFinite { what: "loss", step, rows: rows_description(), checkpoint: last_checkpoint(&store) });
        }
        if let Some(l) = &loss_scale {
            l.unscale(&model, &mut grads);
        }
        let grad_norm = clip_global_norm(&model, &mut grads, o.grad_clip)?;
        // f16: gradients that overflowed at this scale skip the optimizer step (the data is
        // consumed, as PyTorch's GradScaler does) and halve the scale.
        let applied = loss_scale.as_mut().is_none_or(|l| l.update(grad_norm.is_finite() && loss_sum.is_finite()));
        if let Some(l) = loss_scale.as_ref().filter(|_| !applied) {
            observer.message(&format!(
                "step {step}: f16 gradients overflowed at loss scale {}; step skipped, scale now {}",
                l.scale * 2.0,
                l.scale
            ));
        } else if !grad_norm.is_finite() {
            return Err(TrainError::NonFinite {
                what: "gradient norm",
                step,
                rows: rows_description(),
                checkpoint: last_checkpoint(&store),
            });
        }
        if applied {
            model = optimizer.step(lr, model, grads);
            if let Some(m) = method.as_deref_mut() {
                m.after_step(&model, &tokenizer, step)?;
            }
        }
        let step_tokens = (config.data.grad_accum * config.data.batch_size * config.data.seq_len) as u64;
        tokens_seen += step_tokens;
        let step_metrics = StepMetrics {
            step,
            loss: loss_sum,
            lr,
            grad_norm,
            tokens: tokens_seen,
            tokens_per_second: step_tokens as f64 / step_start.elapsed().as_secs_f64(),
            elapsed_seconds: run_start.elapsed().as_secs_f64(),
            parts,
        };
        metrics.write(&serde_json::to_value(&step_metrics).unwrap_or_default())?;
        observer.step(&step_metrics);

        if (step % config.run.eval_every == 0 || step == total)
            && let Some(set) = &eval_set
        {
            let result = set.run(&model, &tokenizer, method.as_deref())?;
            metrics.write(&eval_json(step, &result))?;
            observer.evaluated(step, &result);
            last_eval = Some(result);
        }
        if step % config.run.checkpoint_every == 0 || step == total {
            let state = RunState {
                step,
                tokens_seen,
                stream: stream.state(),
                config: identity.clone(),
                rosetta_version: env!("CARGO_PKG_VERSION").to_string(),
                method: method.as_deref().map(|m| m.state()).unwrap_or_default(),
                data: data_digests.clone(),
                loss_scale: loss_scale.clone(),
            };
            let path = store.save(&model, &optimizer, &state)?;
            observer.message(&format!("checkpoint {}", path.display()));
        }
        if options.stop_after == Some(step) {
            return Ok(RunSummary {
                last_step: step,
                metrics: metrics_path,
                final_model: None,
                final_adapter: None,
                first_eval,
                last_eval,
            });
        }
    }

    let exporting = config.run.export && step == total;
    let final_adapter = match (&config.lora, exporting) {
        (Some(lora), true) => {
            let base = config.model.path.as_ref().map(|p| p.display().to_string());
            match PeftAdapter::from_model(&model.valid(), lora.rank, lora.alpha, base)? {
                Some(adapter) => Some(adapter.write(&out.join("adapter"), true)?),
                None => None,
            }
        }
        _ => None,
    };
    let final_model = if exporting {
        let merged = model.valid().materialize();
        let dir = out.join("final");
        // Keep what the input checkpoint recorded (a vocabulary extension's new token ids).
        let mut extras = base_extras.clone().filter(serde_json::Value::is_object).unwrap_or_else(|| json!({}));
        extras["trained_by"] = json!("rosetta train");
        extras["steps"] = json!(total);
        extras["objective"] = json!(match config.data.objective {
            Objective::CausalLm => "causal-lm",
            Objective::Sft => "sft",
        });
        extras["mix"] = json!(stream.mixture().to_string());
        if let Some(m) = method.as_deref() {
            extras["method"] = json!(m.name());
            extras[m.name()] = m.export_record();
        }
        let options = ExportOptions { overwrite: true, extras: Some(extras), ..Default::default() };
        Some(export_hf(&merged, &tokenizer, &dir, &options)?)
    } else {
        None
    };
    Ok(RunSummary { last_step: step, metrics: metrics_path, final_model, final_adapter, first_eval, last_eval })
}

/// A run directory's model as its latest checkpoint holds it (LoRA factors attached, not
/// merged), with the run's config and the step: what `rosetta export --peft-from` writes out.
pub fn load_run_model(out: &Path, device: &Device) -> Result<(TrainConfig, Checkpoint, CausalLm, usize)> {
    let config = TrainConfig::from_toml_file(&out.join("config.toml"))?;
    let store = CheckpointStore::new(out, config.run.keep_last);
    let (step, path) = store.latest().ok_or_else(|| {
        TrainError::Resume(format!("{} has no checkpoints: train it first (or point at another run directory)", store.dir.display()))
    })?;
    let model_path = config.model.path.as_ref().ok_or_else(|| TrainError::Invalid("model.path is not set".into()))?;
    let checkpoint = Checkpoint::open(model_path, config.model.tokenizer.as_deref())?;
    // The weights stored as training stored them (packed or f32, decided by the run's own
    // devices): the checkpoint's record, LoRA factors included, fits only that structure. A
    // packed base lives on the CPU, whatever device the export asked for; devices this machine
    // lacks trained nothing packed.
    let run_devices: Option<Vec<Device>> = config.model.devices.iter().map(|d| device_from_spec(d).ok()).collect();
    let precision = run_devices.map_or(rosetta_model::Precision::F32, |devices| crate::adapt::load_precision(&config, &devices));
    let cpu;
    let device = if precision == rosetta_model::Precision::PackedBase {
        cpu = device_from_spec("cpu")?;
        &cpu
    } else {
        device
    };
    let (model, _) = prepare(checkpoint.load_with(device, precision)?, &config, checkpoint.extras.as_ref())?;
    let (model, _) = store.load_model(&path, model)?;
    Ok((config, checkpoint, model, step))
}

/// The checkpoint and metrics locations of a run directory (for `rosetta plot` and tests).
pub fn metrics_path(out: &Path) -> PathBuf {
    out.join("metrics.jsonl")
}

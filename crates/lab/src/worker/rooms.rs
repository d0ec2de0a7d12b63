//! Each request's work in the worker: the computations of `crate::{shift, features, distill,
//! fertility}` on the loaded model, with the progress and partial results the page shows, turned
//! into views ([`crate::protocol`]) the page only lays out.

use std::rc::Rc;

use rosetta_model::{Interventions, TextTokenizer};

use super::batch_boundary;
use super::loader::{self, Loaded};
use super::{Call, Handled, State, backend};
use crate::browser::{self, now_ms};
use crate::distill::{DistillConfig, Distiller, teach};
use crate::features::{heatmap, large_dimensions, magnitudes, pruned_bits_per_char, scored_texts};
use crate::fertility::{fertility_chart, fertility_rows, pieces, premiums};
use crate::manifest::{self, Manifest};
use crate::page_memory::{MAX_PICKED_BYTES, MAX_TOKENIZER_BYTES, check_model_fits_page};
use crate::protocol::{
    Answer, BackendChoice, DistillStep, Event, ExportedGeometry, FeaturesView, GeometryView, ModelInfo, Request, ShiftView,
};
use crate::shift::{
    SHIFT_SENTENCES, ShiftBase, band_stability_chart, compute_geometry, distance_chart, next_token_view, plan, scatter_chart,
    shifted_points,
};

/// Parallel rows the distillation room turns into lessons (two of them held out).
const DISTILL_ROWS: usize = 12;
/// Held-out loss and samples every this many steps.
const REPORT_EVERY: usize = 5;

pub async fn handle(call: &Call, request: Request, files: Vec<web_sys::File>) -> Handled {
    let state = &call.state;
    match request {
        Request::Start { base, backend, precision, buffer_limit } => start(call, &base, backend, precision, buffer_limit).await,
        Request::OpenPicked => open_picked(call, &files).await,
        Request::OpenExtended => open_extended(state, &files).await,
        Request::Tokenize { text } => tokenize(state, &text),
        Request::Fertility => fertility(state),
        Request::Geometry => geometry(call).await,
        Request::Shift { lang, strength, layer, sentence } => shift(call, &lang, strength, layer, sentence).await,
        Request::Features => features(call).await,
        Request::Prune { sparsity } => prune(call, sparsity).await,
        Request::DistillStart { lang } => distill(call, lang).await,
        Request::DistillPause => {
            state.distill.borrow_mut().running = false;
            Ok(Answer::Done)
        }
        Request::DistillReset => {
            let mut slot = state.distill.borrow_mut();
            *slot = super::DistillSlot { generation: slot.generation + 1, ..super::DistillSlot::default() };
            Ok(Answer::Done)
        }
        Request::MeasureSpeed => {
            let loaded = state.loaded()?;
            measure_speed(&loaded).await
        }
    }
}

async fn start(call: &Call, base: &str, choice: BackendChoice, precision: Option<String>, buffer_limit: Option<u64>) -> Handled {
    let state = &call.state;
    state.precision.set(precision.as_deref().and_then(rosetta_model::Precision::parse).unwrap_or_default());
    state.buffer_limit.set(buffer_limit);
    call.status("Choosing a device…");
    let (device, backend) = backend::choose(choice, &state.module_note).await;
    call.event(Event::Backend(backend.info.clone()));
    *state.device.borrow_mut() = Some(device);
    *state.backend.borrow_mut() = Some(backend);

    let manifest = match loader::fetch_manifest(&format!("{base}{}", manifest::FILE_NAME)).await {
        Ok(m) => Rc::new(m),
        Err(e) => {
            call.status("No lab data served: open a model with the file picker.");
            return Err(e);
        }
    };
    *state.manifest.borrow_mut() = Some(manifest.clone());
    call.event(Event::Manifest(Box::new((*manifest).clone())));
    if let Some(ext) = &manifest.extended_tokenizer {
        let url = format!("{base}{}", ext.file);
        let parsed = browser::fetch_text(&url)
            .await
            .and_then(|json| TextTokenizer::from_hf_json(&json, None, None, &ext.file).map_err(|e| e.to_string()));
        match parsed {
            Ok(tokenizer) => {
                *state.extended.borrow_mut() = Some(Rc::new((ext.label.clone(), tokenizer)));
                call.event(Event::Extended { label: ext.label.clone() });
            }
            Err(e) => call.event(Event::Warning(format!("extended tokenizer: {e}"))),
        }
    }
    exports(call, base, &manifest).await;
    let Some(files) = manifest.model.clone() else {
        call.status("No model served: open one with the file picker.");
        return Ok(Answer::Done);
    };
    call.status(format!("Loading {}…", files.name));
    call.progress(0.0);
    let started = now_ms();
    let mut shown = 0.0;
    let checkpoint = loader::checkpoint_from_server(base, &files, |done, total| {
        // Whole percents: a message per fetched chunk would be thousands for a real model.
        let fraction = total.map_or(0.0, |t| done as f64 / t.max(1) as f64);
        if fraction - shown >= 0.01 {
            shown = fraction;
            call.progress(fraction);
        }
    })
    .await?;
    open_checkpoint(call, checkpoint, files.name.clone(), files.bytes, started).await
}

/// The CLI's exported analyses, drawn: a broken one is reported and skipped.
async fn exports(call: &Call, base: &str, manifest: &Manifest) {
    async fn read<T: for<'de> serde::Deserialize<'de>>(base: &str, file: &str) -> Result<T, String> {
        let text = browser::fetch_text(&format!("{base}{file}")).await?;
        serde_json::from_str(&text).map_err(|e| format!("{file}: {e}"))
    }
    if let Some(file) = &manifest.exports.geometry {
        match read::<rosetta_shifcon::Geometry>(base, file).await {
            Ok(g) => call.event(Event::ExportedGeometry(ExportedGeometry {
                summary: format!(
                    "Exported by `rosetta geometry`: {} sentences per language, band {}..{} of {} layers ({}; {} conventions)",
                    g.sentences,
                    g.band.to,
                    g.band.back,
                    g.num_layers,
                    g.band.confidence(),
                    g.conventions
                ),
                distances: distance_chart(&g),
                band_stability: band_stability_chart(&g),
            })),
            Err(e) => call.event(Event::Warning(format!("exported geometry: {e}"))),
        }
    }
    if let Some(file) = &manifest.exports.features {
        match read::<crate::features::FeatureExport>(base, file).await {
            Ok(export) => {
                if let Some(translation) = export.setting("translation") {
                    call.event(Event::ExportedFeatures {
                        summary: format!(
                            "Exported by `rosetta features`: {} translation prompts, {} tokens",
                            translation.prompts, translation.tokens
                        ),
                        heatmap: heatmap(translation),
                    });
                }
            }
            Err(e) => call.event(Event::Warning(format!("exported features: {e}"))),
        }
    }
}

async fn open_picked(call: &Call, files: &[web_sys::File]) -> Handled {
    call.status("Reading the picked files (locally, nothing is uploaded)…");
    let started = now_ms();
    let picked = browser::read_files(files, MAX_PICKED_BYTES).await?;
    let name = picked.iter().map(|f| f.name.clone()).collect::<Vec<_>>().join(", ");
    let file_bytes = picked.iter().map(|f| f.bytes.len() as u64).sum();
    let checkpoint = loader::checkpoint_from_picked(picked)?;
    open_checkpoint(call, checkpoint, name, file_bytes, started).await
}

async fn open_checkpoint(call: &Call, checkpoint: rosetta_model::Checkpoint, name: String, file_bytes: u64, started: f64) -> Handled {
    let state = &call.state;
    let device = state.device()?;
    let backend = state.backend.borrow().clone().ok_or("the device is not chosen yet")?;
    let precision = state.precision.get();
    let quantized_file = checkpoint.storage_summary().keys().any(|ty| ty.starts_with('Q'));
    let stays_quantized = quantized_file && precision.packs_on(&device);
    check_model_fits_page(&checkpoint.config, file_bytes, stays_quantized)
        .and_then(|_| loader::check_fits(&checkpoint.config, &backend, state.buffer_limit.get()))?;
    call.status(format!("Preparing {name} on {}…", backend.info.name));
    batch_boundary().await;
    let loaded = loader::load(&checkpoint, &device, precision, name, started)?;
    let info = ModelInfo {
        name: loaded.name.clone(),
        seconds: loaded.seconds,
        storage: loaded.storage.clone(),
        vocab_size: loaded.tokenizer.vocab_size(),
    };
    state.install(loaded);
    Ok(Answer::Loaded(info))
}

async fn open_extended(state: &State, files: &[web_sys::File]) -> Handled {
    let picked = browser::read_files(files, MAX_TOKENIZER_BYTES).await?;
    let file = picked.into_iter().next().ok_or("no file picked")?;
    let json = String::from_utf8(file.bytes).map_err(|_| format!("{} is not UTF-8 text", file.name))?;
    let tokenizer = TextTokenizer::from_hf_json(&json, None, None, &file.name).map_err(|e| e.to_string())?;
    if let Some(loaded) = state.loaded.borrow().as_ref()
        && tokenizer.vocab_size() < loaded.tokenizer.vocab_size()
    {
        return Err(format!(
            "{} has {} tokens, fewer than the model's {}: it is not an extension of this tokenizer",
            file.name,
            tokenizer.vocab_size(),
            loaded.tokenizer.vocab_size()
        ));
    }
    *state.extended.borrow_mut() = Some(Rc::new((file.name.clone(), tokenizer)));
    Ok(Answer::Extended { label: file.name })
}

fn tokenize(state: &State, text: &str) -> Handled {
    let loaded = state.loaded()?;
    let base_vocab = loaded.tokenizer.vocab_size();
    let base = pieces(&loaded.tokenizer, text, base_vocab).map_err(|e| e.to_string())?;
    let extended = state.extended.borrow().clone();
    let extended = match extended {
        Some(ext) => Some((ext.0.clone(), pieces(&ext.1, text, base_vocab).map_err(|e| format!("{}: {e}", ext.0))?)),
        None => None,
    };
    Ok(Answer::Tokens { base, extended })
}

fn fertility(state: &State) -> Handled {
    let (loaded, manifest) = (state.loaded()?, state.manifest()?);
    let texts: Vec<(String, Vec<&str>)> = manifest.langs.iter().map(|l| (l.clone(), manifest.sentences(l))).collect();
    let extended = state.extended.borrow().clone();
    let rows = fertility_rows(&loaded.tokenizer, extended.as_ref().map(|e| &e.1), &texts).map_err(|e| e.to_string())?;
    Ok(Answer::Fertility {
        chart: fertility_chart(&rows, extended.as_ref().map_or("extended", |e| e.0.as_str())),
        premiums: premiums(&rows, "en"),
    })
}

async fn geometry(call: &Call) -> Handled {
    let state = &call.state;
    let (loaded, manifest, serial) = (state.loaded()?, state.manifest()?, state.model_serial.get());
    call.status(format!("Measuring {} languages × {SHIFT_SENTENCES} sentences at every layer…", manifest.langs.len()));
    call.progress(0.0);
    let per_lang = SHIFT_SENTENCES.min(manifest.parallel.len());
    let geometry = compute_geometry(&loaded.model, &loaded.tokenizer, &manifest, per_lang, batch_boundary, |f| call.progress(f as f64))
        .await
        .map_err(|e| e.to_string())?;
    let plan = plan(&geometry).map_err(|e| e.to_string())?;
    let view = GeometryView {
        num_layers: geometry.num_layers,
        band_to: geometry.band.to,
        band_back: geometry.band.back,
        summary: format!(
            "Band: shift toward English at layer {} (L_to), back at layer {} (L_bk), of {}; it {}.",
            geometry.band.to,
            geometry.band.back,
            geometry.num_layers,
            geometry.band.confidence()
        ),
        distances: distance_chart(&geometry),
    };
    if state.model_serial.get() == serial {
        *state.geometry.borrow_mut() = Some((serial, Rc::new((geometry, plan))));
    }
    Ok(Answer::Geometry(view))
}

/// The model run with the shift at `strength`, in the order a visitor reads it: the next-token
/// guesses first (one short sentence: sent ahead as an event), then bits per character of the
/// sentences, then where they move in the PCA plane. What does not depend on the strength — the
/// unshifted guesses and bits per character — is computed once per model, language and sentence.
async fn shift(call: &Call, lang: &str, strength: f32, layer: Option<usize>, sentence: usize) -> Handled {
    let state = &call.state;
    let (loaded, manifest) = (state.loaded()?, state.manifest()?);
    let serial = state.model_serial.get();
    let geometry = state
        .geometry
        .borrow()
        .clone()
        .filter(|(s, _)| *s == serial)
        .map(|(_, g)| g)
        .ok_or("the geometry of this model is still being measured")?;
    let (geometry, plan) = (&geometry.0, &geometry.1);
    let site = &geometry.sites[layer.unwrap_or(geometry.band.to + 1).min(geometry.num_layers)];
    let texts: Vec<&str> = manifest.sentences(lang).into_iter().take(SHIFT_SENTENCES).collect();
    let sentence = if sentence < manifest.sentences(lang).len() { sentence } else { 0 };
    let text = *manifest.sentences(lang).get(sentence).ok_or_else(|| format!("no {lang} sentences served"))?;
    let (model, tokenizer) = (&loaded.model, &loaded.tokenizer);
    let failed = |e: crate::LabError| e.to_string();
    let interventions = plan.scaled_interventions(lang, strength, &model.device()).map_err(|e| e.to_string())?;
    // Each step is a batch boundary: a newer slider value cancels this request there.
    let cached = state.unshifted.borrow().sentence(serial, lang, sentence, plan);
    let (one, plain) = match cached {
        Some(kept) => kept,
        None => {
            let one = Rc::new(ShiftBase::new(model, tokenizer, plan, &[text], batch_boundary).await.map_err(failed)?);
            let view = next_token_view(model, tokenizer, &one, &Interventions::none(), 8).await.map_err(failed)?;
            state.unshifted.borrow_mut().keep_sentence(serial, lang, sentence, (one.clone(), view.clone()));
            batch_boundary().await;
            (one, view)
        }
    };
    let shifted =
        if strength == 0.0 { plain.clone() } else { next_token_view(model, tokenizer, &one, &interventions, 8).await.map_err(failed)? };
    call.event(Event::NextTokens { plain, shifted });
    batch_boundary().await;
    let cached = state.unshifted.borrow().sentences(serial, lang, plan);
    let (base, base_bits_per_char) = match cached {
        Some(kept) => kept,
        None => {
            let base = Rc::new(ShiftBase::new(model, tokenizer, plan, &texts, batch_boundary).await.map_err(failed)?);
            let bpc = base.bits_per_char(model, &Interventions::none(), batch_boundary).await.map_err(failed)?;
            state.unshifted.borrow_mut().keep_sentences(serial, lang, (base.clone(), bpc));
            (base, bpc)
        }
    };
    let bits_per_char = if strength == 0.0 {
        base_bits_per_char
    } else {
        base.bits_per_char(model, &interventions, batch_boundary).await.map_err(failed)?
    };
    batch_boundary().await;
    let points = shifted_points(model, tokenizer, site, plan, lang, &texts, strength).await.map_err(failed)?;
    Ok(Answer::Shift(ShiftView {
        strength,
        sentences: texts.len(),
        scatter: scatter_chart(site, Some((lang, strength, &points))),
        base_bits_per_char,
        bits_per_char,
    }))
}

async fn features(call: &Call) -> Handled {
    let (loaded, manifest) = (call.state.loaded()?, call.state.manifest()?);
    call.status(format!(
        "Running {} translation and {} monolingual prompts…",
        manifest.translation_prompts.len(),
        manifest.monolingual_prompts.len()
    ));
    call.progress(0.0);
    let failed = |e: crate::LabError| e.to_string();
    let translation = magnitudes(&loaded.model, &loaded.tokenizer, "translation", &manifest.translation_prompts).await.map_err(failed)?;
    call.progress(0.4);
    batch_boundary().await;
    let monolingual = magnitudes(&loaded.model, &loaded.tokenizer, "monolingual", &manifest.monolingual_prompts).await.map_err(failed)?;
    call.progress(0.7);
    batch_boundary().await;
    let dense = pruned_bits_per_char(
        &loaded.model,
        &loaded.tokenizer,
        &manifest.translation_prompts,
        0.0,
        &scored_texts(&manifest),
        batch_boundary,
        |f| call.progress(0.7 + 0.3 * f as f64),
    )
    .await
    .map_err(failed)?;
    Ok(Answer::Features(FeaturesView {
        summary: format!("{} layers × {} dimensions.", translation.norms.len(), translation.norms.first().map_or(0, Vec::len)),
        translation: heatmap(&translation),
        monolingual: heatmap(&monolingual),
        large: large_dimensions(&translation, &monolingual),
        dense,
    }))
}

async fn prune(call: &Call, sparsity: f32) -> Handled {
    let (loaded, manifest) = (call.state.loaded()?, call.state.manifest()?);
    // Let a second slider move that came right behind this one cancel it before any work.
    batch_boundary().await;
    call.progress(0.0);
    let bits_per_char = pruned_bits_per_char(
        &loaded.model,
        &loaded.tokenizer,
        &manifest.translation_prompts,
        sparsity,
        &scored_texts(&manifest),
        batch_boundary,
        |f| call.progress(f as f64),
    )
    .await
    .map_err(|e| e.to_string())?;
    Ok(Answer::Pruned { sparsity, bits_per_char })
}

/// The teacher's lessons and a fresh student for `lang`.
async fn prepare(call: &Call, lang: &str) -> Result<Distiller, String> {
    let state = &call.state;
    let (loaded, manifest, device) = (state.loaded()?, state.manifest()?, state.device()?);
    let config = DistillConfig::default();
    call.status(format!("The teacher answers {DISTILL_ROWS} English sentences…"));
    call.progress(0.0);
    let rows = DISTILL_ROWS.min(manifest.parallel.len());
    let lessons = teach(&loaded.model, &loaded.tokenizer, &manifest, lang, rows, &config, |done, total| {
        call.progress(done as f64 / total.max(1) as f64)
    })
    .await
    .map_err(|e| e.to_string())?;
    let distiller = Distiller::new(loaded.model.config(), lessons, config, &device).map_err(|e| e.to_string())?;
    call.status(format!(
        "The student trains. It speaks the {} tokens its lessons use, of the teacher's {}.",
        distiller.vocabulary().len(),
        loaded.model.config().vocab_size
    ));
    Ok(distiller)
}

/// Trains until Pause or Reset, one [`DistillStep`] event per step.
async fn distill(call: &Call, lang: String) -> Handled {
    let state = &call.state;
    let (generation, kept) = {
        let mut slot = state.distill.borrow_mut();
        if slot.running {
            return Err("the student is already training".into());
        }
        slot.running = true;
        (slot.generation, slot.distiller.take().filter(|(l, _)| *l == lang))
    };
    let still_ours = || {
        let slot = state.distill.borrow();
        slot.running && slot.generation == generation
    };
    let mut distiller = match kept {
        Some((_, d)) => d,
        None => match prepare(call, &lang).await {
            Ok(d) => d,
            Err(e) => {
                state.distill.borrow_mut().running = false;
                return Err(e);
            }
        },
    };
    let loaded = state.loaded()?;
    let mut failure = None;
    while still_ours() {
        let loss = match distiller.train_step().await {
            Ok(loss) => loss,
            Err(e) => {
                failure = Some(e.to_string());
                break;
            }
        };
        let mut step = DistillStep { step: distiller.step, loss, chart: None, samples: None };
        if distiller.step % REPORT_EVERY == 0 || distiller.step == 1 {
            if let Ok(held) = distiller.held_out_loss().await {
                state.distill.borrow_mut().held_out.push((distiller.step, held));
            }
            step.samples = distiller.samples(&loaded.tokenizer).await.ok();
            step.chart = Some(distiller.loss_chart(&state.distill.borrow().held_out));
        }
        call.event(Event::DistillStep(step));
        batch_boundary().await;
    }
    let mut slot = state.distill.borrow_mut();
    let stopped_at = distiller.step;
    if slot.generation == generation {
        slot.running = false;
        slot.distiller = Some((lang, distiller));
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(Answer::DistillStopped { step: stopped_at }),
    }
}

/// [`crate::speed::measure_speed`] on the loaded model.
async fn measure_speed(loaded: &Loaded) -> Handled {
    let speed = crate::speed::measure_speed(&loaded.model).await.map_err(|e| e.to_string())?;
    Ok(Answer::Speed { forward: speed.forward, decode: speed.decode })
}

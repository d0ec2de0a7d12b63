//! The magnitude-feature room: heatmaps of feature magnitudes under translation and monolingual
//! prompts, the large-magnitude dimensions, and a sparsity slider that prunes a copy of the model
//! (Wanda, translation calibration; the WGSL masking kernel on WebGPU) and scores every language.

use std::rc::Rc;

use leptos::prelude::*;
use leptos::task::spawn_local;
use rosetta_prune::features::LayerFeatures;
use rosetta_viz::{BarChart, BarGroup};

use super::{Chart, Latest, Status, needs_model};
use crate::features::{heatmap, large_dimensions, magnitudes, pruned_bits_per_char};
use crate::ui::{Lab, loader};

/// Sentences per language scored after pruning.
const SCORED: usize = 8;

#[derive(Clone, Copy)]
pub struct FeatureState {
    magnitudes: StoredValue<Option<(usize, Rc<(LayerFeatures, LayerFeatures)>)>, LocalStorage>,
    ready: RwSignal<usize>,
    status: RwSignal<String>,
    progress: RwSignal<Option<f64>>,
    error: RwSignal<Option<String>>,
    /// (sparsity, bits/char per language) for the dense model and the last pruned one.
    dense: RwSignal<Option<Vec<(String, f64)>>>,
    pruned: RwSignal<Option<(f32, Vec<(String, f64)>)>>,
    request: Latest,
}

impl FeatureState {
    pub fn new() -> Self {
        FeatureState {
            magnitudes: StoredValue::new_local(None),
            ready: RwSignal::new(0),
            status: RwSignal::new(String::new()),
            progress: RwSignal::new(None),
            error: RwSignal::new(None),
            dense: RwSignal::new(None),
            pruned: RwSignal::new(None),
            request: Latest::new(),
        }
    }

    fn current(&self, version: usize) -> Option<Rc<(LayerFeatures, LayerFeatures)>> {
        self.magnitudes.get_value().filter(|(v, _)| *v == version).map(|(_, m)| m)
    }
}

fn scored_texts(manifest: &crate::Manifest) -> Vec<(String, Vec<&str>)> {
    manifest.langs.iter().map(|l| (l.clone(), manifest.sentences(l).into_iter().take(SCORED).collect())).collect()
}

async fn compute(lab: Lab, room: FeatureState, version: usize) {
    let (Some(loaded), Some(manifest)) = (lab.loaded(), lab.manifest.get_untracked()) else { return };
    room.status.set(format!(
        "Running {} translation and {} monolingual prompts…",
        manifest.translation_prompts.len(),
        manifest.monolingual_prompts.len()
    ));
    room.progress.set(Some(0.0));
    let result = async {
        let translation = magnitudes(&loaded.model, &loaded.tokenizer, "translation", &manifest.translation_prompts).await?;
        room.progress.set(Some(0.4));
        loader::pause().await;
        let monolingual = magnitudes(&loaded.model, &loaded.tokenizer, "monolingual", &manifest.monolingual_prompts).await?;
        room.progress.set(Some(0.7));
        loader::pause().await;
        let dense = pruned_bits_per_char(
            &loaded.model,
            &loaded.tokenizer,
            &manifest.translation_prompts,
            0.0,
            &scored_texts(&manifest),
            loader::pause,
        )
        .await?;
        Ok::<_, crate::LabError>((translation, monolingual, dense))
    }
    .await;
    room.progress.set(None);
    match result {
        Ok((translation, monolingual, dense)) => {
            room.status.set(format!("{} layers × {} dimensions.", translation.norms.len(), translation.norms.first().map_or(0, Vec::len)));
            room.magnitudes.set_value(Some((version, Rc::new((translation, monolingual)))));
            room.dense.set(Some(dense));
            room.ready.set(version);
        }
        Err(e) => room.error.set(Some(e.to_string())),
    }
}

async fn prune(lab: Lab, room: FeatureState, sparsity: f32) {
    let Some(ticket) = room.request.ticket().await else { return };
    let (Some(loaded), Some(manifest)) = (lab.loaded(), lab.manifest.get_untracked()) else { return };
    room.status.set(format!("Pruning {:.0}% of every linear layer (Wanda, translation calibration)…", sparsity * 100.0));
    let result = pruned_bits_per_char(
        &loaded.model,
        &loaded.tokenizer,
        &manifest.translation_prompts,
        sparsity,
        &scored_texts(&manifest),
        loader::pause,
    )
    .await;
    if !room.request.is_current(ticket) {
        return; // a newer slider value is on its way
    }
    match result {
        Ok(bpc) => {
            room.status.set(format!("Pruned to {:.0}% sparsity.", sparsity * 100.0));
            room.pruned.set(Some((sparsity, bpc)));
            room.error.set(None);
        }
        Err(e) => room.error.set(Some(e.to_string())),
    }
}

#[component]
pub fn FeaturesRoom(lab: Lab) -> impl IntoView {
    let room = lab.features;
    Effect::new(move |_| {
        let version = lab.model_version.get();
        if version > 0 && lab.manifest.with(Option::is_some) && room.current(version).is_none() && room.progress.get_untracked().is_none() {
            spawn_local(compute(lab, room, version));
        }
    });
    Effect::new(move |_| {
        let version = room.ready.get();
        let sparsity = lab.state.with(|s| s.sparsity);
        if version > 0 && version == lab.model_version.get_untracked() && sparsity > 0.0 {
            spawn_local(prune(lab, room, sparsity));
        }
    });
    let maps = move |which: usize| {
        Signal::derive(move || room.current(room.ready.get()).map(|m| heatmap(if which == 0 { &m.0 } else { &m.1 })).unwrap_or_default())
    };
    let large = move || {
        let m = room.current(room.ready.get())?;
        let rows = large_dimensions(&m.0, &m.1);
        Some(view! {
            <table class="large-dims" data-testid="large-dims">
                <tr><th>"layer"</th><th>"large-magnitude dimensions under translation (★ also large on monolingual text)"</th></tr>
                {rows
                    .into_iter()
                    .enumerate()
                    .filter(|(_, dims)| !dims.is_empty())
                    .map(|(layer, dims)| {
                        let shown = dims.iter().take(6).map(|(d, v, shared)| format!("{d}{} ({v:.1})", if *shared { "★" } else { "" })).collect::<Vec<_>>().join(", ");
                        view! { <tr><td>{layer}</td><td>{shown}</td></tr> }
                    })
                    .collect_view()}
            </table>
        })
    };
    let chart = Signal::derive(move || {
        let Some(dense) = room.dense.get() else { return String::new() };
        let pruned = room.pruned.get().filter(|_| lab.state.with(|s| s.sparsity) > 0.0);
        let mut series = vec!["dense".to_string()];
        if let Some((s, _)) = &pruned {
            series.push(format!("{:.0}% pruned", s * 100.0));
        }
        BarChart {
            title: "Bits per character after pruning (lower is better)".into(),
            y_label: "bits / char".into(),
            series,
            groups: dense
                .iter()
                .enumerate()
                .map(|(i, (lang, bpc))| BarGroup {
                    label: lang.clone(),
                    values: std::iter::once(*bpc).chain(pruned.as_ref().map(|(_, p)| p[i].1)).collect(),
                })
                .collect(),
        }
        .to_svg()
    });
    let numbers = move || {
        let dense = room.dense.get()?;
        let pruned = room.pruned.get().filter(|_| lab.state.with(|s| s.sparsity) > 0.0);
        Some(view! {
            <table data-testid="pruned-bpc">
                <tr><th>"language"</th><th>"dense"</th><th>"pruned"</th></tr>
                {dense.into_iter().enumerate().map(|(i, (lang, bpc))| {
                    let after = pruned.as_ref().map_or("—".to_string(), |(_, p)| format!("{:.3}", p[i].1));
                    view! { <tr><td>{lang}</td><td>{format!("{bpc:.3}")}</td><td>{after}</td></tr> }
                }).collect_view()}
            </table>
        })
    };
    view! {
        <section class="room" data-testid="room-features">
            <h2>"Magnitude features"</h2>
            <p class="explain">"How large each hidden dimension's activations are, layer by layer. A few dimensions dwarf the rest, and translation lights up its own set; pruning that keeps the weights feeding them (Wanda calibrated on translation) protects the languages best."</p>
            {move || needs_model(lab).then(|| view! { <p class="hint">"Waiting for a model…"</p> })}
            <Status status=room.status progress=room.progress error=room.error testid="features" />
            <div class="side-by-side">
                <Chart svg=maps(0) testid="heatmap-translation" />
                <Chart svg=maps(1) testid="heatmap-monolingual" />
            </div>
            {large}
            {move || {
                lab.exports_version.get();
                let export = lab.exported_features()?;
                let translation = export.setting("translation")?.clone();
                Some(view! {
                    <details class="export" data-testid="exported-features">
                        <summary>{format!("Exported by `rosetta features`: {} translation prompts, {} tokens", translation.prompts, translation.tokens)}</summary>
                        <div class="chart" inner_html=heatmap(&translation)></div>
                    </details>
                })
            }}
            <label>
                "Sparsity "<span data-testid="sparsity-value">{move || format!("{:.0}%", lab.state.with(|s| s.sparsity) * 100.0)}</span>": "
                <input type="range" min="0" max="0.9" step="0.05" data-testid="sparsity" prop:value=move || lab.state.with(|s| s.sparsity.to_string())
                    on:change=move |ev| { let v: f32 = event_target_value(&ev).parse().unwrap_or(0.0); lab.state.update(|s| s.sparsity = v.clamp(0.0, 0.9)); } />
            </label>
            <Chart svg=chart testid="pruned-chart" />
            {numbers}
        </section>
    }
}

//! The shift room: the language geometry of the loaded model (computed here), the band ShifCon
//! would shift in, and a strength slider that runs the model with the shift and shows where the
//! target sentences go, the next-token guesses and bits per character.

use std::rc::Rc;

use leptos::prelude::*;
use leptos::task::spawn_local;
use rosetta_shifcon::{Geometry, ShiftPlan};

use super::{Chart, Latest, Status, TargetSelect, needs_model};
use crate::shift::{
    MIN_GEOMETRY_SENTENCES, NextTokenView, band_stability_chart, compute_geometry, distance_chart, next_token_view, plan, scatter_chart,
    shifted_bits_per_char, shifted_points,
};
use crate::ui::{Lab, loader};

/// Sentences per language the page measures (the geometry's minimum: fast enough on a CPU).
const SENTENCES: usize = MIN_GEOMETRY_SENTENCES;

/// The room's state, kept by the page so it survives switching rooms.
#[derive(Clone, Copy)]
pub struct ShiftState {
    geometry: StoredValue<Option<(usize, Rc<(Geometry, ShiftPlan)>)>, LocalStorage>,
    /// The model version the geometry belongs to (0 = none).
    ready: RwSignal<usize>,
    status: RwSignal<String>,
    progress: RwSignal<Option<f64>>,
    error: RwSignal<Option<String>>,
    scatter: RwSignal<String>,
    views: RwSignal<Option<(NextTokenView, NextTokenView, f64, f64)>>,
    request: Latest,
}

impl ShiftState {
    pub fn new() -> Self {
        ShiftState {
            geometry: StoredValue::new_local(None),
            ready: RwSignal::new(0),
            status: RwSignal::new(String::new()),
            progress: RwSignal::new(None),
            error: RwSignal::new(None),
            scatter: RwSignal::new(String::new()),
            views: RwSignal::new(None),
            request: Latest::new(),
        }
    }

    fn current(&self, version: usize) -> Option<Rc<(Geometry, ShiftPlan)>> {
        self.geometry.get_value().filter(|(v, _)| *v == version).map(|(_, g)| g)
    }
}

async fn compute(lab: Lab, room: ShiftState, version: usize) {
    let (Some(loaded), Some(manifest)) = (lab.loaded(), lab.manifest.get_untracked()) else { return };
    room.status.set(format!("Measuring {} languages × {SENTENCES} sentences at every layer…", manifest.langs.len()));
    room.progress.set(Some(0.0));
    let result =
        compute_geometry(&loaded.model, &loaded.tokenizer, &manifest, SENTENCES.min(manifest.parallel.len()), loader::pause, |f| {
            room.progress.set(Some(f as f64))
        })
        .await;
    room.progress.set(None);
    match result.and_then(|g| plan(&g).map(|p| (g, p))) {
        Ok((geometry, plan)) => {
            room.status.set(format!(
                "Band: shift toward English at layer {} (L_to), back at layer {} (L_bk), of {}; it {}.",
                geometry.band.to,
                geometry.band.back,
                geometry.num_layers,
                geometry.band.confidence()
            ));
            room.geometry.set_value(Some((version, Rc::new((geometry, plan)))));
            room.ready.set(version);
        }
        Err(e) => room.error.set(Some(e.to_string())),
    }
}

/// The scatter, next-token guesses and bits/char at the current slider values.
async fn apply(lab: Lab, room: ShiftState, version: usize) {
    let Some(ticket) = room.request.ticket().await else { return };
    let (Some(loaded), Some(manifest), Some(geometry), Some(lang)) =
        (lab.loaded(), lab.manifest.get_untracked(), room.current(version), lab.target_lang())
    else {
        return;
    };
    let (geometry, plan) = (&geometry.0, &geometry.1);
    let (strength, layer, sentence) = lab.state.with_untracked(|s| (s.strength, s.layer, s.sentence));
    let site = &geometry.sites[layer.unwrap_or(geometry.band.to + 1).min(geometry.num_layers)];
    let texts: Vec<&str> = manifest.sentences(&lang).into_iter().take(SENTENCES).collect();
    let text = manifest.sentences(&lang).get(sentence).copied().unwrap_or(texts[0]);
    let result = async {
        let points = shifted_points(&loaded.model, &loaded.tokenizer, site, plan, &lang, &texts, strength).await?;
        let device = loaded.model.device();
        let plain = next_token_view(&loaded.model, &loaded.tokenizer, text, &rosetta_model::Interventions::none(), 8).await?;
        let shifted =
            next_token_view(&loaded.model, &loaded.tokenizer, text, &plan.scaled_interventions(&lang, strength, &device)?, 8).await?;
        let base_bpc = shifted_bits_per_char(&loaded.model, &loaded.tokenizer, plan, &lang, &texts, 0.0).await?;
        let bpc = shifted_bits_per_char(&loaded.model, &loaded.tokenizer, plan, &lang, &texts, strength).await?;
        Ok::<_, crate::LabError>((points, plain, shifted, base_bpc, bpc))
    }
    .await;
    if !room.request.is_current(ticket) {
        return; // a newer slider value is on its way
    }
    match result {
        Ok((points, plain, shifted, base_bpc, bpc)) => {
            room.scatter.set(scatter_chart(site, Some((&lang, strength, &points))));
            room.views.set(Some((plain, shifted, base_bpc, bpc)));
            room.error.set(None);
        }
        Err(e) => room.error.set(Some(e.to_string())),
    }
}

#[component]
fn NextTokens(view: NextTokenView, #[prop(into)] label: String, #[prop(into)] testid: String) -> impl IntoView {
    view! {
        <div class="next-tokens" data-testid=testid>
            <h3>{label}</h3>
            <p>"After “"{view.prefix.clone()}"…” the text goes on with “"{view.actual.0.clone()}"” (p = "{format!("{:.3}", view.actual.1)}")"</p>
            <ol>{view.top.into_iter().map(|(t, p)| view! { <li><code>{t}</code>" "{format!("{p:.3}")}</li> }).collect_view()}</ol>
            <p>"bits/char of this sentence: "{format!("{:.3}", view.bits_per_char)}</p>
        </div>
    }
}

#[component]
pub fn ShiftRoom(lab: Lab) -> impl IntoView {
    let room = lab.shift;
    // Compute the geometry for each newly loaded model, once.
    Effect::new(move |_| {
        let version = lab.model_version.get();
        if version > 0 && lab.manifest.with(Option::is_some) && room.current(version).is_none() && room.progress.get_untracked().is_none() {
            spawn_local(compute(lab, room, version));
        }
    });
    // Any slider, language or sentence change re-runs the shifted model.
    Effect::new(move |_| {
        let version = room.ready.get();
        lab.state.with(|s| (s.strength, s.layer, s.sentence, s.lang.clone()));
        if version > 0 && version == lab.model_version.get_untracked() {
            spawn_local(apply(lab, room, version));
        }
    });
    let distances = Signal::derive(move || {
        let version = room.ready.get();
        room.current(version).map(|g| distance_chart(&g.0)).unwrap_or_default()
    });
    let layers = move || room.current(room.ready.get()).map_or(0, |g| g.0.num_layers);
    let layer = move || {
        let band = room.current(room.ready.get()).map_or(1, |g| g.0.band.to + 1);
        lab.state.with(|s| s.layer.unwrap_or(band))
    };
    view! {
        <section class="room" data-testid="room-shift">
            <h2>"Shift"</h2>
            <p class="explain">"Sentences of each language as hidden states, layer by layer. ShifCon adds the English-minus-target language vector at L_to and takes it back at L_bk; in between, target-language text runs in the English subspace."</p>
            {move || needs_model(lab).then(|| view! { <p class="hint">"Waiting for a model…"</p> })}
            <Status status=room.status progress=room.progress error=room.error testid="shift" />
            <Chart svg=distances testid="distance-chart" />
            {move || {
                lab.exports_version.get();
                lab.exported_geometry().map(|g| view! {
                    <details class="export" data-testid="exported-geometry">
                        <summary>{format!(
                            "Exported by `rosetta geometry`: {} sentences per language, band {}..{} of {} layers ({}; {} conventions)",
                            g.sentences, g.band.to, g.band.back, g.num_layers, g.band.confidence(), g.conventions
                        )}</summary>
                        <div class="chart" inner_html=distance_chart(&g)></div>
                        {band_stability_chart(&g).map(|svg| view! { <div class="chart" data-testid="band-stability-chart" inner_html=svg></div> })}
                    </details>
                })
            }}
            <div class="controls">
                <TargetSelect lab=lab testid="shift-lang" />
                <label>
                    "Layer "<span data-testid="shift-layer-value">{layer}</span>": "
                    <input type="range" min="0" max=layers step="1" data-testid="shift-layer" prop:value=move || layer().to_string()
                        on:change=move |ev| { let v = event_target_value(&ev).parse().ok(); lab.state.update(|s| s.layer = v); } />
                </label>
                <label>
                    "Shift strength "<span data-testid="shift-strength-value">{move || format!("{:.2}", lab.state.with(|s| s.strength))}</span>": "
                    <input type="range" min="0" max="1" step="0.05" data-testid="shift-strength" prop:value=move || lab.state.with(|s| s.strength.to_string())
                        on:change=move |ev| { let v: f32 = event_target_value(&ev).parse().unwrap_or(0.0); lab.state.update(|s| s.strength = v.clamp(0.0, 1.0)); } />
                </label>
            </div>
            <Chart svg=room.scatter testid="shift-scatter" />
            {move || room.views.get().map(|(plain, shifted, base, now)| view! {
                <p data-testid="shift-bpc">{format!("Bits per character of the {SENTENCES} sentences: {base:.3} unshifted → {now:.3} with the shift")}</p>
                <div class="side-by-side">
                    <NextTokens view=plain label="Model as it is" testid="next-plain" />
                    <NextTokens view=shifted label="With the shift" testid="next-shifted" />
                </div>
            })}
        </section>
    }
}

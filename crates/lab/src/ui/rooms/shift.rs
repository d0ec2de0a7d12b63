//! The shift room: the language geometry of the loaded model (computed here), the band ShifCon
//! would shift in, and a strength slider that runs the model with the shift and shows where the
//! target sentences go, the next-token guesses and bits per character.

use leptos::prelude::*;
use leptos::task::spawn_local;

use super::{Chart, Latest, Status, TargetSelect, follow, needs_model, show_stop};
use crate::protocol::{Answer, GeometryView, Request, ShiftView};
use crate::shift::NextTokenView;
use crate::ui::Lab;

/// Sentences per language the worker measures and scores.
const SENTENCES: usize = crate::shift::MIN_GEOMETRY_SENTENCES;

/// The room's state, kept by the page so it survives switching rooms.
#[derive(Clone, Copy)]
pub struct ShiftState {
    /// The geometry's view and the model version it belongs to.
    geometry: RwSignal<Option<(usize, GeometryView)>>,
    /// The model version being measured (0 = none).
    measuring: StoredValue<usize>,
    status: RwSignal<String>,
    progress: RwSignal<Option<f64>>,
    error: RwSignal<Option<String>>,
    view: RwSignal<Option<ShiftView>>,
    request: Latest,
}

impl ShiftState {
    pub fn new() -> Self {
        ShiftState {
            geometry: RwSignal::new(None),
            measuring: StoredValue::new(0),
            status: RwSignal::new(String::new()),
            progress: RwSignal::new(None),
            error: RwSignal::new(None),
            view: RwSignal::new(None),
            request: Latest::new(),
        }
    }

    /// The geometry of model `version`, if measured (tracked).
    fn current(&self, version: usize) -> Option<GeometryView> {
        self.geometry.with(|g| g.as_ref().filter(|(v, _)| *v == version).map(|(_, g)| g.clone()))
    }

    fn ready(&self) -> usize {
        self.geometry.with(|g| g.as_ref().map_or(0, |(v, _)| *v))
    }
}

async fn compute(lab: Lab, room: ShiftState, version: usize) {
    room.measuring.set_value(version);
    room.progress.set(Some(0.0));
    let result = lab.call(Request::Geometry, follow(room.status, room.progress)).await;
    room.progress.set(None);
    room.measuring.set_value(0);
    match result {
        Ok(Answer::Geometry(view)) if version == lab.model_version.get_untracked() => {
            room.status.set(view.summary.clone());
            room.geometry.set(Some((version, view)));
        }
        Ok(_) => {}
        Err(stop) => show_stop(stop, room.error),
    }
}

/// The scatter, next-token guesses and bits/char at the current slider values.
async fn apply(lab: Lab, room: ShiftState) {
    let Some(ticket) = room.request.ticket().await else { return };
    let Some(lang) = lab.target_lang() else { return };
    let (strength, layer, sentence) = lab.state.with_untracked(|s| (s.strength, s.layer, s.sentence));
    let result = lab.ask(Request::Shift { lang, strength, layer, sentence }).await;
    if !room.request.is_current(ticket) {
        return; // a newer slider value is on its way
    }
    match result {
        Ok(Answer::Shift(view)) => {
            room.view.set(Some(view));
            room.error.set(None);
        }
        Ok(_) => {}
        Err(stop) => show_stop(stop, room.error),
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
    // Measure the geometry of each newly loaded model, once.
    Effect::new(move |_| {
        let version = lab.model_version.get();
        if version > 0 && lab.manifest.with(Option::is_some) && room.ready() != version && room.measuring.get_value() != version {
            spawn_local(compute(lab, room, version));
        }
    });
    // Any slider, language or sentence change re-runs the shifted model.
    Effect::new(move |_| {
        let version = room.ready();
        lab.state.with(|s| (s.strength, s.layer, s.sentence, s.lang.clone()));
        if version > 0 && version == lab.model_version.get_untracked() {
            spawn_local(apply(lab, room));
        }
    });
    let distances = Signal::derive(move || room.current(lab.model_version.get()).map(|g| g.distances).unwrap_or_default());
    let layers = move || room.current(lab.model_version.get()).map_or(0, |g| g.num_layers);
    let layer = move || {
        let band = room.current(lab.model_version.get()).map_or(1, |g| g.band_to + 1);
        lab.state.with(|s| s.layer.unwrap_or(band))
    };
    let scatter = Signal::derive(move || room.view.with(|v| v.as_ref().map(|v| v.scatter.clone()).unwrap_or_default()));
    view! {
        <section class="room" data-testid="room-shift">
            <h2>"Shift"</h2>
            <p class="explain">"Sentences of each language as hidden states, layer by layer. ShifCon adds the English-minus-target language vector at L_to and takes it back at L_bk; in between, target-language text runs in the English subspace."</p>
            {move || needs_model(lab).then(|| view! { <p class="hint">"Waiting for a model…"</p> })}
            <Status status=room.status progress=room.progress error=room.error testid="shift" />
            <Chart svg=distances testid="distance-chart" />
            {move || {
                lab.exported_geometry.get().map(|g| view! {
                    <details class="export" data-testid="exported-geometry">
                        <summary>{g.summary}</summary>
                        <div class="chart" inner_html=g.distances></div>
                        {g.band_stability.map(|svg| view! { <div class="chart" data-testid="band-stability-chart" inner_html=svg></div> })}
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
            <Chart svg=scatter testid="shift-scatter" />
            {move || room.view.get().map(|v| view! {
                <p data-testid="shift-bpc">{format!("Bits per character of the {SENTENCES} sentences: {:.3} unshifted → {:.3} with the shift", v.base_bits_per_char, v.bits_per_char)}</p>
                <div class="side-by-side">
                    <NextTokens view=v.plain label="Model as it is" testid="next-plain" />
                    <NextTokens view=v.shifted label="With the shift" testid="next-shifted" />
                </div>
            })}
        </section>
    }
}

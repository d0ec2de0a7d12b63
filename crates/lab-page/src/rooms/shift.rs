//! The shift room: the language geometry of the loaded model (computed here), the band ShifCon
//! would shift in, and a strength slider that runs the model with the shift and shows where the
//! target sentences go, the next-token guesses and bits per character.

use leptos::prelude::*;
use leptos::task::spawn_local;

use super::{Chart, Latest, Measurement, Status, StatusLine, TargetSelect, needs_model, show_stop};
use crate::Lab;
use rosetta_lab_protocol::NextTokenView;
use rosetta_lab_protocol::{Answer, Event, GeometryView, Request, ShiftView};

/// The room's state, kept by the page so it survives switching rooms.
#[derive(Clone, Copy)]
pub struct ShiftState {
    geometry: Measurement<GeometryView>,
    line: StatusLine,
    view: RwSignal<Option<ShiftView>>,
    /// The next-token guesses without and with the shift (at that strength): they arrive ahead of
    /// the rest.
    next: RwSignal<Option<(f32, NextTokenView, NextTokenView)>>,
    request: Latest,
}

impl ShiftState {
    pub fn new() -> Self {
        ShiftState {
            geometry: Measurement::new(),
            line: StatusLine::new(),
            view: RwSignal::new(None),
            next: RwSignal::new(None),
            request: Latest::new(),
        }
    }
}

fn geometry_of(answer: Answer) -> Option<(String, GeometryView)> {
    match answer {
        Answer::Geometry(view) => Some((view.summary.clone(), view)),
        _ => None,
    }
}

/// The scatter, next-token guesses and bits/char at the current slider values.
async fn apply(lab: Lab, room: ShiftState) {
    let Some(ticket) = room.request.ticket().await else { return };
    let Some(lang) = lab.target_lang() else { return };
    let (strength, layer, sentence) = lab.state.with_untracked(|s| (s.strength, s.layer, s.sentence));
    let on_event = move |event| {
        if let Event::NextTokens { plain, shifted } = event
            && room.request.is_current(ticket)
        {
            room.next.set(Some((strength, plain, shifted)));
        }
    };
    let result = lab.call(Request::Shift { lang, strength, layer, sentence }, on_event).await;
    if !room.request.is_current(ticket) {
        return; // a newer slider value is on its way
    }
    match result {
        Ok(Answer::Shift(view)) => {
            room.view.set(Some(view));
            room.line.error.set(None);
        }
        Ok(_) => {}
        Err(stop) => show_stop(stop, room.line.error),
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
    room.geometry.on_each_model(lab, Request::Geometry, geometry_of, room.line);
    // Any slider, language or sentence change re-runs the shifted model.
    Effect::new(move |_| {
        let version = room.geometry.ready();
        lab.state.with(|s| (s.strength, s.layer, s.sentence, s.lang.clone()));
        if version > 0 && version == lab.model_version.get_untracked() {
            spawn_local(apply(lab, room));
        }
    });
    let distances = Signal::derive(move || room.geometry.current(lab.model_version.get()).map(|g| g.distances).unwrap_or_default());
    let layers = move || room.geometry.current(lab.model_version.get()).map_or(0, |g| g.num_layers);
    let layer = move || {
        let band = room.geometry.current(lab.model_version.get()).map_or(1, |g| g.band_to + 1);
        lab.state.with(|s| s.layer.unwrap_or(band))
    };
    let scatter = Signal::derive(move || room.view.with(|v| v.as_ref().map(|v| v.scatter.clone()).unwrap_or_default()));
    view! {
        <section class="room" data-testid="room-shift">
            <h2>"Shift"</h2>
            <p class="explain">"Sentences of each language as hidden states, layer by layer. ShifCon adds the English-minus-target language vector at L_to and takes it back at L_bk; in between, target-language text runs in the English subspace."</p>
            {move || needs_model(lab).then(|| view! { <p class="hint">"Waiting for a model…"</p> })}
            <Status line=room.line testid="shift" />
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
                <p data-testid="shift-bpc">{format!(
                    "Bits per character of the {} sentences: {:.3} unshifted → {:.3} with the shift ×{:.2}",
                    v.sentences, v.base_bits_per_char, v.bits_per_char, v.strength
                )}</p>
            })}
            {move || room.next.get().map(|(strength, plain, shifted)| view! {
                <div class="side-by-side">
                    <NextTokens view=plain label="Model as it is" testid="next-plain" />
                    <NextTokens view=shifted label=format!("With the shift ×{strength:.2}") testid="next-shifted" />
                </div>
            })}
        </section>
    }
}

//! The magnitude-feature room: heatmaps of feature magnitudes under translation and monolingual
//! prompts, the large-magnitude dimensions, and a sparsity slider that prunes a copy of the model
//! (Wanda, translation calibration; the WGSL masking kernel on WebGPU) and scores every language.

use leptos::prelude::*;
use leptos::task::spawn_local;
use rosetta_viz::{BarChart, BarGroup};

use super::{Chart, Latest, Measurement, Status, StatusLine, needs_model, show_stop};
use crate::Lab;
use rosetta_lab_protocol::{Answer, Event, FeaturesView, Request};

#[derive(Clone, Copy)]
pub struct FeatureState {
    magnitudes: Measurement<FeaturesView>,
    line: StatusLine,
    /// (sparsity, bits/char per language) of the last pruned model.
    pruned: RwSignal<Option<(f32, Vec<(String, f64)>)>>,
    request: Latest,
}

impl FeatureState {
    pub fn new() -> Self {
        FeatureState { magnitudes: Measurement::new(), line: StatusLine::new(), pruned: RwSignal::new(None), request: Latest::new() }
    }
}

fn features_of(answer: Answer) -> Option<(String, FeaturesView)> {
    match answer {
        Answer::Features(view) => Some((view.summary.clone(), view)),
        _ => None,
    }
}

async fn prune(lab: Lab, room: FeatureState, sparsity: f32) {
    let Some(ticket) = room.request.ticket().await else { return };
    room.line.status.set(format!("Pruning {:.0}% of every linear layer (Wanda, translation calibration)…", sparsity * 100.0));
    let progress = room.line.progress;
    let on_event = move |event| {
        if let Event::Progress(p) = event
            && room.request.is_current(ticket)
        {
            progress.set(Some(p));
        }
    };
    let result = lab.call(Request::Prune { sparsity }, on_event).await;
    if !room.request.is_current(ticket) {
        return; // a newer slider value is on its way
    }
    room.line.progress.set(None);
    match result {
        Ok(Answer::Pruned { sparsity, bits_per_char }) => {
            room.line.status.set(format!("Pruned to {:.0}% sparsity.", sparsity * 100.0));
            room.pruned.set(Some((sparsity, bits_per_char)));
            room.line.error.set(None);
        }
        Ok(_) => {}
        Err(stop) => show_stop(stop, room.line.error),
    }
}

#[component]
pub fn FeaturesRoom(lab: Lab) -> impl IntoView {
    let room = lab.features;
    room.magnitudes.on_each_model(lab, Request::Features, features_of, room.line);
    Effect::new(move |_| {
        let version = room.magnitudes.ready();
        let sparsity = lab.state.with(|s| s.sparsity);
        if version > 0 && version == lab.model_version.get_untracked() && sparsity > 0.0 {
            spawn_local(prune(lab, room, sparsity));
        }
    });
    let maps = move |which: usize| {
        Signal::derive(move || {
            room.magnitudes
                .current(lab.model_version.get())
                .map(|m| if which == 0 { m.translation } else { m.monolingual })
                .unwrap_or_default()
        })
    };
    let dense = move || room.magnitudes.current(lab.model_version.get()).map(|m| m.dense);
    let large = move || {
        let rows = room.magnitudes.current(lab.model_version.get())?.large;
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
        let Some(dense) = dense() else { return String::new() };
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
        let dense = dense()?;
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
            <Status line=room.line testid="features" />
            <div class="side-by-side">
                <Chart svg=maps(0) testid="heatmap-translation" />
                <Chart svg=maps(1) testid="heatmap-monolingual" />
            </div>
            {large}
            {move || {
                lab.exported_features.get().map(|(summary, heatmap)| view! {
                    <details class="export" data-testid="exported-features">
                        <summary>{summary}</summary>
                        <div class="chart" inner_html=heatmap></div>
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

//! One component per room, and the small widgets they share.

pub mod distill;
pub mod features;
pub mod shift;
pub mod tokenizer;

use leptos::prelude::*;
use leptos::task::spawn_local;
use rosetta_lab_protocol::{Answer, Request};

use crate::Lab;

/// An SVG chart from `rosetta-viz` (the same charts the CLI writes).
#[component]
pub fn Chart(#[prop(into)] svg: Signal<String>, #[prop(into)] testid: String) -> impl IntoView {
    view! { <div class="chart" data-testid=testid inner_html=move || svg.get()></div> }
}

/// A select over the manifest's target languages, bound to the page state's language.
#[component]
pub fn TargetSelect(lab: Lab, #[prop(into)] testid: String) -> impl IntoView {
    let langs = move || lab.manifest.with(|m| m.as_ref().map(|m| m.targets().to_vec()).unwrap_or_default());
    view! {
        <label>
            "Language: "
            <select data-testid=testid on:change=move |ev| { let v = event_target_value(&ev); lab.state.update(|s| s.lang = Some(v)); }>
                {move || {
                    let current = lab.target_lang();
                    langs()
                        .into_iter()
                        .map(|l| {
                            let selected = current.as_deref() == Some(l.as_str());
                            view! { <option value=l.clone() selected=selected>{rosetta_data_name(&l)}</option> }
                        })
                        .collect_view()
                }}
            </select>
        </label>
    }
}

fn rosetta_data_name(code: &str) -> String {
    format!("{} ({code})", rosetta_data::language_name(code))
}

/// A room's status line: what is running, its progress, or what went wrong.
#[component]
pub fn Status(line: StatusLine, #[prop(into)] testid: String) -> impl IntoView {
    let StatusLine { status, progress, error } = line;
    view! {
        <p class="status" data-testid=format!("{testid}-status")>{move || status.get()}</p>
        {move || progress.get().map(|p| view! { <progress max="1" value=p></progress> })}
        {move || error.get().map(|e| view! { <p class="error" role="alert" data-testid=format!("{testid}-error")>{e}</p> })}
    }
}

/// Latest-wins requests for slider-driven work: each move takes a ticket after letting the browser
/// catch up; an answer holding a stale ticket (a newer move came in) is dropped. (The worker also
/// cancels the older request of a lane, so it stops computing it at its next batch boundary.)
#[derive(Clone, Copy)]
pub struct Latest(StoredValue<u64>);

impl Latest {
    pub fn new() -> Self {
        Latest(StoredValue::new(0))
    }

    /// `Some(ticket)` if no newer request arrived while the page caught up.
    pub async fn ticket(&self) -> Option<u64> {
        let id = self.0.get_value() + 1;
        self.0.set_value(id);
        rosetta_lab_protocol::browser::pause().await;
        self.is_current(id).then_some(id)
    }

    pub fn is_current(&self, ticket: u64) -> bool {
        self.0.get_value() == ticket
    }
}

/// Shown in a room until a model is loaded.
pub fn needs_model(lab: Lab) -> bool {
    lab.model_version.get() == 0 || lab.manifest.with(Option::is_none)
}

/// A room's first measurement of each loaded model (the shift room's geometry, the features
/// room's magnitudes): requested once per model version, its status and progress shown as it
/// runs, its view kept with the version it belongs to.
pub struct Measurement<T: Send + Sync + 'static> {
    view: RwSignal<Option<(usize, T)>>,
    /// The model version being measured (0 = none).
    measuring: StoredValue<usize>,
}

impl<T: Send + Sync + 'static> Clone for Measurement<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T: Send + Sync + 'static> Copy for Measurement<T> {}

impl<T: Clone + Send + Sync + 'static> Measurement<T> {
    pub fn new() -> Self {
        Measurement { view: RwSignal::new(None), measuring: StoredValue::new(0) }
    }

    /// The view of model `version`, if measured (tracked).
    pub fn current(&self, version: usize) -> Option<T> {
        self.view.with(|v| v.as_ref().filter(|(v, _)| *v == version).map(|(_, view)| view.clone()))
    }

    /// The model version the view belongs to (0 = none; tracked).
    pub fn ready(&self) -> usize {
        self.view.with(|v| v.as_ref().map_or(0, |(v, _)| *v))
    }

    /// Measures each model the page loads, once its lab data are served (an effect of the room
    /// that owns this measurement).
    pub fn on_each_model(self, lab: Lab, request: Request, pick: fn(Answer) -> Option<(String, T)>, line: StatusLine) {
        Effect::new(move |_| {
            let version = lab.model_version.get();
            if lab.manifest.with(Option::is_some) {
                self.start(lab, version, request.clone(), pick, line);
            }
        });
    }

    /// Measures model `version` with `request` unless that is done or under way; `pick` takes the
    /// view and the status line to show from the answer.
    fn start(self, lab: Lab, version: usize, request: Request, pick: fn(Answer) -> Option<(String, T)>, line: StatusLine) {
        if version == 0 || self.ready() == version || self.measuring.get_value() == version {
            return;
        }
        self.measuring.set_value(version);
        line.progress.set(Some(0.0));
        spawn_local(async move {
            let result = lab.call(request, follow(line.status, line.progress)).await;
            line.progress.set(None);
            self.measuring.set_value(0);
            match result.map(pick) {
                Ok(Some((summary, view))) if version == lab.model_version.get_untracked() => {
                    line.status.set(summary);
                    self.view.set(Some((version, view)));
                }
                Ok(_) => {}
                Err(stop) => show_stop(stop, line.error),
            }
        });
    }
}

/// A room's status line, progress bar and error.
#[derive(Clone, Copy)]
pub struct StatusLine {
    pub status: RwSignal<String>,
    pub progress: RwSignal<Option<f64>>,
    pub error: RwSignal<Option<String>>,
}

impl StatusLine {
    pub fn new() -> Self {
        StatusLine::saying("")
    }

    pub fn saying(status: &str) -> Self {
        StatusLine { status: RwSignal::new(status.to_string()), progress: RwSignal::new(None), error: RwSignal::new(None) }
    }
}

/// Where a room's request ended: its status and error lines.
pub fn show_stop(stop: crate::worker_client::Stop, error: RwSignal<Option<String>>) {
    if let crate::worker_client::Stop::Failed(message) = stop {
        error.set(Some(message));
    }
}

/// A room's status line and progress bar follow a request's events.
pub fn follow(status: RwSignal<String>, progress: RwSignal<Option<f64>>) -> impl FnMut(rosetta_lab_protocol::Event) + 'static {
    move |event| match event {
        rosetta_lab_protocol::Event::Status(text) => status.set(text),
        rosetta_lab_protocol::Event::Progress(p) => progress.set(Some(p)),
        _ => {}
    }
}

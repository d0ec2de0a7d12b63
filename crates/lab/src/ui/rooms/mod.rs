//! One component per room, and the small widgets they share.

pub mod distill;
pub mod features;
pub mod shift;
pub mod tokenizer;

use leptos::prelude::*;

use crate::ui::Lab;

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
pub fn Status(
    status: RwSignal<String>,
    progress: RwSignal<Option<f64>>,
    error: RwSignal<Option<String>>,
    #[prop(into)] testid: String,
) -> impl IntoView {
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
        crate::browser::pause().await;
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

/// Where a room's request ended: its status and error lines.
pub fn show_stop(stop: crate::ui::worker_client::Stop, error: RwSignal<Option<String>>) {
    if let crate::ui::worker_client::Stop::Failed(message) = stop {
        error.set(Some(message));
    }
}

/// A room's status line and progress bar follow a request's events.
pub fn follow(status: RwSignal<String>, progress: RwSignal<Option<f64>>) -> impl FnMut(crate::protocol::Event) + 'static {
    move |event| match event {
        crate::protocol::Event::Status(text) => status.set(text),
        crate::protocol::Event::Progress(p) => progress.set(Some(p)),
        _ => {}
    }
}

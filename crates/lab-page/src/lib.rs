//! # rosetta-lab-page
//!
//! The web lab's page: a header that says which device computes, the model panel (progress, file
//! picker, speed), the room tabs, the course guide, and the rooms. The model and everything
//! computed on it live in the lab's worker (`rosetta-lab`, a module of its own, started by
//! [`worker_client`]); the page sends it requests ([`rosetta_lab_protocol`]) and keeps, in
//! signals, the views that come back. No model code is linked here, so the first view waits for
//! this small module only.
#![cfg(target_family = "wasm")]

mod course;
mod rooms;
mod worker_client;

use leptos::prelude::*;
use leptos::task::spawn_local;
use wasm_bindgen::prelude::*;

use rosetta_data::lab_manifest::Manifest;
use rosetta_lab_protocol::page_state::{PageState, Room};
use rosetta_lab_protocol::{Answer, BackendChoice, BackendInfo, Event, ExportedGeometry, ModelInfo, Request};
use worker_client::{LabWorker, Stop};

/// Everything the rooms share. `Copy`: handles into leptos' arena.
#[derive(Clone, Copy)]
pub struct Lab {
    pub state: RwSignal<PageState>,
    pub manifest: RwSignal<Option<Manifest>>,
    pub backend: RwSignal<Option<BackendInfo>>,
    worker: StoredValue<Option<LabWorker>, LocalStorage>,
    /// The model the worker holds.
    pub model: RwSignal<Option<ModelInfo>>,
    /// Bumped on every model load; rooms recompute when it changes.
    pub model_version: RwSignal<usize>,
    pub model_status: RwSignal<String>,
    pub model_error: RwSignal<Option<String>>,
    /// Download / read progress, 0..=1, while a model loads.
    pub progress: RwSignal<Option<f64>>,
    /// The extended tokenizer's label, once the worker holds one.
    pub extended: RwSignal<Option<String>>,
    pub extended_version: RwSignal<usize>,
    pub shift: rooms::shift::ShiftState,
    pub features: rooms::features::FeatureState,
    pub distill: rooms::distill::DistillState,
    /// The CLI's exported analyses for the served model, drawn by the worker.
    pub exported_geometry: RwSignal<Option<ExportedGeometry>>,
    pub exported_features: RwSignal<Option<(String, String)>>,
}

impl Lab {
    /// The worker, or the reason there is none (said where the page shows errors).
    pub fn worker(&self) -> Result<LabWorker, Stop> {
        self.worker.get_value().ok_or_else(|| Stop::Failed("the lab's worker did not start".into()))
    }

    /// Sends `request` to the worker; see [`LabWorker::call`].
    pub async fn call(&self, request: Request, on_event: impl FnMut(Event) + 'static) -> Result<Answer, Stop> {
        self.worker()?.call(request, None, on_event).await
    }

    pub async fn ask(&self, request: Request) -> Result<Answer, Stop> {
        self.worker()?.ask(request).await
    }

    /// The language the rooms work on: the link's, else the first target language.
    pub fn target_lang(&self) -> Option<String> {
        let manifest = self.manifest.get()?;
        let wanted = self.state.with(|s| s.lang.clone());
        wanted.filter(|l| manifest.targets().contains(l)).or_else(|| manifest.targets().first().cloned())
    }

    fn install(&self, model: ModelInfo) {
        self.model_status.set(format!("{} — loaded in {:.1} s; {}", model.name, model.seconds, model.storage));
        self.model.set(Some(model));
        self.model_error.set(None);
        self.progress.set(None);
        self.model_version.update(|v| *v += 1);
    }

    fn fail(&self, message: String) {
        self.progress.set(None);
        self.model_error.set(Some(message));
    }

    /// What a model-lane request's events mean on the page.
    fn on_model_event(self) -> impl FnMut(Event) + 'static {
        move |event| match event {
            Event::Backend(info) => self.backend.set(Some(info)),
            Event::Manifest(manifest) => self.manifest.set(Some(*manifest)),
            Event::Extended { label } => {
                self.extended.set(Some(label));
                self.extended_version.update(|v| *v += 1);
            }
            Event::ExportedGeometry(g) => self.exported_geometry.set(Some(g)),
            Event::ExportedFeatures { summary, heatmap } => self.exported_features.set(Some((summary, heatmap))),
            Event::Warning(message) => self.fail(message),
            Event::Status(text) => self.model_status.set(text),
            Event::Progress(p) => self.progress.set(Some(p)),
            Event::DistillStep(_) | Event::NextTokens { .. } => {}
        }
    }

    /// The end of a model-lane request: a model installed, or the reason none was.
    fn finish_model_request(&self, result: Result<Answer, Stop>) {
        match result {
            Ok(Answer::Loaded(model)) => self.install(model),
            Ok(_) | Err(Stop::Cancelled) => self.progress.set(None),
            Err(Stop::Failed(message)) => self.fail(message),
        }
    }
}

/// Query parameter `limit_mb`: pretend the adapter allows only this much per buffer (to try how
/// the page handles a model too large for a small GPU without owning one). Read from the query
/// the page opened with, before the page state rewrites the link.
fn limit_override(query: &str) -> Option<u64> {
    let params = web_sys::UrlSearchParams::new_with_str(query).ok()?;
    params.get("limit_mb")?.parse::<f64>().ok().filter(|mb| mb.is_finite() && *mb > 0.0).map(|mb| (mb * 1048576.0) as u64)
}

/// Query parameter `precision=f32`: hold a quantized model as f32 instead of its own blocks (to
/// compare speed and memory in the page); anything else keeps the default.
fn precision_override(query: &str) -> Option<String> {
    web_sys::UrlSearchParams::new_with_str(query).ok().and_then(|params| params.get("precision"))
}

/// The page's `data/` as an absolute URL: the worker resolves relative URLs against its script.
fn data_base() -> String {
    let base = web_sys::window().and_then(|w| w.document()).and_then(|d| d.base_uri().ok().flatten()).unwrap_or_default();
    web_sys::Url::new_with_base("data/", &base).map(|u| u.href()).unwrap_or_else(|_| "data/".into())
}

async fn start(lab: Lab, query: String) {
    let backend = lab.state.with_untracked(|s| BackendChoice::from_link(s.backend.as_deref()));
    let request =
        Request::Start { base: data_base(), backend, precision: precision_override(&query), buffer_limit: limit_override(&query) };
    let result = lab.call(request, lab.on_model_event()).await;
    lab.finish_model_request(result);
}

#[component]
fn BackendBadge(lab: Lab) -> impl IntoView {
    view! {
        <span class="backend" data-testid="backend">
            {move || match lab.backend.get() {
                None => "Choosing a device…".to_string(),
                Some(b) => format!("{} — {}", b.name, b.detail),
            }}
        </span>
    }
}

#[component]
fn ModelPanel(lab: Lab) -> impl IntoView {
    let speed = RwSignal::new(String::new());
    let on_pick = move |ev: web_sys::Event| {
        let Some(input) = ev.target().and_then(|t| t.dyn_into::<web_sys::HtmlInputElement>().ok()) else { return };
        let Some(files) = input.files() else { return };
        spawn_local(async move {
            let result = match lab.worker() {
                Ok(worker) => worker.call(Request::OpenPicked, Some(&files), lab.on_model_event()).await,
                Err(stop) => Err(stop),
            };
            lab.finish_model_request(result);
        });
    };
    let measure = move |_| {
        speed.set("measuring…".into());
        spawn_local(async move {
            speed.set(match lab.ask(Request::MeasureSpeed).await {
                Ok(Answer::Speed { forward, decode }) => format!(
                    "forward: {forward:.0} tokens/s (batch 1 × 64); decode: {decode:.1} tokens/s (batch 1, {} greedy tokens)",
                    rosetta_lab_protocol::SPEED_DECODE_TOKENS
                ),
                Ok(other) => format!("speed measurement failed: unexpected answer {other:?}"),
                Err(Stop::Failed(e)) => format!("speed measurement failed: {e}"),
                Err(Stop::Cancelled) => String::new(),
            });
        });
    };
    view! {
        <section class="model-panel">
            <p data-testid="model-status">{move || lab.model_status.get()}</p>
            {move || lab.progress.get().map(|p| view! { <progress data-testid="model-progress" max="1" value=p></progress> })}
            {move || lab.model_error.get().map(|e| view! { <p class="error" role="alert" data-testid="model-error">{e}</p> })}
            <label class="picker">
                "Open a local model (.gguf, or config.json + tokenizer.json + *.safetensors): "
                <input type="file" multiple data-testid="model-file" accept=".gguf,.json,.safetensors" on:change=on_pick />
            </label>
            <button data-testid="measure-speed" on:click=measure disabled=move || lab.model_version.get() == 0>"Measure speed"</button>
            <span data-testid="forward-speed">{move || speed.get()}</span>
        </section>
    }
}

#[component]
fn RoomTabs(lab: Lab) -> impl IntoView {
    view! {
        <nav class="tabs">
            {Room::ALL
                .into_iter()
                .map(|room| {
                    view! {
                        <button
                            data-testid=format!("tab-{}", room.slug())
                            class:active=move || lab.state.with(|s| s.room == room)
                            on:click=move |_| lab.state.update(|s| s.room = room)
                        >
                            {room.title()}
                        </button>
                    }
                })
                .collect_view()}
            <button data-testid="course-toggle" on:click=move |_| course::toggle(lab)>
                {move || if lab.state.with(|s| s.course.is_some()) { "Leave the course" } else { "Course mode" }}
            </button>
        </nav>
    }
}

#[component]
fn App() -> impl IntoView {
    let query = web_sys::window().and_then(|w| w.location().search().ok()).unwrap_or_default();
    let lab = Lab {
        state: RwSignal::new(PageState::from_query(&query)),
        manifest: RwSignal::new(None),
        backend: RwSignal::new(None),
        worker: StoredValue::new_local(None),
        model: RwSignal::new(None),
        model_version: RwSignal::new(0),
        model_status: RwSignal::new("Starting…".into()),
        model_error: RwSignal::new(None),
        progress: RwSignal::new(None),
        extended: RwSignal::new(None),
        extended_version: RwSignal::new(0),
        shift: rooms::shift::ShiftState::new(),
        features: rooms::features::FeatureState::new(),
        distill: rooms::distill::DistillState::new(),
        exported_geometry: RwSignal::new(None),
        exported_features: RwSignal::new(None),
    };
    match LabWorker::start() {
        Ok(worker) => {
            lab.worker.set_value(Some(worker));
            spawn_local(start(lab, query.clone()));
        }
        Err(e) => lab.fail(e),
    }
    // The link always says what is on screen.
    Effect::new(move |_| {
        let query = lab.state.with(PageState::to_query);
        if let Some(history) = web_sys::window().and_then(|w| w.history().ok()) {
            let _ = history.replace_state_with_url(&JsValue::NULL, "", Some(&query));
        }
    });
    let first_render = RwSignal::new(None::<f64>);
    spawn_local(async move {
        rosetta_lab_protocol::browser::pause().await;
        first_render.set(Some(rosetta_lab_protocol::browser::now_ms()));
    });
    view! {
        <header>
            <h1>"Rosetta lab"</h1>
            <p class="tagline">"Why a model works in English and not yet in Hungarian, Thai or Swahili — measured live on the model in this page."</p>
            <BackendBadge lab=lab />
        </header>
        <ModelPanel lab=lab />
        <RoomTabs lab=lab />
        <course::CourseGuide lab=lab />
        <main>
            {move || match lab.state.with(|s| s.room) {
                Room::Tokenizer => view! { <rooms::tokenizer::TokenizerRoom lab=lab /> }.into_any(),
                Room::Shift => view! { <rooms::shift::ShiftRoom lab=lab /> }.into_any(),
                Room::Features => view! { <rooms::features::FeaturesRoom lab=lab /> }.into_any(),
                Room::Distill => view! { <rooms::distill::DistillRoom lab=lab /> }.into_any(),
            }}
        </main>
        <footer>
            <span data-testid="first-render">{move || first_render.get().map(|t| format!("first render at {t:.0} ms"))}</span>
            " · computed in this page; nothing leaves it."
        </footer>
    }
}

/// Mounts the page; called by `static/main.js` once the module is instantiated (not a start
/// function: the worker instantiates the same module and must not mount anything).
#[wasm_bindgen]
pub fn mount_lab() {
    rosetta_lab_protocol::browser::run_static_constructors();
    std::panic::set_hook(Box::new(|info| {
        console_error_panic_hook::hook(info);
        record_panic(&info.to_string());
    }));
    leptos::mount::mount_to_body(App);
}

/// A panic traps the module, and every later call into it fails. The trap reaches the page as a
/// `WebAssembly.RuntimeError`, and `static/main.js` turns it into a notice with a reload link;
/// this leaves the panic's own message where that notice reads it.
fn record_panic(reason: &str) {
    if let Some(root) = web_sys::window().and_then(|w| w.document()).and_then(|d| d.document_element()) {
        let _ = root.set_attribute("data-lab-panic", reason);
    }
}

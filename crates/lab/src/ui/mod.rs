//! The page: a header that says which device computes, the model panel (progress, file picker,
//! speed), the room tabs, the course guide, and the rooms. The heavy values (the model, the
//! geometry, the student) live in local stored values; signals carry what the view shows.

mod backend;
mod course;
mod loader;
mod rooms;

use std::rc::Rc;

use leptos::prelude::*;
use leptos::task::spawn_local;
use rosetta_model::burn::prelude::*;
use rosetta_model::{Interventions, TextTokenizer, TokenBatch};
use wasm_bindgen::prelude::*;

use crate::manifest::{self, Manifest};
use crate::page_state::{PageState, Room};
use backend::Backend;
use loader::Loaded;

/// Everything the rooms share. `Copy`: handles into leptos' arena.
#[derive(Clone, Copy)]
pub struct Lab {
    pub state: RwSignal<PageState>,
    pub manifest: RwSignal<Option<Manifest>>,
    pub backend: RwSignal<Option<Backend>>,
    device: StoredValue<Option<Device>, LocalStorage>,
    loaded: StoredValue<Option<Rc<Loaded>>, LocalStorage>,
    /// Bumped on every model load; rooms recompute when it changes.
    pub model_version: RwSignal<usize>,
    pub model_status: RwSignal<String>,
    pub model_error: RwSignal<Option<String>>,
    /// Download / read progress, 0..=1, while a model loads.
    pub progress: RwSignal<Option<f64>>,
    extended: StoredValue<Option<Rc<(String, TextTokenizer)>>, LocalStorage>,
    pub extended_version: RwSignal<usize>,
    pub shift: rooms::shift::ShiftState,
    pub features: rooms::features::FeatureState,
    pub distill: rooms::distill::DistillState,
    buffer_limit: Option<u64>,
    /// How a quantized model is held (`?precision=f32` dequantises it, to compare).
    precision: rosetta_model::Precision,
    /// The CLI's exported analyses for the served model, if it sent any.
    exported_geometry: StoredValue<Option<Rc<rosetta_shifcon::Geometry>>, LocalStorage>,
    exported_features: StoredValue<Option<Rc<crate::features::FeatureExport>>, LocalStorage>,
    pub exports_version: RwSignal<usize>,
}

impl Lab {
    pub fn loaded(&self) -> Option<Rc<Loaded>> {
        self.loaded.get_value()
    }

    pub fn device(&self) -> Option<Device> {
        self.device.get_value()
    }

    pub fn exported_geometry(&self) -> Option<Rc<rosetta_shifcon::Geometry>> {
        self.exported_geometry.get_value()
    }

    pub fn exported_features(&self) -> Option<Rc<crate::features::FeatureExport>> {
        self.exported_features.get_value()
    }

    pub fn extended(&self) -> Option<Rc<(String, TextTokenizer)>> {
        self.extended.get_value()
    }

    pub fn set_extended(&self, label: String, tokenizer: TextTokenizer) {
        self.extended.set_value(Some(Rc::new((label, tokenizer))));
        self.extended_version.update(|v| *v += 1);
    }

    /// The language the rooms work on: the link's, else the first target language.
    pub fn target_lang(&self) -> Option<String> {
        let manifest = self.manifest.get()?;
        let wanted = self.state.with(|s| s.lang.clone());
        wanted.filter(|l| manifest.targets().contains(l)).or_else(|| manifest.targets().first().cloned())
    }

    fn install(&self, loaded: Loaded) {
        self.model_status.set(format!("{} — loaded in {:.1} s; {}", loaded.name, loaded.seconds, loaded.storage));
        self.loaded.set_value(Some(Rc::new(loaded)));
        self.model_error.set(None);
        self.progress.set(None);
        self.model_version.update(|v| *v += 1);
    }

    fn fail(&self, message: String) {
        self.progress.set(None);
        self.model_error.set(Some(message));
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
fn precision_override(query: &str) -> rosetta_model::Precision {
    web_sys::UrlSearchParams::new_with_str(query)
        .ok()
        .and_then(|params| params.get("precision"))
        .and_then(|name| rosetta_model::Precision::parse(&name))
        .unwrap_or_default()
}

async fn start(lab: Lab) {
    let force_cpu = lab.state.with_untracked(|s| s.backend.as_deref() == Some("cpu"));
    let (device, backend) = backend::choose(force_cpu).await;
    lab.device.set_value(Some(device.clone()));
    lab.backend.set(Some(backend.clone()));

    let manifest = match loader::fetch_manifest(&format!("data/{}", manifest::FILE_NAME)).await {
        Ok(m) => m,
        Err(e) => {
            lab.model_status.set("No lab data served: open a model with the file picker.".into());
            lab.fail(e);
            return;
        }
    };
    lab.manifest.set(Some(manifest.clone()));
    if let Some(ext) = &manifest.extended_tokenizer {
        match loader::fetch_text(&format!("data/{}", ext.file)).await {
            Ok(json) => match TextTokenizer::from_hf_json(&json, None, None, &ext.file) {
                Ok(t) => lab.set_extended(ext.label.clone(), t),
                Err(e) => lab.fail(format!("extended tokenizer: {e}")),
            },
            Err(e) => lab.fail(e),
        }
    }
    load_exports(lab, &manifest).await;
    let Some(files) = manifest.model.clone() else {
        lab.model_status.set("No model served: open one with the file picker.".into());
        return;
    };
    lab.model_status.set(format!("Loading {}…", files.name));
    lab.progress.set(Some(0.0));
    let started = loader::now_ms();
    let checkpoint = match loader::checkpoint_from_server("data/", &files, |done, total| {
        lab.progress.set(Some(total.map_or(0.0, |t| done as f64 / t.max(1) as f64)));
    })
    .await
    {
        Ok(c) => c,
        Err(e) => return lab.fail(e),
    };
    open_checkpoint(lab, checkpoint, files.name.clone(), files.bytes, started, &backend, &device).await;
}

/// The exported analyses: shown as they are; a broken one is reported and skipped.
async fn load_exports(lab: Lab, manifest: &Manifest) {
    if let Some(file) = &manifest.exports.geometry {
        match loader::fetch_text(&format!("data/{file}")).await.and_then(|t| serde_json::from_str(&t).map_err(|e| format!("{file}: {e}"))) {
            Ok(g) => lab.exported_geometry.set_value(Some(Rc::new(g))),
            Err(e) => lab.fail(format!("exported geometry: {e}")),
        }
    }
    if let Some(file) = &manifest.exports.features {
        match loader::fetch_text(&format!("data/{file}")).await.and_then(|t| serde_json::from_str(&t).map_err(|e| format!("{file}: {e}"))) {
            Ok(f) => lab.exported_features.set_value(Some(Rc::new(f))),
            Err(e) => lab.fail(format!("exported features: {e}")),
        }
    }
    lab.exports_version.update(|v| *v += 1);
}

async fn open_checkpoint(
    lab: Lab,
    checkpoint: rosetta_model::Checkpoint,
    name: String,
    file_bytes: u64,
    started: f64,
    backend: &Backend,
    device: &Device,
) {
    let quantized_file = checkpoint.storage_summary().keys().any(|ty| ty.starts_with('Q'));
    let stays_quantized = quantized_file && lab.precision.packs_on(device);
    let fits = crate::page_memory::check_model_fits_page(&checkpoint.config, file_bytes, stays_quantized)
        .and_then(|_| loader::check_fits(&checkpoint.config, backend, lab.buffer_limit));
    if let Err(e) = fits {
        return lab.fail(e);
    }
    lab.model_status.set(format!("Preparing {name} on {}…", backend.name));
    loader::pause().await;
    match loader::load(&checkpoint, device, lab.precision, name, started) {
        Ok(loaded) => lab.install(loaded),
        Err(e) => lab.fail(e),
    }
}

/// What "Measure speed" reports: forward (prefill) tokens per second at batch 1 × 64 after one
/// warm-up pass, and greedy decoding from that prompt — one token per step through the KV cache,
/// the memory-bound case a quantized model is held for.
struct Speed {
    forward: f64,
    decode: f64,
}

/// New tokens of the decoding measurement.
const DECODE_TOKENS: usize = 32;

async fn measure_speed(loaded: &Loaded) -> Result<Speed, String> {
    let vocab = loaded.model.config().vocab_size as u32;
    let ids: Vec<u32> = (0..64u32).map(|i| (i * 7919 + 13) % vocab).collect();
    let batch = TokenBatch::single(&ids).map_err(|e| e.to_string())?;
    let run = || async {
        let (logits, _) = loaded.model.forward_with(&batch, &Interventions::none()).map_err(|e| e.to_string())?;
        rosetta_model::readback::to_vec_f32(logits.slice([0..1, 63..64, 0..vocab as usize])).await.map_err(|e| e.to_string())
    };
    run().await?;
    let t0 = loader::now_ms();
    let reps = 3;
    for _ in 0..reps {
        run().await?;
    }
    let forward = (reps * 64) as f64 / ((loader::now_ms() - t0) / 1000.0);
    let config = rosetta_model::generate::GenerationConfig { max_new_tokens: DECODE_TOKENS, ..Default::default() };
    let output = rosetta_model::generate::generate(&loaded.model, &[ids], &config, &Interventions::none(), |_, _| {})
        .await
        .map_err(|e| e.to_string())?;
    Ok(Speed { forward, decode: output.decode_tokens_per_second() })
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
            let (Some(device), Some(backend)) = (lab.device(), lab.backend.get_untracked()) else {
                return lab.fail("the device is not ready yet; try again in a moment".into());
            };
            lab.model_status.set("Reading the picked files (locally, nothing is uploaded)…".into());
            let started = loader::now_ms();
            let picked = match loader::read_picked(&files, crate::page_memory::MAX_PICKED_BYTES).await {
                Ok(p) => p,
                Err(e) => return lab.fail(e),
            };
            let name = picked.iter().map(|f| f.name.clone()).collect::<Vec<_>>().join(", ");
            let file_bytes = picked.iter().map(|f| f.bytes.len() as u64).sum();
            match loader::checkpoint_from_picked(picked) {
                Ok(checkpoint) => open_checkpoint(lab, checkpoint, name, file_bytes, started, &backend, &device).await,
                Err(e) => lab.fail(e),
            }
        });
    };
    let measure = move |_| {
        let Some(loaded) = lab.loaded() else { return };
        speed.set("measuring…".into());
        spawn_local(async move {
            speed.set(match measure_speed(&loaded).await {
                Ok(Speed { forward, decode }) => {
                    format!("forward: {forward:.0} tokens/s (batch 1 × 64); decode: {decode:.1} tokens/s (batch 1, {DECODE_TOKENS} greedy tokens)")
                }
                Err(e) => format!("speed measurement failed: {e}"),
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
        device: StoredValue::new_local(None),
        loaded: StoredValue::new_local(None),
        model_version: RwSignal::new(0),
        model_status: RwSignal::new("Starting…".into()),
        model_error: RwSignal::new(None),
        progress: RwSignal::new(None),
        extended: StoredValue::new_local(None),
        extended_version: RwSignal::new(0),
        shift: rooms::shift::ShiftState::new(),
        features: rooms::features::FeatureState::new(),
        distill: rooms::distill::DistillState::new(),
        buffer_limit: limit_override(&query),
        precision: precision_override(&query),
        exported_geometry: StoredValue::new_local(None),
        exported_features: StoredValue::new_local(None),
        exports_version: RwSignal::new(0),
    };
    // The link always says what is on screen.
    Effect::new(move |_| {
        let query = lab.state.with(PageState::to_query);
        if let Some(history) = web_sys::window().and_then(|w| w.history().ok()) {
            let _ = history.replace_state_with_url(&JsValue::NULL, "", Some(&query));
        }
    });
    spawn_local(start(lab));
    let first_render = RwSignal::new(None::<f64>);
    spawn_local(async move {
        loader::pause().await;
        first_render.set(Some(loader::now_ms()));
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

#[wasm_bindgen(start)]
pub fn main() {
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

//! The distillation room: the loaded model teaches a small student in the page — start, pause,
//! reset — with the loss curve and the student's answers next to the teacher's as it learns.

use leptos::prelude::*;
use leptos::task::spawn_local;

use super::{Chart, Status, TargetSelect, needs_model};
use crate::distill::{DistillConfig, Distiller, Sample, teach};
use crate::ui::{Lab, loader};

/// Parallel rows turned into lessons (two of them held out).
const ROWS: usize = 12;
/// Held-out loss and samples every this many steps.
const REPORT_EVERY: usize = 5;

#[derive(Clone, Copy)]
pub struct DistillState {
    distiller: StoredValue<Option<Distiller>, LocalStorage>,
    running: RwSignal<bool>,
    step: RwSignal<usize>,
    loss: RwSignal<Option<f64>>,
    held_out: StoredValue<Vec<(usize, f64)>>,
    chart: RwSignal<String>,
    samples: RwSignal<Vec<Sample>>,
    status: RwSignal<String>,
    progress: RwSignal<Option<f64>>,
    error: RwSignal<Option<String>>,
    /// Reset bumps it: a loop from before a reset stops at its next step.
    generation: StoredValue<u64>,
}

impl DistillState {
    pub fn new() -> Self {
        DistillState {
            distiller: StoredValue::new_local(None),
            running: RwSignal::new(false),
            step: RwSignal::new(0),
            loss: RwSignal::new(None),
            held_out: StoredValue::new(Vec::new()),
            chart: RwSignal::new(String::new()),
            samples: RwSignal::new(Vec::new()),
            status: RwSignal::new("Press Start: the teacher answers first, then the student trains.".into()),
            progress: RwSignal::new(None),
            error: RwSignal::new(None),
            generation: StoredValue::new(0),
        }
    }

    fn take(&self) -> Option<Distiller> {
        let mut taken = None;
        self.distiller.update_value(|slot| taken = slot.take());
        taken
    }
}

async fn prepare(lab: Lab, room: DistillState) -> Result<Distiller, String> {
    let (Some(loaded), Some(manifest), Some(lang), Some(device)) =
        (lab.loaded(), lab.manifest.get_untracked(), lab.target_lang(), lab.device())
    else {
        return Err("load a model first".into());
    };
    let config = DistillConfig::default();
    room.status.set(format!("The teacher answers {ROWS} English sentences…"));
    room.progress.set(Some(0.0));
    let rows = ROWS.min(manifest.parallel.len());
    let lessons = teach(&loaded.model, &loaded.tokenizer, &manifest, &lang, rows, &config, |done, total| {
        room.progress.set(Some(done as f64 / total as f64))
    })
    .await
    .map_err(|e| e.to_string())?;
    room.progress.set(None);
    Distiller::new(loaded.model.config(), lessons, config, &device).map_err(|e| e.to_string())
}

async fn run(lab: Lab, room: DistillState) {
    let generation = room.generation.get_value();
    let mut distiller = match room.take() {
        Some(d) => d,
        None => match prepare(lab, room).await {
            Ok(d) => d,
            Err(e) => {
                room.running.set(false);
                room.progress.set(None);
                return room.error.set(Some(e));
            }
        },
    };
    let Some(loaded) = lab.loaded() else { return };
    while room.running.get_untracked() && room.generation.get_value() == generation {
        match distiller.train_step().await {
            Ok(loss) => {
                room.loss.set(Some(loss));
                room.step.set(distiller.step);
                room.status.set(format!("Step {}: loss {loss:.3}", distiller.step));
            }
            Err(e) => {
                room.running.set(false);
                room.error.set(Some(e.to_string()));
                break;
            }
        }
        if distiller.step % REPORT_EVERY == 0 || distiller.step == 1 {
            if let Ok(held) = distiller.held_out_loss().await {
                room.held_out.update_value(|h| h.push((distiller.step, held)));
            }
            if let Ok(samples) = distiller.samples(&loaded.tokenizer).await {
                room.samples.set(samples);
            }
            room.chart.set(distiller.loss_chart(&room.held_out.get_value()));
        }
        loader::pause().await;
    }
    if room.generation.get_value() == generation {
        if room.error.get_untracked().is_none() {
            room.status.set(format!("Paused at step {}: Start goes on from here.", distiller.step));
        }
        room.distiller.set_value(Some(distiller));
    }
}

fn reset(room: DistillState) {
    room.generation.update_value(|g| *g += 1);
    room.running.set(false);
    room.distiller.set_value(None);
    room.step.set(0);
    room.loss.set(None);
    room.held_out.set_value(Vec::new());
    room.chart.set(String::new());
    room.samples.set(Vec::new());
    room.error.set(None);
    room.status.set("Reset: a fresh student. Press Start.".into());
}

#[component]
pub fn DistillRoom(lab: Lab) -> impl IntoView {
    let room = lab.distill;
    // A new model, or another language, needs a new teacher's lessons.
    Effect::new(move |previous: Option<(usize, Option<String>)>| {
        let now = (lab.model_version.get(), lab.target_lang());
        if previous.is_some_and(|p| p != now) {
            reset(room);
        }
        now
    });
    let start = move |_| {
        if room.running.get_untracked() {
            return;
        }
        room.running.set(true);
        room.error.set(None);
        spawn_local(run(lab, room));
    };
    view! {
        <section class="room" data-testid="room-distill">
            <h2>"Distillation"</h2>
            <p class="explain">"The loaded model (teacher) continues each English sentence. A fresh 2-layer student reads the same sentence in the target language and learns to continue it as the teacher did — the teacher's English knowledge, reached through another language (SDRRL's idea, at toy scale)."</p>
            {move || needs_model(lab).then(|| view! { <p class="hint">"Waiting for a model…"</p> })}
            <div class="controls">
                <TargetSelect lab=lab testid="distill-lang" />
                <button data-testid="distill-start" on:click=start disabled=move || room.running.get() || needs_model(lab)>"Start"</button>
                <button data-testid="distill-pause" on:click=move |_| room.running.set(false) disabled=move || !room.running.get()>"Pause"</button>
                <button data-testid="distill-reset" on:click=move |_| reset(room)>"Reset"</button>
                <span data-testid="distill-step">{move || format!("step {}", room.step.get())}</span>
            </div>
            <Status status=room.status progress=room.progress error=room.error testid="distill" />
            <Chart svg=room.chart testid="distill-chart" />
            <table class="samples" data-testid="distill-samples">
                <tr><th>"target-language prompt (held out)"</th><th>"teacher's answer (to the English)"</th><th>"student's answer"</th><th>"agreement"</th></tr>
                {move || room.samples.get().into_iter().map(|s| view! {
                    <tr><td>{s.target}</td><td>{s.teacher}</td><td>{s.student}</td><td>{format!("{:.0}%", s.agreement * 100.0)}</td></tr>
                }).collect_view()}
            </table>
        </section>
    }
}

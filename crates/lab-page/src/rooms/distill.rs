//! The distillation room: the loaded model teaches a small student in the page — start, pause,
//! reset — with the loss curve and the student's answers next to the teacher's as it learns.

use leptos::prelude::*;
use leptos::task::spawn_local;

use super::{Chart, Status, StatusLine, TargetSelect, needs_model, show_stop};
use crate::Lab;
use rosetta_lab_protocol::Sample;
use rosetta_lab_protocol::{Answer, Event, Request};

#[derive(Clone, Copy)]
pub struct DistillState {
    running: RwSignal<bool>,
    step: RwSignal<usize>,
    chart: RwSignal<String>,
    samples: RwSignal<Vec<Sample>>,
    line: StatusLine,
    /// Reset bumps it: what a run from before a reset still sends is ignored.
    generation: StoredValue<u64>,
}

impl DistillState {
    pub fn new() -> Self {
        DistillState {
            running: RwSignal::new(false),
            step: RwSignal::new(0),
            chart: RwSignal::new(String::new()),
            samples: RwSignal::new(Vec::new()),
            line: StatusLine::saying("Press Start: the teacher answers first, then the student trains."),
            generation: StoredValue::new(0),
        }
    }
}

/// Trains in the worker until Pause or Reset; each step's loss (and every few steps the chart and
/// the student's answers) arrives as an event.
async fn run(lab: Lab, room: DistillState) {
    let generation = room.generation.get_value();
    let Some(lang) = lab.target_lang() else {
        room.running.set(false);
        return room.line.error.set(Some("load a model first".into()));
    };
    let current = move || room.generation.get_value() == generation;
    let on_event = move |event| {
        if !current() {
            return;
        }
        match event {
            Event::Status(text) => room.line.status.set(text),
            Event::Progress(p) => room.line.progress.set(Some(p)),
            Event::DistillStep(step) => {
                room.line.progress.set(None);
                room.step.set(step.step);
                room.line.status.set(format!("Step {}: loss {:.3}", step.step, step.loss));
                if let Some(chart) = step.chart {
                    room.chart.set(chart);
                }
                if let Some(samples) = step.samples {
                    room.samples.set(samples);
                }
            }
            _ => {}
        }
    };
    let result = lab.call(Request::DistillStart { lang }, on_event).await;
    if !current() {
        return;
    }
    room.running.set(false);
    room.line.progress.set(None);
    match result {
        Ok(Answer::DistillStopped { step }) => room.line.status.set(format!("Paused at step {step}: Start goes on from here.")),
        Ok(_) => {}
        Err(stop) => show_stop(stop, room.line.error),
    }
}

fn reset(lab: Lab, room: DistillState) {
    room.generation.update_value(|g| *g += 1);
    room.running.set(false);
    room.step.set(0);
    room.line.progress.set(None);
    room.chart.set(String::new());
    room.samples.set(Vec::new());
    room.line.error.set(None);
    room.line.status.set("Reset: a fresh student. Press Start.".into());
    spawn_local(async move {
        if let Err(stop) = lab.ask(Request::DistillReset).await {
            show_stop(stop, room.line.error);
        }
    });
}

#[component]
pub fn DistillRoom(lab: Lab) -> impl IntoView {
    let room = lab.distill;
    // A new model, or another language, needs a new teacher's lessons.
    Effect::new(move |previous: Option<(usize, Option<String>)>| {
        let now = (lab.model_version.get(), lab.target_lang());
        if previous.is_some_and(|p| p != now) {
            reset(lab, room);
        }
        now
    });
    let start = move |_| {
        if room.running.get_untracked() {
            return;
        }
        room.running.set(true);
        room.line.error.set(None);
        spawn_local(run(lab, room));
    };
    // The step in flight finishes, then the worker's loop stops and answers.
    let pause = move |_| {
        spawn_local(async move {
            if let Err(stop) = lab.ask(Request::DistillPause).await {
                show_stop(stop, room.line.error);
            }
        })
    };
    view! {
        <section class="room" data-testid="room-distill">
            <h2>"Distillation"</h2>
            <p class="explain">"The loaded model (teacher) continues each English sentence. A fresh 2-layer student, which knows only the tokens its lessons use, reads the same sentence in the target language and learns to continue it as the teacher did — the teacher's English knowledge, reached through another language (SDRRL's idea, at toy scale)."</p>
            {move || needs_model(lab).then(|| view! { <p class="hint">"Waiting for a model…"</p> })}
            <div class="controls">
                <TargetSelect lab=lab testid="distill-lang" />
                <button data-testid="distill-start" on:click=start disabled=move || room.running.get() || needs_model(lab)>"Start"</button>
                <button data-testid="distill-pause" on:click=pause disabled=move || !room.running.get()>"Pause"</button>
                <button data-testid="distill-reset" on:click=move |_| reset(lab, room)>"Reset"</button>
                <span data-testid="distill-step">{move || format!("step {}", room.step.get())}</span>
            </div>
            <Status line=room.line testid="distill" />
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

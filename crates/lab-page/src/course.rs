//! Course mode: a guided path through the rooms for a class. Each step opens a room with a short
//! explanation and sets the sliders to where the point is visible; the step is in the link, so a
//! teacher can send students straight to it.

use leptos::prelude::*;

use crate::Lab;
use rosetta_lab_protocol::page_state::{PageState, Room};

pub struct Step {
    pub room: Room,
    pub title: &'static str,
    pub text: &'static str,
    pub preset: fn(&mut PageState),
}

pub const STEPS: &[Step] = &[
    Step {
        room: Room::Tokenizer,
        title: "1. What a model reads",
        text: "A model never sees letters, only tokens. Compare how many tokens the same sentence costs in English and in the target language: more tokens for the same sentence mean a shorter effective context and a higher price per sentence. The extended tokenizer adds target-language tokens (Csaki et al. 2023) — watch the count drop.",
        preset: |_| {},
    },
    Step {
        room: Room::Shift,
        title: "2. Where languages live inside the model",
        text: "Each point is one sentence's hidden state at a layer, projected to 2-D. In the middle layers the languages draw together: the curve shows the subspace distance to English, and the shaded band is where ShifCon (Zhang et al. 2025) moves non-English states into the English subspace.",
        preset: |s| s.strength = 0.0,
    },
    Step {
        room: Room::Shift,
        title: "3. Moving a sentence into English space",
        text: "The slider adds the language vector difference at the start of the band and removes it at the end. At full strength the target sentences land on the English cloud; below, see what happens to the model's next-token guesses and to bits per character.",
        preset: |s| s.strength = 1.0,
    },
    Step {
        room: Room::Features,
        title: "4. The few dimensions that carry translation",
        text: "A handful of hidden dimensions have activations far larger than the rest, and which ones depends on the task. Kim et al. (2024) keep the weights that feed the large translation features when pruning. Raise the sparsity and watch which languages suffer first.",
        preset: |s| s.sparsity = 0.5,
    },
    Step {
        room: Room::Distill,
        title: "5. Teaching a student from the model's own answers",
        text: "SDRRL (Zhang et al. 2024) lets a model learn a language from its own answers in English. Here a tiny student reads the target-language sentence and learns to give the answer the teacher gives to the English one. Press Start and watch the loss fall and the answers converge.",
        preset: |_| {},
    },
];

pub fn go_to(lab: Lab, step: usize) {
    let step = step.min(STEPS.len() - 1);
    lab.state.update(|s| {
        s.course = Some(step);
        s.room = STEPS[step].room;
        (STEPS[step].preset)(s);
    });
}

pub fn toggle(lab: Lab) {
    if lab.state.with_untracked(|s| s.course.is_some()) {
        lab.state.update(|s| s.course = None);
    } else {
        go_to(lab, 0);
    }
}

#[component]
pub fn CourseGuide(lab: Lab) -> impl IntoView {
    move || {
        let step = lab.state.with(|s| s.course)?;
        let step = step.min(STEPS.len() - 1);
        let current = &STEPS[step];
        Some(view! {
            <aside class="course" data-testid="course">
                <h2 data-testid="course-title">{current.title}</h2>
                <p>{current.text}</p>
                <p class="course-nav">
                    <button data-testid="course-back" disabled=step == 0 on:click=move |_| go_to(lab, step.saturating_sub(1))>"Back"</button>
                    {format!(" step {} of {} ", step + 1, STEPS.len())}
                    <button data-testid="course-next" disabled=step + 1 == STEPS.len() on:click=move |_| go_to(lab, step + 1)>"Next"</button>
                </p>
            </aside>
        })
    }
}

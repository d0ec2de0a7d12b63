//! The tokenizer room: a sentence cut by the model's tokenizer and by the extended one side by side
//! (new tokens highlighted), and fertility per language as a bar chart.

use leptos::prelude::*;
use leptos::task::spawn_local;
use wasm_bindgen::JsCast;

use super::{Chart, TargetSelect, needs_model, show_stop};
use crate::Lab;
use rosetta_lab_protocol::TokenPiece;
use rosetta_lab_protocol::{Answer, Request};

type Tokens = (Vec<TokenPiece>, Option<(String, Vec<TokenPiece>)>);
type Fertility = (String, Option<Vec<(String, f64)>>);

#[component]
fn TokenRow(#[prop(into)] label: String, pieces: Vec<TokenPiece>, #[prop(into)] testid: String) -> impl IntoView {
    let count = pieces.len();
    view! {
        <div class="token-row" data-testid=testid.clone()>
            <h3>{label}" — "<span data-testid=format!("{testid}-count")>{count}</span>" tokens"</h3>
            <div class="tokens">
                {pieces
                    .into_iter()
                    .map(|p| {
                        let shown = p.text.replace(' ', "␣").replace('\n', "⏎");
                        let title = if p.partial {
                            format!("id {}: some of the bytes of “{}” (no token holds the whole character)", p.id, p.text)
                        } else {
                            format!("id {}", p.id)
                        };
                        view! { <span class="tok" class:new=p.is_new class:partial=p.partial title=title>{shown}</span> }
                    })
                    .collect_view()}
            </div>
        </div>
    }
}

#[component]
pub fn TokenizerRoom(lab: Lab) -> impl IntoView {
    let text = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    // The chosen parallel sentence fills the box whenever the language or the sentence changes.
    Effect::new(move |_| {
        let (Some(lang), index) = (lab.target_lang(), lab.state.with(|s| s.sentence)) else { return };
        if let Some(sentence) = lab.manifest.with(|m| m.as_ref().and_then(|m| m.sentences(&lang).get(index).map(|s| s.to_string()))) {
            text.set(sentence);
        }
    });
    let sentence_options = move || {
        let lang = lab.target_lang().unwrap_or_default();
        let current = lab.state.with(|s| s.sentence);
        lab.manifest.with(|m| {
            m.as_ref()
                .map(|m| {
                    m.sentences(&lang)
                        .iter()
                        .enumerate()
                        .map(|(i, s)| {
                            let short: String = s.chars().take(60).collect();
                            view! { <option value=i.to_string() selected=i == current>{format!("{}. {short}", i + 1)}</option> }
                        })
                        .collect_view()
                })
                .unwrap_or_default()
        })
    };
    // The worker cuts the text; the newest text's answer wins (older ones are cancelled).
    let tokens = RwSignal::new(None::<Tokens>);
    Effect::new(move |_| {
        lab.extended_version.get();
        let text = text.get();
        if lab.model_version.get() == 0 {
            return;
        }
        spawn_local(async move {
            match lab.ask(Request::Tokenize { text }).await {
                Ok(Answer::Tokens { base, extended }) => {
                    error.set(None);
                    tokens.set(Some((base, extended)));
                }
                Ok(_) => {}
                Err(stop) => show_stop(stop, error),
            }
        });
    });
    let rows = move || {
        let (base, extended) = tokens.get()?;
        let name = lab.model.with(|m| m.as_ref().map(|m| m.name.clone()).unwrap_or_default());
        Some(view! {
            <TokenRow label=format!("{name} (base)") pieces=base testid="tokens-base" />
            {match extended {
                Some((label, p)) => view! { <TokenRow label=label pieces=p testid="tokens-extended" /> }.into_any(),
                None => view! { <p class="hint" data-testid="no-extended">"No extended tokenizer yet: open one below (`rosetta vocab extend` writes it)."</p> }.into_any(),
            }}
        })
    };
    // Fertility over the manifest's parallel sentences: the chart, and what the same sentences
    // cost against English.
    let fertility = RwSignal::new(None::<Fertility>);
    Effect::new(move |_| {
        lab.extended_version.get();
        if lab.model_version.get() == 0 || lab.manifest.with(Option::is_none) {
            return;
        }
        spawn_local(async move {
            match lab.ask(Request::Fertility).await {
                Ok(Answer::Fertility { chart, premiums }) => fertility.set(Some((chart, premiums))),
                Ok(_) => {}
                Err(stop) => show_stop(stop, error),
            }
        });
    });
    let chart = Signal::derive(move || fertility.with(|f| f.as_ref().map(|f| f.0.clone()).unwrap_or_default()));
    let premium_line = move || {
        fertility.with(|f| {
            let premiums = f.as_ref()?.1.as_ref()?;
            let parts: Vec<String> = premiums.iter().map(|(lang, ratio)| format!("{lang} {ratio:.2}×")).collect();
            Some(format!("The same parallel sentences cost, in tokens of the base tokenizer, against English: {}.", parts.join(", ")))
        })
    };
    // The worker reads and checks the picked file.
    let on_pick = move |ev: web_sys::Event| {
        let Some(files) = ev.target().and_then(|t| t.dyn_into::<web_sys::HtmlInputElement>().ok()).and_then(|i| i.files()) else { return };
        spawn_local(async move {
            let result = match lab.worker() {
                Ok(worker) => worker.call(Request::OpenExtended, Some(&files), |_| {}).await,
                Err(stop) => Err(stop),
            };
            match result {
                Ok(Answer::Extended { label }) => {
                    error.set(None);
                    lab.extended.set(Some(label));
                    lab.extended_version.update(|v| *v += 1);
                }
                Ok(_) => {}
                Err(stop) => show_stop(stop, error),
            }
        });
    };
    view! {
        <section class="room" data-testid="room-tokenizer">
            <h2>"Tokenizer"</h2>
            <p class="explain">"The same sentence costs different numbers of tokens in different languages. Type, or pick one of the parallel sentences."</p>
            <div class="controls">
                <TargetSelect lab=lab testid="tokenizer-lang" />
                <label>
                    "Sentence: "
                    <select data-testid="tokenizer-sentence" on:change=move |ev| {
                        let i = event_target_value(&ev).parse().unwrap_or(0);
                        lab.state.update(|s| s.sentence = i);
                    }>{sentence_options}</select>
                </label>
            </div>
            <textarea data-testid="tokenizer-text" rows="3" prop:value=move || text.get() on:input=move |ev| text.set(event_target_value(&ev))></textarea>
            {move || if needs_model(lab) { Some(view! { <p class="hint">"Waiting for a model…"</p> }) } else { None }}
            {rows}
            <Chart svg=chart testid="fertility-chart" />
            <p class="hint" data-testid="token-premiums">{premium_line}</p>
            <label class="picker">"Open an extended tokenizer.json: "<input type="file" accept=".json" data-testid="tokenizer-file" on:change=on_pick /></label>
            {move || error.get().map(|e| view! { <p class="error" role="alert" data-testid="tokenizer-error">{e}</p> })}
        </section>
    }
}

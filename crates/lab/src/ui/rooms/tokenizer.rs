//! The tokenizer room: a sentence cut by the model's tokenizer and by the extended one side by side
//! (new tokens highlighted), and fertility per language as a bar chart.

use leptos::prelude::*;
use leptos::task::spawn_local;
use rosetta_model::TextTokenizer;
use wasm_bindgen::JsCast;

use super::{Chart, TargetSelect, needs_model};
use crate::fertility::{TokenPiece, fertility_chart, fertility_rows, pieces, premiums};
use crate::ui::{Lab, loader};

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
    let base_vocab = move || lab.loaded().map(|l| l.tokenizer.vocab_size()).unwrap_or(0);
    let rows = move || {
        lab.model_version.get();
        lab.extended_version.get();
        let text = text.get();
        let loaded = lab.loaded()?;
        let base = pieces(&loaded.tokenizer, &text, base_vocab()).map_err(|e| error.set(Some(e.to_string()))).ok()?;
        let extended = lab.extended().and_then(|ext| pieces(&ext.1, &text, base_vocab()).ok().map(|p| (ext.0.clone(), p)));
        Some(view! {
            <TokenRow label=format!("{} (base)", loaded.name) pieces=base testid="tokens-base" />
            {match extended {
                Some((label, p)) => view! { <TokenRow label=label pieces=p testid="tokens-extended" /> }.into_any(),
                None => view! { <p class="hint" data-testid="no-extended">"No extended tokenizer yet: open one below (`rosetta vocab extend` writes it)."</p> }.into_any(),
            }}
        })
    };
    // Fertility over the manifest's parallel sentences: the chart, and what the same sentences
    // cost against English.
    let fertility = Memo::new(move |_| {
        lab.model_version.get();
        lab.extended_version.get();
        let (Some(loaded), Some(manifest)) = (lab.loaded(), lab.manifest.get()) else { return None };
        let texts: Vec<(String, Vec<&str>)> = manifest.langs.iter().map(|l| (l.clone(), manifest.sentences(l))).collect();
        let extended = lab.extended();
        match fertility_rows(&loaded.tokenizer, extended.as_ref().map(|e| &e.1), &texts) {
            Ok(rows) => Some((fertility_chart(&rows, extended.as_ref().map_or("extended", |e| e.0.as_str())), premiums(&rows, "en"))),
            Err(e) => {
                error.set(Some(e.to_string()));
                None
            }
        }
    });
    let chart = Signal::derive(move || fertility.with(|f| f.as_ref().map(|f| f.0.clone()).unwrap_or_default()));
    let premium_line = move || {
        fertility.with(|f| {
            let premiums = f.as_ref()?.1.as_ref()?;
            let parts: Vec<String> = premiums.iter().map(|(lang, ratio)| format!("{lang} {ratio:.2}×")).collect();
            Some(format!("The same parallel sentences cost, in tokens of the base tokenizer, against English: {}.", parts.join(", ")))
        })
    };
    let on_pick = move |ev: web_sys::Event| {
        let Some(files) = ev.target().and_then(|t| t.dyn_into::<web_sys::HtmlInputElement>().ok()).and_then(|i| i.files()) else { return };
        spawn_local(async move {
            let picked = match loader::read_picked(&files, crate::page_memory::MAX_TOKENIZER_BYTES).await {
                Ok(p) => p,
                Err(e) => return error.set(Some(e)),
            };
            let Some(file) = picked.into_iter().next() else { return };
            let result = String::from_utf8(file.bytes)
                .map_err(|_| format!("{} is not UTF-8 text", file.name))
                .and_then(|json| TextTokenizer::from_hf_json(&json, None, None, &file.name).map_err(|e| e.to_string()))
                .and_then(|t| match lab.loaded() {
                    Some(l) if t.vocab_size() < l.tokenizer.vocab_size() => Err(format!(
                        "{} has {} tokens, fewer than the model's {}: it is not an extension of this tokenizer",
                        file.name,
                        t.vocab_size(),
                        l.tokenizer.vocab_size()
                    )),
                    _ => Ok(t),
                });
            match result {
                Ok(t) => {
                    error.set(None);
                    lab.set_extended(file.name.clone(), t);
                }
                Err(e) => error.set(Some(e)),
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

//! `rosetta generate`: text from a prompt, streamed, with tokens/s.

use std::io::Write;

use anyhow::{Context, Result};
use rosetta_model::Interventions;
use rosetta_model::generate::{GenerationConfig, Sampling, generate_blocking};
use rosetta_model::tokenizer::chat::{CHATML, ChatMessage, render};

use crate::commands::shift_args::ShiftArgs;
use crate::model_args::ModelArgs;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// The prompt.
    #[arg(long, short)]
    prompt: String,
    /// Wrap the prompt as a user turn in the model's chat template.
    #[arg(long)]
    chat: bool,
    /// A system message (with --chat).
    #[arg(long)]
    system: Option<String>,
    #[arg(long, default_value_t = 128)]
    max_new_tokens: usize,
    /// 0 decodes greedily.
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    #[arg(long)]
    top_k: Option<usize>,
    #[arg(long)]
    top_p: Option<f32>,
    #[arg(long)]
    repetition_penalty: Option<f32>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Language of the prompt, for a shift (with --shift it is the shift's language).
    #[arg(long)]
    lang: Option<String>,
    #[command(flatten)]
    shift: ShiftArgs,
}

pub fn run(args: Args) -> Result<()> {
    let (checkpoint, model) = args.model.load()?;
    let tokenizer = &checkpoint.tokenizer;
    let interventions = match args.shift.plan(&checkpoint, &model)? {
        Some(plan) => {
            let lang = args.shift.shift.as_ref().map(|s| s.lang.clone()).or(args.lang.clone());
            match lang {
                Some(lang) if lang == plan.english => Interventions::none(),
                Some(lang) => {
                    eprintln!("shifting `{lang}` {}", plan.describe());
                    plan.interventions(&lang, &model.device())?
                }
                None => {
                    eprintln!("note: the model carries a shift for {}; say the prompt's --lang to apply it", plan.langs().join(", "));
                    Interventions::none()
                }
            }
        }
        None => Interventions::none(),
    };
    let text = if args.chat {
        let mut messages = Vec::new();
        if let Some(system) = &args.system {
            messages.push(ChatMessage::system(system.clone()));
        }
        messages.push(ChatMessage::user(args.prompt.clone()));
        let template = tokenizer.chat_template.as_deref().unwrap_or(CHATML);
        render(template, &messages, true, tokenizer.bos_token.as_deref(), tokenizer.eos_token.as_deref())?
    } else {
        args.prompt.clone()
    };
    // A chat template writes its own special tokens; a plain prompt gets the tokenizer's.
    let ids = tokenizer.encode(&text, !args.chat)?;
    let sampling = if args.temperature > 0.0 {
        Sampling::Random { temperature: args.temperature, top_k: args.top_k, top_p: args.top_p }
    } else {
        Sampling::Greedy
    };
    let mut stop_tokens = checkpoint.config.eos_token_ids.clone();
    stop_tokens.extend(tokenizer.eos_id());
    let config = GenerationConfig {
        max_new_tokens: args.max_new_tokens,
        sampling,
        repetition_penalty: args.repetition_penalty,
        stop_tokens,
        seed: args.seed,
    };
    let mut generated = Vec::new();
    let mut printed = 0usize;
    let mut stdout = std::io::stdout();
    if !args.chat {
        print!("{}", args.prompt);
    }
    let output = generate_blocking(&model, &[ids], &config, &interventions, |_, token| {
        generated.push(token);
        // Decode the whole continuation each step so multi-byte characters split across tokens
        // print whole.
        if let Ok(text) = tokenizer.decode(&generated, true)
            && let Some(new) = printable(&text, printed, false)
        {
            print!("{new}");
            let _ = stdout.flush();
            printed += new.len();
        }
    })
    .context("generating")?;
    if let Ok(text) = tokenizer.decode(&generated, true)
        && let Some(rest) = printable(&text, printed, true)
    {
        print!("{rest}");
    }
    println!();
    eprintln!(
        "{} prompt tokens in {:.2} s; {} new tokens in {:.2} s ({:.1} tokens/s, {:?})",
        output.prompt_tokens,
        output.prefill_seconds,
        output.new_tokens(),
        output.decode_seconds,
        output.decode_tokens_per_second(),
        output.stop_reasons[0]
    );
    Ok(())
}

/// What of `text` (the continuation decoded so far) is new past the `printed` bytes. Until `last`,
/// trailing replacement characters are held back: they are a character whose bytes the next
/// tokens complete (a Chinese character is often two or three byte-level tokens), which printed
/// early would show as `�` and shift everything after it.
fn printable(text: &str, printed: usize, last: bool) -> Option<&str> {
    let complete = if last { text } else { text.trim_end_matches(char::REPLACEMENT_CHARACTER) };
    (complete.len() > printed && complete.is_char_boundary(printed)).then(|| &complete[printed..])
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn a_character_split_across_tokens_prints_once_whole() {
        // "北京" as the decoder sees it token by token: the second character's bytes arrive late.
        let steps = ["北", "北\u{FFFD}", "北\u{FFFD}", "北京"];
        let mut printed = 0;
        let mut out = String::new();
        for text in steps {
            if let Some(new) = printable(text, printed, false) {
                out.push_str(new);
                printed += new.len();
            }
        }
        assert_eq!(out, "北京");
        // A replacement character the model really produced still prints at the end.
        assert_eq!(printable("a\u{FFFD}", 1, false), None);
        assert_eq!(printable("a\u{FFFD}", 1, true), Some("\u{FFFD}"));
    }
}

//! Supervised fine-tuning examples: an instruction and its response in the model's chat template,
//! the loss on the response (and the end-of-turn token) only.

use rosetta_data::Example;
use rosetta_model::tokenizer::chat::{CHATML, ChatMessage, render};
use rosetta_model::{Result, TextTokenizer};

/// Tokenises one instruction/response pair. The prompt is the template rendered up to the
/// assistant's turn; the completion is what the full conversation adds after it.
pub fn chat_example(tokenizer: &TextTokenizer, instruction: &str, response: &str) -> Result<Example> {
    let template = tokenizer.chat_template.as_deref().unwrap_or(CHATML);
    let (bos, eos) = (tokenizer.bos_token.as_deref(), tokenizer.eos_token.as_deref());
    let user = [ChatMessage::user(instruction)];
    let prompt = render(template, &user, true, bos, eos)?;
    let full = render(template, &[ChatMessage::user(instruction), ChatMessage::assistant(response)], false, bos, eos)?;
    // Templates end the prompt exactly where the answer starts; if one does not, the answer and
    // an end-of-sequence token follow the prompt directly.
    let completion = match full.strip_prefix(&prompt) {
        Some(rest) if !rest.is_empty() => rest.to_string(),
        _ => format!("{response}{}", eos.unwrap_or("")),
    };
    let prompt_ids = tokenizer.encode(&prompt, false)?;
    let completion_ids = tokenizer.encode(&completion, false)?;
    let mut targets = vec![false; prompt_ids.len()];
    targets.extend(std::iter::repeat_n(true, completion_ids.len()));
    let mut ids = prompt_ids;
    ids.extend(completion_ids);
    Ok(Example { ids, targets, lang: String::new() })
}

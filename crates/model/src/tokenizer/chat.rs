//! Chat templates: the Jinja templates instruct models ship (`chat_template` in
//! `tokenizer_config.json` or `tokenizer.chat_template` in GGUF), rendered the way transformers'
//! `apply_chat_template` renders them (`trim_blocks`, `lstrip_blocks`, Python string methods,
//! `raise_exception`).

use minijinja::{Environment, Error, ErrorKind, context};
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn user(content: impl Into<String>) -> Self {
        ChatMessage { role: "user".into(), content: content.into() }
    }

    pub fn assistant(content: impl Into<String>) -> Self {
        ChatMessage { role: "assistant".into(), content: content.into() }
    }

    pub fn system(content: impl Into<String>) -> Self {
        ChatMessage { role: "system".into(), content: content.into() }
    }
}

/// Limits on rendering a template that came with a download. Fuel is minijinja's instruction
/// budget: real chat templates spend a few hundred per message, so this allows thousands of
/// messages and stops a template that loops (`range` over huge counts, recursion) in well under a
/// second. The template's own size and the rendered text are capped too.
pub const RENDER_FUEL: u64 = 2_000_000;
pub const MAX_TEMPLATE_BYTES: usize = 256 * 1024;
/// Rendered text beyond the messages' own length plus this is a template gone wrong.
pub const MAX_RENDER_OVERHEAD: usize = 1 << 20;

/// Renders `messages` with `template`. With `add_generation_prompt` the text ends where the
/// assistant's answer begins. Bounded: see [`RENDER_FUEL`].
pub fn render(
    template: &str,
    messages: &[ChatMessage],
    add_generation_prompt: bool,
    bos_token: Option<&str>,
    eos_token: Option<&str>,
) -> Result<String> {
    if template.len() > MAX_TEMPLATE_BYTES {
        return Err(ModelError::ChatTemplate(format!(
            "the template is {} bytes, more than the {MAX_TEMPLATE_BYTES} any real chat template needs; it is corrupt",
            template.len()
        )));
    }
    let mut env = Environment::new();
    env.set_fuel(Some(RENDER_FUEL));
    let syntax = minijinja::syntax::SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .build()
        .map_err(|e| ModelError::ChatTemplate(e.to_string()))?;
    env.set_syntax(syntax);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function("raise_exception", |message: String| -> std::result::Result<String, Error> {
        Err(Error::new(ErrorKind::InvalidOperation, message))
    });
    env.add_template("chat", template).map_err(|e| ModelError::ChatTemplate(format!("the template does not parse: {e}")))?;
    let tmpl = env.get_template("chat").map_err(|e| ModelError::ChatTemplate(e.to_string()))?;
    let limit = messages.iter().map(|m| m.content.len() + m.role.len()).sum::<usize>() + MAX_RENDER_OVERHEAD;
    let mut out = CappedText { bytes: Vec::new(), limit };
    let rendered = tmpl.render_captured_to(
        context! {
            messages => messages
                .iter()
                .map(|m| minijinja::Value::from_pairs([("role", m.role.as_str()), ("content", m.content.as_str())]))
                .collect::<Vec<_>>(),
            add_generation_prompt => add_generation_prompt,
            bos_token => bos_token.unwrap_or(""),
            eos_token => eos_token.unwrap_or(""),
        },
        &mut out,
    );
    match rendered {
        Ok(_) => String::from_utf8(out.bytes).map_err(|e| ModelError::ChatTemplate(format!("the template rendered invalid UTF-8: {e}"))),
        Err(e) if e.kind() == ErrorKind::OutOfFuel => Err(ModelError::ChatTemplate(format!(
            "the template did not finish within {RENDER_FUEL} steps: it loops or recurses without end; fix the model's chat_template"
        ))),
        Err(e) if out.bytes.len() >= limit => Err(ModelError::ChatTemplate(format!(
            "the template's output passed {limit} bytes for {} messages ({e}); fix the model's chat_template",
            messages.len()
        ))),
        Err(e) => Err(ModelError::ChatTemplate(e.to_string())),
    }
}

/// The rendered text, refused past `limit` bytes (the write fails and the render stops).
struct CappedText {
    bytes: Vec<u8>,
    limit: usize,
}

impl std::io::Write for CappedText {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len() + bytes.len() > self.limit {
            self.bytes.resize(self.limit, 0);
            return Err(std::io::Error::other("the rendered text is too long"));
        }
        self.bytes.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// ChatML, used when a model ships no template (the format SmolLM2 and Qwen2 use).
pub const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chatml_matches_the_reference_layout() {
        let text = render(CHATML, &[ChatMessage::user("Hi")], true, None, None).unwrap();
        assert_eq!(text, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
    }

    #[test]
    fn python_methods_and_raise_exception_work() {
        let template = "{% if messages[0].role != 'user' %}{{ raise_exception('first must be user') }}{% endif %}{{ messages[0].content.strip().upper() }}";
        assert_eq!(render(template, &[ChatMessage::user("  hey ")], false, None, None).unwrap(), "HEY");
        let err = render(template, &[ChatMessage::system("x")], false, None, None).unwrap_err();
        assert!(err.to_string().contains("first must be user"), "{err}");
    }

    #[test]
    fn templates_that_never_finish_are_stopped() {
        let start = web_time::Instant::now();
        let endless = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}";
        let err = render(endless, &[ChatMessage::user("hi")], true, None, None).unwrap_err().to_string();
        assert!(err.contains("did not finish") && err.contains("chat_template"), "{err}");
        let recursive = "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}";
        assert!(render(recursive, &[ChatMessage::user("hi")], true, None, None).is_err());
        let long_output = "{% for i in range(90000) %}{{ 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx' }}{% endfor %}";
        let err = render(long_output, &[ChatMessage::user("hi")], true, None, None).unwrap_err().to_string();
        assert!(err.contains("output passed"), "{err}");
        let huge = "x".repeat(MAX_TEMPLATE_BYTES + 1);
        assert!(render(&huge, &[], true, None, None).unwrap_err().to_string().contains("corrupt"));
        assert!(start.elapsed().as_secs_f64() < 1.0, "stopping took {:?}", start.elapsed());
    }
}

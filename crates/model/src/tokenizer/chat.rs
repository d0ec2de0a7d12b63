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

/// Renders `messages` with `template`. With `add_generation_prompt` the text ends where the
/// assistant's answer begins.
pub fn render(
    template: &str,
    messages: &[ChatMessage],
    add_generation_prompt: bool,
    bos_token: Option<&str>,
    eos_token: Option<&str>,
) -> Result<String> {
    let mut env = Environment::new();
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
    tmpl.render(context! {
        messages => messages
            .iter()
            .map(|m| minijinja::Value::from_pairs([("role", m.role.as_str()), ("content", m.content.as_str())]))
            .collect::<Vec<_>>(),
        add_generation_prompt => add_generation_prompt,
        bos_token => bos_token.unwrap_or(""),
        eos_token => eos_token.unwrap_or(""),
    })
    .map_err(|e| ModelError::ChatTemplate(e.to_string()))
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
}

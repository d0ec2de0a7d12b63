//! What a shared link reproduces: the room, the course step, the language and sentence, and the
//! sliders. Kept in the URL's query string (`?room=shift&lang=hu&sentence=3&strength=0.5`) so a
//! teacher can send a link that opens on the same view. Unknown or out-of-range values fall back to
//! the defaults rather than breaking the page.

use std::fmt::Write;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Room {
    #[default]
    Tokenizer,
    Shift,
    Features,
    Distill,
}

impl Room {
    pub const ALL: [Room; 4] = [Room::Tokenizer, Room::Shift, Room::Features, Room::Distill];

    pub fn slug(self) -> &'static str {
        match self {
            Room::Tokenizer => "tokenizer",
            Room::Shift => "shift",
            Room::Features => "features",
            Room::Distill => "distill",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Room::Tokenizer => "Tokenizer",
            Room::Shift => "Shift",
            Room::Features => "Magnitude features",
            Room::Distill => "Distillation",
        }
    }

    pub fn from_slug(slug: &str) -> Option<Room> {
        Room::ALL.into_iter().find(|r| r.slug() == slug)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct PageState {
    pub room: Room,
    /// `Some(step)` in course mode.
    pub course: Option<usize>,
    pub lang: Option<String>,
    /// Index into the manifest's parallel rows.
    pub sentence: usize,
    /// Shift strength, 0..=1.
    pub strength: f32,
    /// Site whose PCA scatter is shown.
    pub layer: Option<usize>,
    /// Pruning sparsity, 0..0.95.
    pub sparsity: f32,
    /// `cpu` forces the CPU fallback even where WebGPU exists.
    pub backend: Option<String>,
}

impl Default for PageState {
    fn default() -> Self {
        PageState { room: Room::Tokenizer, course: None, lang: None, sentence: 0, strength: 0.0, layer: None, sparsity: 0.0, backend: None }
    }
}

pub const MAX_SPARSITY: f32 = 0.95;

/// `application/x-www-form-urlencoded` decoding of one component.
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(hi), Some(lo)) => {
                        out.push((hi * 16 + lo) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

impl PageState {
    /// Parses a query string (with or without the leading `?`).
    pub fn from_query(query: &str) -> PageState {
        let mut state = PageState::default();
        for pair in query.trim_start_matches('?').split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = decode(value);
            match key {
                "room" => state.room = Room::from_slug(&value).unwrap_or_default(),
                "course" => state.course = value.parse().ok(),
                "lang" if !value.is_empty() => state.lang = Some(value),
                "sentence" => state.sentence = value.parse().unwrap_or(0),
                "strength" => state.strength = value.parse::<f32>().ok().filter(|v| v.is_finite()).map_or(0.0, |v| v.clamp(0.0, 1.0)),
                "layer" => state.layer = value.parse().ok(),
                "sparsity" => {
                    state.sparsity = value.parse::<f32>().ok().filter(|v| v.is_finite()).map_or(0.0, |v| v.clamp(0.0, MAX_SPARSITY))
                }
                "backend" if !value.is_empty() => state.backend = Some(value),
                _ => {}
            }
        }
        state
    }

    /// The query string (with `?`) that [`PageState::from_query`] reads back to `self`; defaults
    /// are left out so links stay short.
    pub fn to_query(&self) -> String {
        let mut parts = vec![format!("room={}", self.room.slug())];
        if let Some(step) = self.course {
            parts.push(format!("course={step}"));
        }
        if let Some(lang) = &self.lang {
            parts.push(format!("lang={}", encode(lang)));
        }
        if self.sentence != 0 {
            parts.push(format!("sentence={}", self.sentence));
        }
        if self.strength != 0.0 {
            parts.push(format!("strength={}", self.strength));
        }
        if let Some(layer) = self.layer {
            parts.push(format!("layer={layer}"));
        }
        if self.sparsity != 0.0 {
            parts.push(format!("sparsity={}", self.sparsity));
        }
        if let Some(backend) = &self.backend {
            parts.push(format!("backend={}", encode(backend)));
        }
        format!("?{}", parts.join("&"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_link_reopens_the_same_view() {
        let state = PageState {
            room: Room::Shift,
            course: Some(2),
            lang: Some("zh-CN".into()),
            sentence: 7,
            strength: 0.25,
            layer: Some(12),
            sparsity: 0.5,
            backend: Some("cpu".into()),
        };
        assert_eq!(PageState::from_query(&state.to_query()), state);
        assert_eq!(PageState::from_query(&PageState::default().to_query()), PageState::default());
    }

    #[test]
    fn out_of_range_and_garbage_values_fall_back() {
        let state = PageState::from_query("room=attic&strength=7&sparsity=-1&sentence=x&layer=&lang=h%C3%BA&junk");
        assert_eq!(state.room, Room::Tokenizer);
        assert_eq!(state.strength, 1.0);
        assert_eq!(state.sparsity, 0.0);
        assert_eq!(state.sentence, 0);
        assert_eq!(state.layer, None);
        assert_eq!(state.lang.as_deref(), Some("hú"));
        assert_eq!(PageState::from_query("sparsity=NaN").sparsity, 0.0);
        assert_eq!(PageState::from_query("strength=%zz").strength, 0.0);
    }
}

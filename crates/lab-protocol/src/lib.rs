//! What the page and the lab's worker say to each other. All model work runs in a dedicated Web
//! Worker (`worker`, wasm only); the page (`ui`) keeps leptos and the page state and sends it
//! [`Request`]s tagged with an id. The worker answers each with any number of [`Event`]s
//! (progress, status, partial results) and then one final [`Reply`]: an [`Answer`], a failure,
//! or "cancelled" when a newer request of the same [`Lane`] replaced it.
//!
//! Messages cross as JSON text (`serde_json`), plus the visitor's picked `File`s, which travel
//! beside the text as browser objects (they are never read on the page). The answers are what
//! the rooms show — charts as SVG, numbers as tables — so the page does layout only.
//!
//! Plain data, built natively too: its round trips are tested there.

pub mod page_state;

#[cfg(target_family = "wasm")]
pub mod browser;

use rosetta_data::lab_manifest::Manifest;
use serde::{Deserialize, Serialize};

pub use page_state::{PageState, Room};

/// A request from the page, with its id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub id: u64,
    pub request: Request,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// Choose the device, read the manifest, the CLI's exports and the extended tokenizer from
    /// `base` (the page's `data/` as an absolute URL: a worker resolves relative URLs against its
    /// own script), then load the served model. Events: backend, manifest, exports, status,
    /// progress. Answer: [`Answer::Loaded`], or [`Answer::Done`] when no model is served.
    Start {
        base: String,
        backend: BackendChoice,
        precision: Option<String>,
        buffer_limit: Option<u64>,
    },
    /// Open the files sent beside the request as a model (one `.gguf`, or an HF model's files).
    OpenPicked,
    /// Open the file sent beside the request as an extended tokenizer.
    OpenExtended,
    /// Cut `text` with the model's tokenizer and the extended one.
    Tokenize {
        text: String,
    },
    /// Fertility per language over the manifest's parallel sentences.
    Fertility,
    /// The language geometry of the loaded model and ShifCon's band.
    Geometry,
    /// The model run with the shift at `strength` (needs [`Request::Geometry`] first).
    Shift {
        lang: String,
        strength: f32,
        layer: Option<usize>,
        sentence: usize,
    },
    /// Feature magnitudes under translation and monolingual prompts, and the dense bits/char.
    Features,
    /// Bits/char per language after Wanda pruning at `sparsity`.
    Prune {
        sparsity: f32,
    },
    /// Train the student (teaching it first if there is none for `lang`) until paused or reset.
    /// Events: progress while the teacher answers, then one [`Event::DistillStep`] per step.
    DistillStart {
        lang: String,
    },
    DistillPause,
    DistillReset,
    /// Forward and decode speed of the loaded model.
    MeasureSpeed,
}

/// How the worker picks its device: by a short measured probe (the default), or as the link says
/// (`backend=cpu`, `backend=webgpu`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum BackendChoice {
    #[default]
    Measure,
    Cpu,
    WebGpu,
}

impl BackendChoice {
    /// The link's `backend=` value; anything else measures.
    pub fn from_link(value: Option<&str>) -> Self {
        match value {
            Some("cpu") => BackendChoice::Cpu,
            Some("webgpu") => BackendChoice::WebGpu,
            _ => BackendChoice::Measure,
        }
    }
}

/// Requests in one lane replace each other: the older one is cancelled at its next batch
/// boundary and answered with [`Reply::Cancelled`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lane {
    Model,
    Tokens,
    Fertility,
    Shift,
    Prune,
}

impl Request {
    pub fn lane(&self) -> Option<Lane> {
        match self {
            Request::Start { .. } | Request::OpenPicked => Some(Lane::Model),
            Request::Tokenize { .. } => Some(Lane::Tokens),
            Request::Fertility => Some(Lane::Fertility),
            Request::Shift { .. } => Some(Lane::Shift),
            Request::Prune { .. } => Some(Lane::Prune),
            _ => None,
        }
    }
}

/// A message from the worker about request `id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub id: u64,
    pub reply: Reply,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Reply {
    /// Something to show while the request runs; more may follow.
    Event(Event),
    /// The request's result; nothing follows.
    Done(Answer),
    /// The request failed; the message is for the visitor.
    Failed(String),
    /// A newer request of the same lane replaced it.
    Cancelled,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Event {
    Backend(BackendInfo),
    Manifest(Box<Manifest>),
    Extended {
        label: String,
    },
    ExportedGeometry(ExportedGeometry),
    ExportedFeatures {
        summary: String,
        heatmap: String,
    },
    /// A failure that does not end the request (a broken export is reported and skipped).
    Warning(String),
    Status(String),
    /// Fraction done, 0..=1.
    Progress(f64),
    DistillStep(DistillStep),
    /// The shift request's next-token guesses, ahead of the rest of its answer.
    NextTokens {
        plain: NextTokenView,
        shifted: NextTokenView,
    },
}

/// Which device computes, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackendInfo {
    /// "WebGPU" or "CPU (wasm)".
    pub name: String,
    /// The adapter, or why there is no WebGPU.
    pub detail: String,
    pub is_gpu: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportedGeometry {
    pub summary: String,
    pub distances: String,
    pub band_stability: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Answer {
    Done,
    Loaded(ModelInfo),
    Extended { label: String },
    Tokens { base: Vec<TokenPiece>, extended: Option<(String, Vec<TokenPiece>)> },
    Fertility { chart: String, premiums: Option<Vec<(String, f64)>> },
    Geometry(GeometryView),
    Shift(ShiftView),
    Features(FeaturesView),
    Pruned { sparsity: f32, bits_per_char: Vec<(String, f64)> },
    DistillStopped { step: usize },
    Speed { forward: f64, decode: f64 },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    pub name: String,
    pub seconds: f64,
    /// How the weights are held (packed blocks and the matmul tile, or f32) and the worker's
    /// memory.
    pub storage: String,
    pub vocab_size: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GeometryView {
    pub num_layers: usize,
    pub band_to: usize,
    pub band_back: usize,
    pub summary: String,
    pub distances: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShiftView {
    pub strength: f32,
    /// Sentences the bits per character and the scatter are of.
    pub sentences: usize,
    pub scatter: String,
    /// The next-token guesses came ahead, as [`Event::NextTokens`].
    pub base_bits_per_char: f64,
    pub bits_per_char: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeaturesView {
    pub summary: String,
    pub translation: String,
    pub monolingual: String,
    /// Per layer: the large-magnitude dimensions under translation `(dim, magnitude, also large
    /// on monolingual text)`.
    pub large: Vec<Vec<(usize, f32, bool)>>,
    pub dense: Vec<(String, f64)>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DistillStep {
    pub step: usize,
    pub loss: f64,
    /// Every few steps: the loss chart and the student's answers next to the teacher's.
    pub chart: Option<String>,
    pub samples: Option<Vec<Sample>>,
}

/// New tokens of the decoding speed measurement ([`Request::MeasureSpeed`]).
pub const SPEED_DECODE_TOKENS: usize = 32;

/// One token as the visitor sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenPiece {
    pub id: u32,
    /// The decoded text of this token alone — or, for a byte-level piece of a multi-byte
    /// character (which would decode to U+FFFD), the character(s) it helps spell.
    pub text: String,
    /// The token holds only some bytes of `text` (`ő` is two such pieces in a byte-level
    /// vocabulary without it): shown joined to its neighbours, never as `�`.
    pub partial: bool,
    /// Ids at or above the base vocabulary size are the extension's new tokens.
    pub is_new: bool,
}

/// A student answer next to the teacher's, for a held-out row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub target: String,
    pub teacher: String,
    pub student: String,
    /// Fraction of answer tokens the student's greedy answer gets right, position by position.
    pub agreement: f64,
}

/// The model's guess for the next token after the first half of a sentence, and the sentence's
/// cost, under some interventions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NextTokenView {
    pub prefix: String,
    /// The token that actually follows, and its probability.
    pub actual: (String, f32),
    /// The most probable next tokens with probabilities, most probable first.
    pub top: Vec<(String, f32)>,
    pub bits_per_char: f64,
}

pub fn encode<T: Serialize>(value: &T) -> String {
    // Plain data with string keys: serialising it cannot fail.
    serde_json::to_string(value).unwrap_or_default()
}

pub fn decode<T: for<'de> Deserialize<'de>>(text: &str) -> Result<T, String> {
    serde_json::from_str(text)
        .map_err(|e| format!("a lab message did not read back ({e}): the page and its worker are from different builds; reload"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_read_back_as_they_were_sent() {
        let request = Envelope { id: 7, request: Request::Shift { lang: "hu".into(), strength: 0.5, layer: None, sentence: 2 } };
        assert_eq!(decode::<Envelope>(&encode(&request)).unwrap(), request);
        let piece = TokenPiece { id: 3, text: "ő".into(), partial: true, is_new: false };
        let reply = Message {
            id: 7,
            reply: Reply::Done(Answer::Tokens { base: vec![piece.clone()], extended: Some(("ext".into(), vec![piece])) }),
        };
        assert_eq!(decode::<Message>(&encode(&reply)).unwrap(), reply);
        let step = Message {
            id: 9,
            reply: Reply::Event(Event::DistillStep(DistillStep {
                step: 5,
                loss: 1.25,
                chart: Some("<svg/>".into()),
                samples: Some(vec![Sample { target: "t".into(), teacher: "a".into(), student: "b".into(), agreement: 0.5 }]),
            })),
        };
        assert_eq!(decode::<Message>(&encode(&step)).unwrap(), step);
    }

    #[test]
    fn the_link_names_a_backend_or_the_worker_measures() {
        assert_eq!(BackendChoice::from_link(Some("cpu")), BackendChoice::Cpu);
        assert_eq!(BackendChoice::from_link(Some("webgpu")), BackendChoice::WebGpu);
        assert_eq!(BackendChoice::from_link(Some("cuda")), BackendChoice::Measure);
        assert_eq!(BackendChoice::from_link(None), BackendChoice::Measure);
    }

    #[test]
    fn a_message_from_another_build_is_a_clear_error() {
        let err = decode::<Message>(r#"{"id":1,"reply":{"Done":{"Teleport":3}}}"#).unwrap_err();
        assert!(err.contains("different builds"), "{err}");
    }

    #[test]
    fn slider_requests_share_a_lane_and_controls_have_none() {
        let a = Request::Prune { sparsity: 0.1 };
        let b = Request::Prune { sparsity: 0.5 };
        assert_eq!(a.lane(), b.lane());
        assert_ne!(a.lane(), Request::Shift { lang: "hu".into(), strength: 1.0, layer: None, sentence: 0 }.lane());
        assert_eq!(Request::DistillPause.lane(), None);
        assert_eq!(
            Request::Start { base: String::new(), backend: BackendChoice::Measure, precision: None, buffer_limit: None }.lane(),
            Request::OpenPicked.lane()
        );
    }
}

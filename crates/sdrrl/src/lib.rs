//! # rosetta-sdrrl
//!
//! Method 2 of Rosetta: Zhang, Wang, Liu, Wang, Wang, Li, Sun, Liu, *Enhancing Multilingual
//! Capabilities of Large Language Models through Self-Distillation from Resource-Rich Languages*
//! (ACL 2024, arXiv:2402.12204; reference code THUNLP-MT/SDRRL).
//!
//! Translated training data ignores what the model already does well in English. SDRRL lets the
//! model answer in its strong language and carries *its own answers* into the target languages,
//! so fine-tuning targets stay close to its own distribution. [`build::build`] makes the transfer
//! set (answers → translations → code-switching → completions → parallel pairs, every
//! generation resumable and filtered); fine-tuning is the trainer's ordinary SFT on it.
//!
//! Modules: [`config`] (kinds, shares, limits), [`generation`] (resumable batched generation),
//! [`lexicon`] (Dice word alignment, code-switching), [`langid`] (trigram language check),
//! [`filters`] (what is dropped and why), [`build`].

pub mod build;
pub mod config;
pub mod error;
pub mod filters;
pub mod generation;
pub mod langid;
pub mod lexicon;

pub use build::{BuildInputs, BuildStats, Interrupt, TransferRecord, build};
pub use config::{Answers, Kind, SdrrlConfig, Shares};
pub use error::{Result, SdrrlError};

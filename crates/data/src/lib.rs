//! # rosetta-data
//!
//! Text for Rosetta's methods: the record formats (parallel, monolingual, instruction JSONL),
//! readers that name the bad line, the embedded default corpus, data mixtures with a resumable
//! sampler, packing into training rows that respects document boundaries, calibration prompt
//! texts, and the web lab's manifest (what `rosetta lab` writes and the page reads).

pub mod corpus;
pub mod error;
pub mod instruction;
pub mod jsonl;
pub mod lab_manifest;
pub mod languages;
pub mod mixture;
pub mod monolingual;
pub mod packing;
pub mod parallel;
pub mod prompts;
pub mod tasks;

pub use error::{DataError, Result};
pub use instruction::InstructionRecord;
pub use jsonl::{BadLines, SkipReport};
pub use languages::language_name;
pub use mixture::{Mixable, MixtureSampler, MixtureSpec, SamplerState};
pub use monolingual::Document;
pub use packing::{Example, PackedRow, Packer, PackerState};
pub use parallel::{ParallelCorpus, ParallelRecord};

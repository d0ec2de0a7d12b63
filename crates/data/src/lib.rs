//! # rosetta-data
//!
//! Text for Rosetta's methods: the record formats (parallel, monolingual, instruction JSONL),
//! readers that name the bad line, and the embedded default corpus.

pub mod error;
pub mod jsonl;
pub mod parallel;

pub use error::{DataError, Result};
pub use jsonl::{BadLines, SkipReport};
pub use parallel::{ParallelCorpus, ParallelRecord};

//! # rosetta-train
//!
//! Training of the shared model: causal-LM continued pretraining on language mixtures and SFT on
//! instruction data, full or LoRA, on any device (several for data parallelism), with checkpoints
//! that resume bit-for-bit on the CPU. See [`trainer::train`] and [`config::TrainConfig`].

pub mod adapt;
pub mod checkpoint;
pub mod config;
pub mod error;
pub mod loss;
pub mod method;
pub mod metrics;
pub mod optimizer;
pub mod precision;
pub mod remote;
pub mod schedule;
pub mod sft;
pub mod stream;
pub mod tensorboard;
pub mod trainer;

pub use config::TrainConfig;
pub use error::{Result, TrainError};
pub use method::{Method, MethodLoss, MicroBatch};
pub use trainer::{Observer, Quiet, RunOptions, RunSummary, StepMetrics, train, train_with};

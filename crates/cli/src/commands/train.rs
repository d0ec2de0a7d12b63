//! `rosetta train`: continued pretraining or SFT from a TOML config, with a progress bar, held-out
//! bits/char at eval steps and resumable checkpoints; a `[shifcon]` section trains with ShifCon.

use std::path::PathBuf;

use anyhow::{Context, Result};
use indicatif::ProgressBar;
use rosetta_train::TrainConfig;
use rosetta_train::trainer::{EvalResult, Observer, RunOptions, RunSummary, StepMetrics, train_with};

use crate::model_args::default_model_path;
use crate::output::progress;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The run's TOML config (see `rosetta_train::config` or examples/train-hu-cpt.toml).
    #[arg(long)]
    config: PathBuf,
    /// Continue the run in `run.out` from its latest checkpoint.
    #[arg(long)]
    resume: bool,
    /// Override `run.steps`.
    #[arg(long)]
    steps: Option<usize>,
    /// Override `run.out`.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Override `model.path`.
    #[arg(long)]
    model: Option<PathBuf>,
}

struct Progress {
    bar: Option<ProgressBar>,
}

impl Observer for Progress {
    fn started(&mut self, start: usize, total: usize) {
        let bar = progress(total as u64, "training");
        bar.set_position(start as u64);
        self.bar = Some(bar);
    }

    fn step(&mut self, m: &StepMetrics) {
        if let Some(bar) = &self.bar {
            bar.set_position(m.step as u64);
            let parts: String = m.parts.iter().map(|(k, v)| format!(", {k} {v:.3}")).collect();
            bar.set_message(format!("loss {:.3}{parts}, lr {:.1e}, {:.0} tok/s", m.loss, m.lr, m.tokens_per_second));
        }
    }

    fn evaluated(&mut self, step: usize, result: &EvalResult) {
        let text = result.iter().map(|(l, c)| format!("{l} {:.3}", c.bits_per_char())).collect::<Vec<_>>().join(", ");
        self.message(&format!("step {step}: held-out bits/char: {text}"));
    }

    fn message(&mut self, text: &str) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None => eprintln!("{text}"),
        }
    }
}

pub fn run(args: Args) -> Result<()> {
    let mut config = TrainConfig::from_toml_file(&args.config)?;
    if let Some(steps) = args.steps {
        config.run.steps = steps;
    }
    if let Some(out) = args.out {
        config.run.out = out;
    }
    if let Some(model) = args.model {
        config.model.path = Some(model);
    }
    if config.model.path.is_none() {
        let path = default_model_path();
        anyhow::ensure!(
            path.exists(),
            "model.path is not set and the default model is not at {} (run scripts/fetch-model.sh)",
            path.display()
        );
        config.model.path = Some(path);
    }
    run_config(&config, args.resume)?;
    Ok(())
}

/// The training methods `rosetta train` knows, by the name of their config table.
pub const METHODS: [&str; 1] = [rosetta_shifcon::config::TABLE];

/// The method a config's method table names, built by that method's crate from the table.
pub fn method_for(config: &TrainConfig) -> Result<Option<Box<dyn rosetta_train::Method>>> {
    let Some((name, table)) = config.methods.iter().next() else { return Ok(None) };
    match name.as_str() {
        rosetta_shifcon::config::TABLE => {
            let method = rosetta_shifcon::ShifconMethod::from_table(table, &config.base_dir, config.run.seed)
                .context("setting up ShifCon from the config's [shifcon] table")?;
            Ok(Some(Box::new(method)))
        }
        other => anyhow::bail!(
            "the config has a table [{other}], which is neither a trainer section ({}) nor a training method ({}); \
             check its spelling",
            rosetta_train::config::TRAINER_SECTIONS.map(|s| format!("[{s}]")).join(", "),
            METHODS.map(|s| format!("[{s}]")).join(", ")
        ),
    }
}

/// Runs one training config with a progress bar and prints its outcome (also the stages of
/// `rosetta vocab recipe`).
pub fn run_config(config: &TrainConfig, resume: bool) -> Result<RunSummary> {
    let mut observer = Progress { bar: None };
    // A method table picks the method; otherwise plain CPT/SFT.
    let mut method = method_for(config)?;
    let method = method.as_mut().map(|m| &mut **m as &mut dyn rosetta_train::Method);
    let summary = train_with(config, &RunOptions { resume, stop_after: None }, &mut observer, method)
        .with_context(|| format!("training run {}", config.run.out.display()))?;
    if let Some(bar) = observer.bar.take() {
        bar.finish_and_clear();
    }
    println!("finished at step {}; metrics in {}", summary.last_step, summary.metrics.display());
    if let (Some(before), Some(after)) = (&summary.first_eval, &summary.last_eval) {
        for (lang, cost) in after {
            if let Some(start) = before.get(lang) {
                println!("  {lang}: {:.3} → {:.3} bits/char", start.bits_per_char(), cost.bits_per_char());
            }
        }
    }
    if let Some(dir) = &summary.final_model {
        println!("model exported to {}", dir.display());
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_method_table_is_a_clear_error() {
        let text = "[data]\ntrain = [\"d.jsonl\"]\n[run]\nsteps = 1\nout = \"o\"\n[shifcn]\nlangs = [\"hu\"]\n";
        let config = TrainConfig::from_toml_str(text).unwrap();
        let err = format!("{:#}", method_for(&config).err().unwrap());
        assert!(err.contains("[shifcn]") && err.contains("[shifcon]") && err.contains("[optim]"), "{err}");
        let plain = TrainConfig::from_toml_str(&text.replace("[shifcn]\nlangs = [\"hu\"]\n", "")).unwrap();
        assert!(method_for(&plain).unwrap().is_none());
    }
}

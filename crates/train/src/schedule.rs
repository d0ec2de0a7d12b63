//! The learning-rate schedule: linear warmup to the peak, then cosine decay to `min_lr`
//! (SambaLingo's recipe: warmup 1%, cosine). A pure function of the step, so a resumed run needs
//! no scheduler state.

use crate::config::OptimSection;

/// Learning rate of optimizer step `step` (1-based) of `total`.
pub fn learning_rate(optim: &OptimSection, step: usize, total: usize) -> f64 {
    let warmup = optim.warmup_steps.min(total);
    if step <= warmup && warmup > 0 {
        return optim.lr * step as f64 / warmup as f64;
    }
    let decay_steps = (total - warmup).max(1) as f64;
    let progress = ((step - warmup) as f64 / decay_steps).clamp(0.0, 1.0);
    optim.min_lr + 0.5 * (optim.lr - optim.min_lr) * (1.0 + (std::f64::consts::PI * progress).cos())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warms_up_then_decays_to_min() {
        let o = OptimSection { lr: 1e-3, min_lr: 1e-4, warmup_steps: 10, ..Default::default() };
        assert!((learning_rate(&o, 1, 100) - 1e-4).abs() < 1e-12);
        assert!((learning_rate(&o, 10, 100) - 1e-3).abs() < 1e-12);
        assert!((learning_rate(&o, 55, 100) - 5.5e-4).abs() < 1e-9);
        assert!((learning_rate(&o, 100, 100) - 1e-4).abs() < 1e-12);
        let no_warmup = OptimSection { warmup_steps: 0, ..o };
        assert!((learning_rate(&no_warmup, 0, 10) - 1e-3).abs() < 1e-12);
    }
}

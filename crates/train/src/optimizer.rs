//! The trainer's AdamW: burn's `AdamW`, its state and so its checkpoints unchanged, with each
//! tensor's step through `rosetta_kernels::adamw` — one WGSL dispatch a tensor on wgpu, where
//! burn's composed step launches about fifteen (40 % of a GPU training step's launches,
//! `reports/training/README.md`); burn's own step everywhere else.

use rosetta_kernels::adamw::{AdamWHyper, Moments, adamw_step, wgpu_supported};
use rosetta_model::burn::optim::{AdamW, AdamWConfig, AdamWState, AdaptiveMomentumState, LearningRate, Optimizer};
use rosetta_model::burn::prelude::*;

/// AdamW with decoupled weight decay (no AMSGrad), stepping through the fused kernel where it
/// runs.
#[derive(Clone)]
pub struct FusedAdamW {
    adamw: AdamW,
    hyper: AdamWHyper,
}

impl FusedAdamW {
    pub fn new(hyper: AdamWHyper) -> Self {
        let config = AdamWConfig::new()
            .with_beta_1(hyper.beta_1)
            .with_beta_2(hyper.beta_2)
            .with_epsilon(hyper.epsilon)
            .with_weight_decay(hyper.weight_decay);
        FusedAdamW { adamw: config.build(), hyper }
    }

    /// burn's optimizer with the same constants (what vocabulary stage 1's row-wise step wraps).
    pub fn burn_adamw(&self) -> AdamW {
        self.adamw.clone()
    }
}

impl Optimizer for FusedAdamW {
    type State<const D: usize> = AdamWState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<AdamWState<D>>,
    ) -> (Tensor<D>, Option<AdamWState<D>>) {
        // An AMSGrad state (none is made here, but a checkpoint could carry one) takes burn's step.
        if !wgpu_supported(&tensor, &grad) || state.as_ref().is_some_and(|s| s.momentum.max_moment_2.is_some()) {
            return self.adamw.step(lr, tensor, grad, state);
        }
        let moments = state.map(|s| Moments { first: s.momentum.moment_1, second: s.momentum.moment_2, time: s.momentum.time });
        let state_of = |m: Moments<D>| AdamWState {
            momentum: AdaptiveMomentumState { time: m.time, moment_1: m.first, moment_2: m.second, max_moment_2: None },
        };
        match adamw_step(lr, tensor.clone(), grad.clone(), moments.clone(), self.hyper) {
            Ok((tensor, moments)) => (tensor, Some(state_of(moments))),
            // Shapes are the model's own, so this is not expected; burn's step is always right.
            Err(_) => self.adamw.step(lr, tensor, grad, moments.map(state_of)),
        }
    }

    fn to_device<const D: usize>(state: AdamWState<D>, device: &Device) -> AdamWState<D> {
        AdamW::to_device(state, device)
    }
}

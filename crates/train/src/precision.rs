//! Mixed precision: a step's forward and backward in bf16 or f16, while the master weights, the
//! optimizer state, the loss and the gradient norm stay f32 (Micikevicius et al. 2018, "Mixed
//! Precision Training").
//!
//! burn 0.22 has no autocast, so this is the trainer's own, kept small. Each micro-batch runs on
//! a *compute copy* of the model ([`TrainPrecision::compute_model`]): every float parameter (LoRA
//! factors included) cast to the low precision through burn's differentiable cast, whose backward
//! casts the gradient back. So the gradients that reach the f32 parameters are f32, and
//! `GradientsParams::from_grads(…, &model)` on the f32 model collects them as usual. The loss
//! head casts back to f32 (`CausalLm::head_loss`): the log-sum-exp over the vocabulary and the
//! sums of the loss never run in the narrow type.
//!
//! **On the CPU backend, bf16 is bf16 products.** Where the CPU has AVX-512 BF16, the compute
//! copy keeps f32 tensors and multiplies its dense projections' weight products (`x·W` and the
//! input gradient `g·Wᵀ`, most of a step's FLOPs) with operands rounded to bf16 and f32 sums
//! (`rosetta_kernels::linear::Products::Bf16`) — what oneDNN's bf16 math mode does for PyTorch
//! on such CPUs. burn's CPU ops on bf16 tensors ran the whole step at 0.39× PyTorch
//! (`reports/training/bench-train-bf16.json`). Everything else (norms, attention, the loss, the
//! weight gradients) stays f32 there. CPUs without BF16 and the GPU backends cast as above.
//!
//! f16 has five exponent bits: small gradients flush to zero. [`LossScale`] multiplies the loss
//! before backward and divides the gradients after (dynamic loss scaling): a step whose scaled
//! gradients overflow is skipped and the scale halved; after [`LossScale::GROWTH_INTERVAL`] good
//! steps in a row it doubles. Its state is saved in every checkpoint, so a resumed run scales as
//! the uninterrupted one would. bf16 has f32's range and needs none.

use std::borrow::Cow;

use rosetta_model::CausalLm;
use rosetta_model::burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use rosetta_model::burn::optim::GradientsParams;
use rosetta_model::burn::prelude::*;
use rosetta_model::burn::tensor::{DType, FloatDType};
use serde::{Deserialize, Serialize};

use rosetta_model::Products;

/// The precision a training step computes in (`[optim] precision`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrainPrecision {
    /// Everything in f32 (the default, and the reference).
    #[default]
    F32,
    /// Forward and backward in bfloat16: f32's range, 8 bits of mantissa.
    Bf16,
    /// Forward and backward in float16, with dynamic loss scaling.
    F16,
}

impl TrainPrecision {
    pub fn is_f32(&self) -> bool {
        *self == TrainPrecision::F32
    }

    pub fn name(self) -> &'static str {
        match self {
            TrainPrecision::F32 => "f32",
            TrainPrecision::Bf16 => "bf16",
            TrainPrecision::F16 => "f16",
        }
    }

    /// The low precision, or `None` for f32.
    pub fn dtype(self) -> Option<FloatDType> {
        match self {
            TrainPrecision::F32 => None,
            TrainPrecision::Bf16 => Some(FloatDType::BF16),
            TrainPrecision::F16 => Some(FloatDType::F16),
        }
    }

    /// A clear error where `device` cannot compute in this precision (WebGPU has no bf16, and
    /// f16 only on adapters with `shader-f16`).
    pub fn check_device(self, device: &Device) -> std::result::Result<(), String> {
        match self.dtype() {
            Some(dtype) if !device.supports_dtype(DType::from(dtype)) => Err(format!(
                "precision = \"{}\" is not supported by {device:?}: use precision = \"f32\"{}",
                self.name(),
                if self == TrainPrecision::Bf16 { " or \"f16\" where the device has it" } else { "" }
            )),
            _ => Ok(()),
        }
    }

    /// The model the step computes with: `model` itself for f32, else a copy whose float
    /// parameters are cast (differentiably) to the low precision. Parameter ids are kept, so the
    /// f32 model's gradients and the optimizer's state line up as in an f32 run.
    pub fn compute_model(self, model: &CausalLm) -> Cow<'_, CausalLm> {
        let Some(dtype) = self.dtype() else { return Cow::Borrowed(model) };
        if self == TrainPrecision::Bf16 && rosetta_model::bf16_products_on(&model.device()) {
            return Cow::Owned(model.clone().with_dense_products(Products::Bf16));
        }
        struct CastTo(FloatDType);
        impl ModuleMapper for CastTo {
            fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
                let dtype = self.0;
                param.map(|t| t.cast(dtype))
            }
        }
        Cow::Owned(model.clone().map(&mut CastTo(dtype)))
    }
}

/// Dynamic loss scaling for f16 (see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LossScale {
    pub scale: f64,
    /// Steps applied since the scale last changed.
    pub good_steps: usize,
    /// Steps skipped because their gradients overflowed, over the whole run.
    pub skipped_steps: usize,
}

impl Default for LossScale {
    fn default() -> Self {
        LossScale { scale: Self::INITIAL, good_steps: 0, skipped_steps: 0 }
    }
}

impl LossScale {
    /// 2¹⁶, PyTorch's `GradScaler` default.
    pub const INITIAL: f64 = 65_536.0;
    pub const GROWTH_INTERVAL: usize = 2000;
    /// Below this the scale stops halving: the gradients are not finite whatever the scale.
    pub const MIN: f64 = 1.0;

    /// Records a step: applies it (`true`) when its unscaled gradients are finite, else skips it
    /// and halves the scale (`false`).
    pub fn update(&mut self, gradients_finite: bool) -> bool {
        if gradients_finite {
            self.good_steps += 1;
            if self.good_steps >= Self::GROWTH_INTERVAL {
                self.scale *= 2.0;
                self.good_steps = 0;
            }
            true
        } else {
            self.scale = (self.scale / 2.0).max(Self::MIN);
            self.good_steps = 0;
            self.skipped_steps += 1;
            false
        }
    }

    /// The loss to take gradients of: times the scale, so f16's small gradients stay representable.
    pub fn scale_loss(scale: Option<&LossScale>, loss: Tensor<1>) -> Tensor<1> {
        match scale {
            Some(l) => loss.mul_scalar(l.scale),
            None => loss,
        }
    }

    /// Divides every gradient of `model`'s parameters by the scale.
    pub fn unscale(&self, model: &CausalLm, grads: &mut GradientsParams) {
        scale_gradients(model, grads, 1.0 / self.scale);
    }
}

/// Multiplies every gradient of `model`'s parameters by `factor`.
pub(crate) fn scale_gradients(model: &CausalLm, grads: &mut GradientsParams, factor: f64) {
    struct Scale<'a> {
        grads: &'a mut GradientsParams,
        factor: f64,
    }
    impl ModuleVisitor for Scale<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.remove::<D>(param.id) {
                self.grads.register(param.id, g.mul_scalar(self.factor));
            }
        }
    }
    model.visit(&mut Scale { grads, factor });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::packed_loss;
    use rosetta_data::PackedRow;
    use rosetta_model::Interventions;

    fn tiny() -> CausalLm {
        let config = rosetta_model::tiny::tiny_config();
        let weights = rosetta_model::weights::random::RandomWeights::new(&config, 7, 0.2);
        CausalLm::from_source(&config, &weights, &Device::flex().autodiff()).unwrap()
    }

    fn rows() -> Vec<PackedRow> {
        (0..2u32).map(|r| PackedRow::single((0..24).map(|i| (i * 7 + r * 13) % 250 + 3).collect(), "en")).collect()
    }

    /// Gradients of every parameter, by id, as f32 host values (their dtype checked).
    fn gradients(model: &CausalLm, precision: TrainPrecision) -> (f32, Vec<Vec<f32>>) {
        let compute = precision.compute_model(model);
        let loss = packed_loss(&compute, &rows(), 46.0, &Interventions::none()).unwrap();
        assert_eq!(loss.dtype(), DType::F32, "the loss is f32 in every precision");
        let value = loss.clone().into_scalar::<f32>();
        let grads = GradientsParams::from_grads(loss.backward(), model);
        struct Collect<'a>(&'a GradientsParams, Vec<Vec<f32>>);
        impl ModuleVisitor for Collect<'_> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                let g = self.0.get::<D>(param.id).expect("every parameter of a full fine-tune has a gradient");
                assert_eq!(g.dtype(), DType::F32, "master gradients are f32");
                self.1.push(g.into_data().convert::<f32>().try_into_vec::<f32>().unwrap());
            }
        }
        let mut collect = Collect(&grads, Vec::new());
        model.visit(&mut collect);
        (value, collect.1)
    }

    /// bf16 and f16 steps give the f32 step's loss and gradients within their precision, and the
    /// f32 parameters stay f32.
    #[test]
    fn low_precision_gradients_reach_the_f32_parameters() {
        let model = tiny();
        let (loss32, grads32) = gradients(&model, TrainPrecision::F32);
        for (precision, tolerance) in [(TrainPrecision::Bf16, 0.05), (TrainPrecision::F16, 0.02)] {
            let (loss, grads) = gradients(&model, precision);
            assert!((loss - loss32).abs() <= tolerance * loss32.abs(), "{precision:?}: loss {loss} vs f32 {loss32}");
            let (dot, norm32, norm): (f64, f64, f64) =
                grads.iter().flatten().zip(grads32.iter().flatten()).fold((0.0, 0.0, 0.0), |(d, a, b), (x, y)| {
                    (d + (*x as f64) * (*y as f64), a + (*y as f64).powi(2), b + (*x as f64).powi(2))
                });
            let cosine = dot / (norm32.sqrt() * norm.sqrt());
            assert!(cosine > 0.99, "{precision:?}: gradient direction differs from f32 (cosine {cosine})");
            assert!((norm.sqrt() / norm32.sqrt() - 1.0).abs() < 0.05, "{precision:?}: gradient norm {} vs {}", norm.sqrt(), norm32.sqrt());
        }
        struct Dtypes(Vec<DType>);
        impl ModuleVisitor for Dtypes {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                self.0.push(param.val().dtype());
            }
        }
        let mut dtypes = Dtypes(Vec::new());
        model.visit(&mut dtypes);
        assert!(!dtypes.0.is_empty() && dtypes.0.iter().all(|d| *d == DType::F32), "master weights must stay f32: {:?}", dtypes.0);
    }

    /// On a CPU with AVX-512 BF16 the bf16 compute copy is the f32 model with bf16 weight
    /// products (no cast); elsewhere a cast copy. Either way it is not the f32 model itself.
    #[test]
    fn the_cpu_computes_bf16_as_bf16_products() {
        let model = tiny();
        let compute = TrainPrecision::Bf16.compute_model(&model);
        let first_weight = |m: &CausalLm| m.layers[0].self_attn.q_proj.as_ref().map(|l| l.weight.val().dtype());
        if Products::bf16_available() {
            assert_eq!(compute.dense_products(), Products::Bf16);
            assert_eq!(first_weight(&compute), Some(DType::F32), "bf16 products keep f32 tensors");
        } else {
            assert_eq!(compute.dense_products(), Products::F32);
            assert_eq!(first_weight(&compute), Some(DType::BF16), "without AVX-512 BF16 the copy is cast");
        }
        assert_eq!(TrainPrecision::F32.compute_model(&model).dense_products(), Products::F32);
    }

    #[test]
    fn the_loss_scale_skips_overflowing_steps_and_grows_after_good_ones() {
        let mut scale = LossScale::default();
        assert!(!scale.update(false));
        assert_eq!((scale.scale, scale.skipped_steps), (LossScale::INITIAL / 2.0, 1));
        for _ in 0..LossScale::GROWTH_INTERVAL - 1 {
            assert!(scale.update(true));
        }
        assert_eq!(scale.scale, LossScale::INITIAL / 2.0);
        assert!(scale.update(true));
        assert_eq!((scale.scale, scale.good_steps), (LossScale::INITIAL, 0));
        let mut floor = LossScale { scale: 1.0, good_steps: 0, skipped_steps: 0 };
        floor.update(false);
        assert_eq!(floor.scale, LossScale::MIN, "the scale never drops below its floor");
    }
}

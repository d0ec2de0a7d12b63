//! # rosetta-shifcon
//!
//! Method 3 of Rosetta: Zhang, Shang, Wang, Zhang, Yu, Yao, Sun, Yang, Wei, *ShifCon: Enhancing
//! Non-Dominant Language Capabilities with a Shift-based Multilingual Contrastive Framework*
//! (ACL 2025, arXiv:2410.19453; reference code `rattlesnakey/ShifCon`), and its training-free
//! precursor, shift steering ("LRP2", Zhao et al., EMNLP 2023).
//!
//! The dominant language's representations reach more of what the parameters know. ShifCon moves
//! non-English states into the English subspace for a band of middle layers and back before the
//! head, and trains with a contrastive loss that pulls shifted sentence states onto their English
//! translations.
//!
//! Flow: [`states`] turns parallel sentences into per-site sentence states → [`geometry`]
//! measures language vectors, [`subspace`] distances, cosines and PCA per site and chooses the
//! band ([`measure::measure_geometry`] is that whole path, shared by the CLI, training and the
//! lab; [`charts`] draws it) → [`shift::ShiftPlan`] holds the vectors at the band's two sites and turns them into
//! model interventions (per batch or per token) → [`method::ShifconMethod`] is the training
//! objective plugged into `rosetta-train`. [`linalg`] is the small f64 algebra underneath.
//!
//! Both the released code's conventions and Rosetta's are implemented; [`conventions`] lists every
//! difference and why Rosetta's default differs, [`geometry`] why the band is chosen as it is.

pub mod charts;
#[cfg(not(target_family = "wasm"))]
pub mod config;
pub mod conventions;
pub mod error;
pub mod geometry;
pub mod linalg;
pub mod measure;
#[cfg(not(target_family = "wasm"))]
pub mod method;
pub mod shift;
pub mod states;
pub mod subspace;

#[cfg(not(target_family = "wasm"))]
pub use config::ShifconConfig;
pub use conventions::Conventions;
pub use error::{Result, ShifconError};
pub use geometry::{Band, Geometry, GeometryOptions, analyse};
pub use linalg::Matrix;
pub use measure::{MIN_GEOMETRY_SENTENCES, MeasureOptions, measure_geometry};
#[cfg(not(target_family = "wasm"))]
pub use method::ShifconMethod;
pub use shift::{ShiftPlan, ShiftSpec};
pub use subspace::{DistanceOptions, SubspaceDistance, subspace_distance};

/// The ShifCon plan saved in a checkpoint's `rosetta.json` (`shifcon.plan`), if any.
pub fn plan_from_extras(extras: Option<&serde_json::Value>) -> Result<Option<ShiftPlan>> {
    let Some(plan) = extras.and_then(|e| e.get("shifcon")).and_then(|s| s.get("plan")).filter(|p| !p.is_null()) else {
        return Ok(None);
    };
    serde_json::from_value(plan.clone()).map(Some).map_err(|e| {
        ShifconError::Invalid(format!("rosetta.json: shifcon.plan is unreadable ({e}); re-export the model or drop the record"))
    })
}

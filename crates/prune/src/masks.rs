//! Pruning masks on disk: one bit per weight (1 = kept), packed little-endian along each row,
//! as U8 tensors `[out, ceil(in / 8)]` named after the weight plus `.keep` in a safetensors file
//! — 1/32 of the f32 weights.

use std::collections::BTreeMap;
use std::path::Path;

use rosetta_model::LinearId;
use rosetta_model::burn::prelude::*;
use rosetta_model::weights::sparse::{pack_bits as pack, unpack_bits as unpack};
use safetensors::tensor::{Dtype, TensorView};

use crate::error::{PruneError, Result};

/// The safetensors bytes of `masks`.
pub fn masks_to_safetensors(masks: &BTreeMap<LinearId, Tensor<2, Bool>>) -> Result<Vec<u8>> {
    let mut packed = Vec::new();
    for (id, keep) in masks {
        let [rows, cols] = keep.dims();
        let values = rosetta_model::readback::block_on(rosetta_model::readback::to_vec_bool(keep.clone()))
            .map_err(|e| PruneError::Invalid(format!("cannot read mask {id}: {e}")))?;
        packed.push((format!("{}.keep", id.hf_weight_name()), vec![rows, cols.div_ceil(8)], pack(&values, rows, cols), cols));
    }
    let views = packed
        .iter()
        .map(|(name, shape, bytes, _)| {
            TensorView::new(Dtype::U8, shape.clone(), bytes)
                .map(|v| (name.clone(), v))
                .map_err(|e| PruneError::Invalid(format!("mask {name}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let widths: serde_json::Map<String, serde_json::Value> = packed.iter().map(|(n, _, _, c)| (n.clone(), serde_json::json!(c))).collect();
    let metadata = std::collections::HashMap::from([
        ("format".to_string(), "rosetta-mask-v1: 1 bit per weight, 1 = kept, little-endian bits along rows".to_string()),
        ("columns".to_string(), serde_json::Value::Object(widths).to_string()),
    ]);
    safetensors::serialize(views, Some(metadata)).map_err(|e| PruneError::Invalid(format!("cannot serialise masks: {e}")))
}

/// Reads a mask file back as `name → (rows, cols, keep)`.
pub fn read_masks(path: &Path) -> Result<BTreeMap<String, (usize, usize, Vec<bool>)>> {
    let bytes = std::fs::read(path).map_err(|e| PruneError::Invalid(format!("{}: {e}", path.display())))?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| PruneError::Invalid(format!("{}: {e}", path.display())))?;
    let columns: BTreeMap<String, usize> = meta
        .metadata()
        .as_ref()
        .and_then(|m| m.get("columns"))
        .and_then(|c| serde_json::from_str(c).ok())
        .ok_or_else(|| PruneError::Invalid(format!("{}: not a Rosetta mask file (no column widths)", path.display())))?;
    let tensors = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| PruneError::Invalid(format!("{}: {e}", path.display())))?;
    let mut out = BTreeMap::new();
    for (name, view) in tensors.tensors() {
        let cols = *columns.get(&name).ok_or_else(|| PruneError::Invalid(format!("{}: no width for {name}", path.display())))?;
        let rows = view.shape()[0];
        out.insert(name, (rows, cols, unpack(view.data(), rows, cols)));
    }
    Ok(out)
}

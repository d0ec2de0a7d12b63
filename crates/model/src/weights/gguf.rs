//! Reader for GGUF files (llama.cpp's model format, versions 2 and 3).
//!
//! Layout: magic `GGUF`, version, tensor count, metadata count, metadata key/values, tensor
//! infos (name, dims in ggml order, type, offset), padding to `general.alignment`, tensor data.
//! Every length read from the file is checked against the bytes that remain, so a truncated or
//! corrupt file gives an error naming what broke instead of a huge allocation or a panic.

use std::collections::BTreeMap;

use super::Blob;
use rosetta_kernels::quant::PackedMatrix;

use super::dequant::GgmlType;
use crate::error::{ModelError, Origin, Result};

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum GgufValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(Vec<GgufValue>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl GgufValue {
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            GgufValue::U8(v) => Some(v as u64),
            GgufValue::U16(v) => Some(v as u64),
            GgufValue::U32(v) => Some(v as u64),
            GgufValue::U64(v) => Some(v),
            GgufValue::I8(v) if v >= 0 => Some(v as u64),
            GgufValue::I16(v) if v >= 0 => Some(v as u64),
            GgufValue::I32(v) if v >= 0 => Some(v as u64),
            GgufValue::I64(v) if v >= 0 => Some(v as u64),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            GgufValue::F32(v) => Some(v as f64),
            GgufValue::F64(v) => Some(v),
            _ => self.as_u64().map(|v| v as f64),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            GgufValue::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            GgufValue::Bool(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[GgufValue]> {
        match self {
            GgufValue::Array(items) => Some(items),
            _ => None,
        }
    }

    /// A short rendering for `rosetta info` (arrays are summarised).
    pub fn summary(&self) -> String {
        match self {
            GgufValue::String(s) if s.len() > 80 => format!("{:?}… ({} chars)", &s[..s.floor_char_boundary(80)], s.len()),
            GgufValue::String(s) => format!("{s:?}"),
            GgufValue::Array(items) => format!("[{} items]", items.len()),
            GgufValue::F32(v) => format!("{v}"),
            GgufValue::F64(v) => format!("{v}"),
            GgufValue::Bool(v) => format!("{v}"),
            other => other.as_u64().map(|v| v.to_string()).unwrap_or_else(|| format!("{other:?}")),
        }
    }
}

/// One tensor's entry in the header.
#[derive(Debug, Clone)]
pub struct GgufTensorInfo {
    pub name: String,
    /// Dimensions in ggml order: `dims[0]` varies fastest (the reverse of PyTorch's shape).
    pub dims: Vec<usize>,
    pub type_id: u32,
    /// Offset from the start of the data section.
    pub offset: usize,
}

impl GgufTensorInfo {
    /// The shape in row-major (PyTorch/HF) order.
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().copied().collect()
    }

    /// Elements in the tensor; `usize::MAX` for a shape whose product overflows (a corrupt file:
    /// reading it fails with "shape overflows").
    pub fn num_elements(&self) -> usize {
        self.dims.iter().try_fold(1usize, |n, &d| n.checked_mul(d)).unwrap_or(usize::MAX)
    }
}

/// A parsed GGUF file; tensor data stays in the blob until read.
pub struct GgufFile {
    pub origin: Origin,
    blob: Blob,
    pub version: u32,
    pub metadata: BTreeMap<String, GgufValue>,
    pub tensors: Vec<GgufTensorInfo>,
    data_start: usize,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("origin", &self.origin)
            .field("version", &self.version)
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    origin: &'a Origin,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&end| end <= self.bytes.len());
        match end {
            Some(end) => {
                let slice = &self.bytes[self.pos..end];
                self.pos = end;
                Ok(slice)
            }
            None => Err(ModelError::gguf(
                self.origin.clone(),
                format!("file ends inside {what} at byte {} (file has {} bytes); the file is truncated", self.pos, self.bytes.len()),
            )),
        }
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A length that must fit in what is left of the file (each item takes ≥ `min_item` bytes).
    fn length(&mut self, what: &str, min_item: usize) -> Result<usize> {
        let n = self.u64(what)?;
        let left = (self.bytes.len() - self.pos) as u64;
        if n.saturating_mul(min_item as u64) > left {
            return Err(ModelError::gguf(
                self.origin.clone(),
                format!("{what} claims {n} items but only {left} bytes remain; the file is truncated or corrupt"),
            ));
        }
        // Fits in the file, so in usize wherever the file itself fits in memory.
        usize::try_from(n).map_err(|_| ModelError::gguf(self.origin.clone(), format!("{what} claims {n} items")))
    }

    /// A size read from the file as usize, refused where it does not fit (wasm32) instead of
    /// being truncated into a different, plausible value.
    fn size(&mut self, what: &str) -> Result<usize> {
        let v = self.u64(what)?;
        usize::try_from(v)
            .map_err(|_| ModelError::gguf(self.origin.clone(), format!("{what} is {v}, beyond this platform's address space")))
    }

    fn string(&mut self, what: &str) -> Result<String> {
        let n = self.length(what, 1)?;
        let bytes = self.take(n, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| ModelError::gguf(self.origin.clone(), format!("{what} is not UTF-8")))
    }

    fn value(&mut self, type_id: u32, key: &str, depth: usize) -> Result<GgufValue> {
        let what = format!("metadata value of `{key}`");
        Ok(match type_id {
            0 => GgufValue::U8(self.array::<1>(&what)?[0]),
            1 => GgufValue::I8(self.array::<1>(&what)?[0] as i8),
            2 => GgufValue::U16(u16::from_le_bytes(self.array(&what)?)),
            3 => GgufValue::I16(i16::from_le_bytes(self.array(&what)?)),
            4 => GgufValue::U32(self.u32(&what)?),
            5 => GgufValue::I32(i32::from_le_bytes(self.array(&what)?)),
            6 => GgufValue::F32(f32::from_le_bytes(self.array(&what)?)),
            7 => GgufValue::Bool(self.array::<1>(&what)?[0] != 0),
            8 => GgufValue::String(self.string(&what)?),
            9 => {
                if depth > 2 {
                    return Err(ModelError::gguf(self.origin.clone(), format!("`{key}` nests arrays too deeply")));
                }
                let item_type = self.u32(&what)?;
                let n = self.length(&what, min_encoded_size(item_type))?;
                // Reserve what the smallest encoding allows, never more than a page of items:
                // an in-memory value is larger than its encoding, so the file's own size is no
                // bound on the reservation.
                let mut items = Vec::with_capacity(n.min(4096));
                for _ in 0..n {
                    items.push(self.value(item_type, key, depth + 1)?);
                }
                GgufValue::Array(items)
            }
            10 => GgufValue::U64(self.u64(&what)?),
            11 => GgufValue::I64(i64::from_le_bytes(self.array(&what)?)),
            12 => GgufValue::F64(f64::from_le_bytes(self.array(&what)?)),
            other => {
                return Err(ModelError::gguf(self.origin.clone(), format!("`{key}` has unknown value type {other}")));
            }
        })
    }
}

impl GgufFile {
    /// See [`Blob::release_resident`].
    pub fn release_resident(&self) {
        self.blob.release_resident();
    }

    pub fn parse(blob: Blob, origin: impl Into<Origin>) -> Result<Self> {
        let origin = origin.into();
        let (version, metadata, tensors, data_start) = {
            let mut cur = Cursor { bytes: &blob, pos: 0, origin: &origin };
            let magic = cur.take(4, "the magic number")?;
            if magic != b"GGUF" {
                return Err(ModelError::gguf(origin.clone(), "does not start with the magic bytes `GGUF`"));
            }
            let version = cur.u32("the version")?;
            if !(2..=3).contains(&version) {
                return Err(ModelError::gguf(origin.clone(), format!("GGUF version {version} is not supported (supported: 2, 3)")));
            }
            // A tensor info takes at least 8+4+8+4+8 bytes, a key/value at least 8+4+1.
            let n_tensors = cur.length("the tensor count", 32)?;
            let n_kv = cur.length("the metadata count", 13)?;
            let mut metadata = BTreeMap::new();
            for _ in 0..n_kv {
                let key = cur.string("a metadata key")?;
                let type_id = cur.u32("a metadata type")?;
                let value = cur.value(type_id, &key, 0)?;
                metadata.insert(key, value);
            }
            let mut tensors = Vec::with_capacity(n_tensors.min(4096));
            for _ in 0..n_tensors {
                let name = cur.string("a tensor name")?;
                let n_dims = cur.u32(&format!("the rank of `{name}`"))? as usize;
                if n_dims == 0 || n_dims > 4 {
                    return Err(ModelError::gguf(origin.clone(), format!("tensor `{name}` has rank {n_dims}")));
                }
                let mut dims = Vec::with_capacity(n_dims);
                for _ in 0..n_dims {
                    dims.push(cur.size(&format!("the shape of `{name}`"))?);
                }
                let type_id = cur.u32(&format!("the type of `{name}`"))?;
                let offset = cur.size(&format!("the offset of `{name}`"))?;
                tensors.push(GgufTensorInfo { name, dims, type_id, offset });
            }
            let alignment = metadata.get("general.alignment").and_then(GgufValue::as_u64).unwrap_or(32);
            if alignment == 0 || !alignment.is_power_of_two() || alignment > MAX_ALIGNMENT {
                return Err(ModelError::gguf(
                    origin.clone(),
                    format!("general.alignment {alignment} is not a power of two up to {MAX_ALIGNMENT}"),
                ));
            }
            let data_start = cur.pos.div_ceil(alignment as usize) * alignment as usize;
            (version, metadata, tensors, data_start)
        };
        let file = GgufFile { origin, blob, version, metadata, tensors, data_start };
        for info in &file.tensors {
            file.tensor_bytes(info)?;
        }
        Ok(file)
    }

    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.metadata.get(key)
    }

    pub fn tensor_info(&self, name: &str) -> Option<&GgufTensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The raw bytes of a tensor, after checking its type and that they lie inside the file.
    fn tensor_bytes(&self, info: &GgufTensorInfo) -> Result<(GgmlType, &[u8])> {
        let ty = GgmlType::from_id(info.type_id).ok_or_else(|| ModelError::UnsupportedDtype {
            origin: self.origin.clone(),
            tensor: info.name.clone(),
            dtype: format!("quantisation {}", GgmlType::name_of_id(info.type_id)),
            supported: GgmlType::SUPPORTED,
        })?;
        let corrupt = |reason: String| ModelError::gguf(self.origin.clone(), format!("tensor `{}`: {reason}", info.name));
        if !info.dims[0].is_multiple_of(ty.block_size()) {
            return Err(corrupt(format!(
                "first dimension {} is not a multiple of the {} block size {}",
                info.dims[0],
                ty.name(),
                ty.block_size()
            )));
        }
        let n_bytes = info
            .dims
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .and_then(|n| (n / ty.block_size()).checked_mul(ty.type_size()))
            .ok_or_else(|| corrupt("shape overflows".into()))?;
        let start = self.data_start.checked_add(info.offset);
        let end = start.and_then(|s| s.checked_add(n_bytes));
        match (start, end) {
            (Some(start), Some(end)) if end <= self.blob.len() => Ok((ty, &self.blob[start..end])),
            _ => Err(corrupt(format!("data runs past the end of the file ({} bytes); the file is truncated", self.blob.len()))),
        }
    }

    /// The storage type name of a tensor (`Q4_1`, `F32`, ...).
    pub fn tensor_type_name(&self, info: &GgufTensorInfo) -> String {
        GgmlType::name_of_id(info.type_id)
    }

    /// Dequantises a tensor to f32, in row-major order of [`GgufTensorInfo::shape`].
    pub fn read_f32(&self, info: &GgufTensorInfo) -> Result<Vec<f32>> {
        let (ty, bytes) = self.tensor_bytes(info)?;
        Ok(ty.dequantize(bytes))
    }

    /// A 2-D quantized tensor kept quantized, in the kernels' packed layout (`None` when its type
    /// has no packed form: float types and Q2_K).
    pub fn read_packed(&self, info: &GgufTensorInfo) -> Result<Option<PackedMatrix>> {
        let (ty, bytes) = self.tensor_bytes(info)?;
        if !ty.has_packed_form() || info.dims.len() != 2 {
            return Ok(None);
        }
        let (cols, rows) = (info.dims[0], info.dims[1]);
        PackedMatrix::from_ggml(ty, rows, cols, bytes)
            .map(Some)
            .map_err(|e| ModelError::gguf(self.origin.clone(), format!("tensor `{}`: {e}", info.name)))
    }

    /// A string array from the metadata (tokens, merges).
    pub fn string_array(&self, key: &str) -> Result<Option<Vec<String>>> {
        let Some(value) = self.get(key) else { return Ok(None) };
        let items = value.as_array().ok_or_else(|| ModelError::gguf(self.origin.clone(), format!("`{key}` is not an array")))?;
        items
            .iter()
            .map(|v| {
                v.as_str().map(str::to_string).ok_or_else(|| ModelError::gguf(self.origin.clone(), format!("`{key}` holds a non-string")))
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }
}

impl GgufValue {
    /// The GGUF type id of this value.
    pub fn type_id(&self) -> u32 {
        match self {
            GgufValue::U8(_) => 0,
            GgufValue::I8(_) => 1,
            GgufValue::U16(_) => 2,
            GgufValue::I16(_) => 3,
            GgufValue::U32(_) => 4,
            GgufValue::I32(_) => 5,
            GgufValue::F32(_) => 6,
            GgufValue::Bool(_) => 7,
            GgufValue::String(_) => 8,
            GgufValue::Array(_) => 9,
            GgufValue::U64(_) => 10,
            GgufValue::I64(_) => 11,
            GgufValue::F64(_) => 12,
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        match self {
            GgufValue::U8(x) => out.push(*x),
            GgufValue::I8(x) => out.push(*x as u8),
            GgufValue::U16(x) => out.extend(x.to_le_bytes()),
            GgufValue::I16(x) => out.extend(x.to_le_bytes()),
            GgufValue::U32(x) => out.extend(x.to_le_bytes()),
            GgufValue::I32(x) => out.extend(x.to_le_bytes()),
            GgufValue::F32(x) => out.extend(x.to_le_bytes()),
            GgufValue::Bool(x) => out.push(*x as u8),
            GgufValue::String(s) => write_str(out, s),
            GgufValue::U64(x) => out.extend(x.to_le_bytes()),
            GgufValue::I64(x) => out.extend(x.to_le_bytes()),
            GgufValue::F64(x) => out.extend(x.to_le_bytes()),
            GgufValue::Array(items) => {
                // An empty array needs some item type; u8 is as good as any.
                let item_type = items.first().map_or(0, GgufValue::type_id);
                out.extend(item_type.to_le_bytes());
                out.extend((items.len() as u64).to_le_bytes());
                items.iter().for_each(|i| i.write(out));
            }
        }
    }
}

/// The largest `general.alignment` accepted (llama.cpp writes 32; anything near a page is odd,
/// anything larger only serves to push offsets past the file).
const MAX_ALIGNMENT: u64 = 1 << 16;

/// The fewest bytes one metadata value of `type_id` takes in the file: what bounds an array's
/// claimed length by the bytes left.
fn min_encoded_size(type_id: u32) -> usize {
    match type_id {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        10..=12 => 8,
        // A string is its u64 length; an array its u32 type and u64 length.
        8 => 8,
        9 => 12,
        _ => 1,
    }
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

/// Writes a GGUF v3 file from metadata and raw tensors `(name, shape in row-major order, ggml
/// type id, bytes)`, 32-byte aligned. It does not quantise: bytes are written as given. Used for
/// test fixtures and small in-memory models.
pub fn write_gguf(kv: &[(&str, GgufValue)], tensors: &[(&str, Vec<usize>, u32, Vec<u8>)]) -> Vec<u8> {
    let layout: Vec<GgufTensorLayout> = tensors
        .iter()
        .map(|(name, shape, ty, data)| GgufTensorLayout { name: name.to_string(), shape: shape.clone(), ty: *ty, bytes: data.len() })
        .collect();
    let mut out = Vec::new();
    let written = write_gguf_stream(&mut out, kv, &layout, |i| Ok(tensors[i].3.clone()));
    debug_assert!(written.is_ok(), "writing to memory does not fail");
    out
}

/// Where a tensor goes in a GGUF being written: its name, shape (row-major), type and size.
pub struct GgufTensorLayout {
    pub name: String,
    pub shape: Vec<usize>,
    pub ty: u32,
    pub bytes: usize,
}

/// The alignment of tensor data (GGUF's default `general.alignment`).
const ALIGNMENT: usize = 32;

/// Streams a GGUF v3 file: header, metadata and tensor table from `layout`, then each tensor's
/// bytes as `data(i)` produces them — one tensor in memory at a time.
pub fn write_gguf_stream(
    out: &mut impl std::io::Write,
    kv: &[(&str, GgufValue)],
    layout: &[GgufTensorLayout],
    mut data: impl FnMut(usize) -> std::io::Result<Vec<u8>>,
) -> std::io::Result<()> {
    let mut head = b"GGUF".to_vec();
    head.extend(3u32.to_le_bytes());
    head.extend((layout.len() as u64).to_le_bytes());
    head.extend((kv.len() as u64).to_le_bytes());
    for (key, value) in kv {
        write_str(&mut head, key);
        head.extend(value.type_id().to_le_bytes());
        value.write(&mut head);
    }
    let mut offset = 0usize;
    for tensor in layout {
        write_str(&mut head, &tensor.name);
        head.extend((tensor.shape.len() as u32).to_le_bytes());
        for d in tensor.shape.iter().rev() {
            head.extend((*d as u64).to_le_bytes());
        }
        head.extend(tensor.ty.to_le_bytes());
        head.extend((offset as u64).to_le_bytes());
        offset = (offset + tensor.bytes).div_ceil(ALIGNMENT) * ALIGNMENT;
    }
    head.resize(head.len().div_ceil(ALIGNMENT) * ALIGNMENT, 0);
    out.write_all(&head)?;
    for (i, tensor) in layout.iter().enumerate() {
        let bytes = data(i)?;
        if bytes.len() != tensor.bytes {
            return Err(std::io::Error::other(format!("tensor `{}`: {} bytes, the table says {}", tensor.name, bytes.len(), tensor.bytes)));
        }
        out.write_all(&bytes)?;
        let padding = bytes.len().div_ceil(ALIGNMENT) * ALIGNMENT - bytes.len();
        out.write_all(&[0u8; ALIGNMENT][..padding])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f32_bytes(values: &[f32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    #[test]
    fn reads_metadata_and_tensors() {
        let bytes = write_gguf(
            &[("general.architecture", GgufValue::String("llama".into())), ("llama.block_count", GgufValue::U32(2))],
            &[("a", vec![2, 3], 0, f32_bytes(&[1., 2., 3., 4., 5., 6.]))],
        );
        let file = GgufFile::parse(Blob::from(bytes), "t.gguf").unwrap();
        assert_eq!(file.get("llama.block_count").and_then(GgufValue::as_u64), Some(2));
        let info = file.tensor_info("a").unwrap();
        assert_eq!(info.shape(), vec![2, 3]);
        assert_eq!(file.read_f32(info).unwrap(), vec![1., 2., 3., 4., 5., 6.]);
    }

    #[test]
    fn truncated_file_is_an_error_naming_the_tensor() {
        let mut bytes = write_gguf(&[], &[("w", vec![4, 8], 0, f32_bytes(&[0.5; 32]))]);
        bytes.truncate(bytes.len() - 10);
        let err = GgufFile::parse(Blob::from(bytes), "cut.gguf").unwrap_err().to_string();
        assert!(err.contains("cut.gguf") && err.contains("`w`") && err.contains("truncated"), "{err}");
    }

    #[test]
    fn truncated_header_is_an_error() {
        let bytes = write_gguf(&[("general.name", GgufValue::String("x".repeat(100)))], &[]);
        let err = GgufFile::parse(Blob::from(bytes[..60].to_vec()), "h.gguf").unwrap_err().to_string();
        assert!(err.contains("h.gguf") && err.contains("`general.name`") && err.contains("truncated"), "{err}");
    }

    #[test]
    fn unknown_quantisation_is_named() {
        let bytes = write_gguf(&[], &[("w", vec![1, 32], 39, vec![0; 17])]);
        let err = GgufFile::parse(Blob::from(bytes), "q.gguf").unwrap_err().to_string();
        assert!(err.contains("MXFP4") && err.contains("`w`") && err.contains("Q6_K"), "{err}");
    }

    #[test]
    fn not_gguf_is_rejected() {
        let err = GgufFile::parse(Blob::from(b"PK\x03\x04 definitely a zip".to_vec()), "m.gguf").unwrap_err();
        assert!(err.to_string().contains("magic"), "{err}");
    }
}

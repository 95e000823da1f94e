//! `cargo xtask runtimes`: fetch CPython and QuickJS into `target/runtimes`.

use anyhow::Result;

pub fn run() -> Result<()> {
    let dir = mimobox_fixtures::runtimes::ensure()?;
    for name in ["python", "quickjs"] {
        println!("{}", dir.join(format!("{name}.wasm")).canonicalize()?.display());
    }
    Ok(())
}

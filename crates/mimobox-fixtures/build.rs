//! Compiles the WAT fixtures into `OUT_DIR/wasm`.

#[path = "src/compile.rs"]
mod compile;

fn main() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("wat");
    let out = std::path::Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("wasm");
    println!("cargo::rerun-if-changed={}", src.display());
    if let Err(e) = compile::compile_dir(&src, &out) {
        panic!("cannot compile fixtures: {e}");
    }
}

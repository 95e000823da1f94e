//! The profile examples in the documentation load as they are, so the docs
//! cannot drift from the format.

// The crate's one integration-test binary: random input for every parser.
mod parsers;

use std::path::Path;

use mimobox_core::Profile;

fn toml_blocks(markdown: &str) -> Vec<String> {
    markdown.split("```toml\n").skip(1).map(|rest| rest.split("```").next().unwrap().to_owned()).collect()
}

fn check_examples(doc: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let text = std::fs::read_to_string(root.join(doc)).unwrap();
    let blocks = toml_blocks(&text);
    assert!(!blocks.is_empty(), "{doc} has TOML examples");
    for block in blocks {
        let profile = Profile::parse(Path::new(doc), block.clone(), Path::new("/profiles"))
            .unwrap_or_else(|e| panic!("{doc} example does not load: {e}\n{block}"));
        assert!(profile.config().deny_network);
    }
}

#[test]
fn profile_reference_example_loads() {
    check_examples("docs/profiles.md");
}

#[test]
fn sessions_examples_load() {
    check_examples("docs/sessions.md");
}

#[test]
fn readme_example_loads() {
    check_examples("README.md");
}

#[test]
fn shipped_profiles_load() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../profiles");
    for name in ["python.toml", "quickjs.toml"] {
        let profile = Profile::load(&root.join(name)).unwrap_or_else(|e| panic!("{e}"));
        assert!(profile.config().module.as_ref().unwrap().ends_with(name.replace(".toml", ".wasm")));
    }
}

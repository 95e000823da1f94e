//! The profile examples in the documentation load as they are, so the docs
//! cannot drift from the format.

// The crate's one integration-test binary: random input for every parser.
mod parsers;

use std::path::Path;

use mimobox_core::Profile;

/// The profile examples: TOML blocks but the server's config files (whose
/// first line says so; `mimobox-server` checks those).
fn toml_blocks(markdown: &str) -> Vec<String> {
    markdown
        .split("```toml\n")
        .skip(1)
        .map(|rest| rest.split("```").next().unwrap().to_owned())
        .filter(|block| !block.starts_with("# server.toml"))
        .collect()
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

/// The code map of docs/architecture.md holds against the tree: each
/// crate's section names only files and directories that exist, and names
/// (by path, by file name, or by its directory) every source file the
/// crate has.
#[test]
fn the_architecture_code_map_matches_the_tree() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let text = std::fs::read_to_string(root.join("docs/architecture.md")).unwrap();
    let map = text.split("\n## Code map").nth(1).unwrap().split("\n## ").next().unwrap();
    let mut problems = Vec::new();
    let mut crates_seen = 0;
    for section in map.split("\n### ").skip(1) {
        let (heading, body) = section.split_once('\n').unwrap();
        let named: Vec<&str> = body
            .split('`')
            .skip(1)
            .step_by(2)
            .filter(|token| {
                token.ends_with(".rs")
                    || (token.ends_with('/')
                        && token.matches('/').count() == 1
                        && !token.contains([' ', '.']))
            })
            .collect();
        for krate in heading.split('`').skip(1).step_by(2) {
            let src = [root.join("crates").join(krate).join("src"), root.join(krate).join("src")]
                .into_iter()
                .find(|p| p.is_dir())
                .unwrap_or_else(|| panic!("the code map has a section for `{krate}`, which has no src/"));
            crates_seen += 1;
            let files = rust_files(&src, &src);
            for token in &named {
                let exists = if token.ends_with('/') {
                    src.join(token).is_dir()
                } else {
                    files.iter().any(|f| f == token || f.ends_with(&format!("/{token}")))
                };
                // A name may belong to another crate of a shared section.
                let elsewhere = heading.split('`').skip(1).step_by(2).any(|other| {
                    other != krate
                        && [root.join("crates").join(other), root.join(other)].iter().any(|d| {
                            rust_files(&d.join("src"), &d.join("src")).iter().any(|f| f.ends_with(token))
                                || d.join("src").join(token).is_dir()
                                || d.join(token).is_dir()
                        })
                });
                if !exists && !elsewhere && !token.contains("/wat/") {
                    problems.push(format!(
                        "`{krate}`: the code map names `{token}`, which is not in {}",
                        src.display()
                    ));
                }
            }
            for file in files {
                if matches!(file.as_str(), "lib.rs" | "main.rs")
                    || file.ends_with("/mod.rs")
                        && named.contains(&format!("{}/", file.trim_end_matches("/mod.rs")).as_str())
                {
                    continue;
                }
                let name = file.rsplit('/').next().unwrap();
                let dir = file.rsplit_once('/').map(|(d, _)| format!("{d}/"));
                let covered = named.iter().any(|t| *t == file || *t == name || Some(t.to_string()) == dir);
                if !covered {
                    problems.push(format!("`{krate}`: `{file}` is not in the code map"));
                }
            }
        }
    }
    assert!(crates_seen >= 6, "the code map has a section per crate");
    assert!(problems.is_empty(), "docs/architecture.md's code map is out of date:\n{}", problems.join("\n"));
}

/// The `.rs` files under `dir`, as paths relative to `base`.
fn rust_files(dir: &Path, base: &Path) -> Vec<String> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(rust_files(&path, base));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path.strip_prefix(base).unwrap().to_string_lossy().into_owned());
        }
    }
    files
}

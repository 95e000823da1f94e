//! The help text is written once, in clap; the README's flag table and the
//! `--json` field list must agree with what the binary really has.

use std::collections::BTreeSet;

use crate::{Cli, fixture, json, stdout};

fn flags_in(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|word| word.starts_with("--") && word.chars().nth(2).is_some_and(|c| c.is_ascii_alphabetic()))
        .map(str::to_owned)
        .collect()
}

#[test]
fn readme_lists_exactly_the_flags_of_run() {
    let cli = Cli::new();
    let help = stdout(&cli.run(&["run", "--help"]));
    let mut real = flags_in(&help);
    real.remove("--help");
    real.remove("--version");

    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let table = readme.split("Options of `run`").nth(1).expect("README has the run options table");
    let rows = table.lines().skip_while(|l| !l.starts_with('|')).take_while(|l| l.starts_with('|'));
    let documented: BTreeSet<String> =
        rows.filter_map(|row| row.split('|').nth(1)).flat_map(flags_in).collect();
    assert_eq!(documented, real, "README table vs `mimobox run --help`");
}

#[test]
fn json_help_names_every_field_the_output_has() {
    let cli = Cli::new();
    let help = stdout(&cli.run(&["run", "--help"]));
    let value = json(&cli.run(&["run", "--json", &fixture("hello")]));
    for field in value.as_object().unwrap().keys() {
        assert!(help.contains(field.as_str()), "`--json` help does not name `{field}`");
    }
}

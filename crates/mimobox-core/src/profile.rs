//! TOML profiles: loading a [`SandboxConfig`] from a file, with errors that
//! point at the key and line at fault.

use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::config::{ConfigError, SandboxConfig};
use crate::toml_file;

/// Why a profile could not be used: its file, the line and column and the
/// key at fault, and what is wrong, shown as one line
/// (`FILE:LINE:COLUMN: key `KEY`: PROBLEM`).
pub type ProfileError = toml_file::TomlError;

/// Profiles larger than this are refused unread; no real profile comes close.
const MAX_PROFILE_SIZE: u64 = 1 << 20;

/// A profile loaded from a TOML file: the config it describes, with relative
/// paths already resolved against the file's directory, and the source text
/// kept so that later errors can still point at a line.
#[derive(Debug, Clone)]
pub struct Profile {
    path: PathBuf,
    source: String,
    config: SandboxConfig,
}

impl Profile {
    /// Reads, parses and validates the profile at `path`.
    ///
    /// Unknown keys, values of the wrong type and impossible values (such as
    /// a zero timeout) are errors that name the key and its line.
    pub fn load(path: &Path) -> Result<Profile, ProfileError> {
        let source = toml_file::read(path, MAX_PROFILE_SIZE, "profile")?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Profile::parse(path, source, &base)
    }

    /// Parses profile text as if it were read from `path`, resolving relative
    /// paths against `base`.
    pub fn parse(path: &Path, source: String, base: &Path) -> Result<Profile, ProfileError> {
        // Unknown keys are refused, named with their line: a typo in a
        // security setting is an error, not a default.
        let mut config: SandboxConfig = toml_file::parse(path, &source)?;
        config.resolve_paths(base);
        let profile = Profile { path: path.to_owned(), source, config };
        profile.config.validate().map_err(|e| profile.config_error(&e))?;
        Ok(profile)
    }

    /// The config the profile describes.
    pub fn config(&self) -> &SandboxConfig {
        &self.config
    }

    /// Takes the config out of the profile.
    pub fn into_config(self) -> SandboxConfig {
        self.config
    }

    /// The file the profile was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the profile sets `key` (dotted for nested tables).
    pub fn sets(&self, key: &str) -> bool {
        self.locate(key).is_some()
    }

    /// Turns an error about a key of this profile's config, found after
    /// loading (by a backend, say), into one that points at its line.
    pub fn config_error(&self, error: &ConfigError) -> ProfileError {
        ProfileError::at_key(&self.path, &self.source, &error.key, error.message.clone())
    }

    /// The span of the key `dotted` in the source, if it is written there.
    fn locate(&self, dotted: &str) -> Option<Range<usize>> {
        toml_file::locate(&self.source, dotted)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn parse(text: &str) -> Result<Profile, ProfileError> {
        Profile::parse(Path::new("p.toml"), text.to_owned(), Path::new("/profiles"))
    }

    #[test]
    fn sizes_and_durations_are_exact() {
        let profile = parse(
            "max_disk_write = 9007199254740993\nmax_stdout = \"9007199254740993B\"\ntimeout_secs = 7\ncompile_timeout_secs = \"0.1s\"\n",
        )
        .unwrap();
        let config = profile.config();
        assert_eq!(config.max_disk_write, 9_007_199_254_740_993, "not rounded through a float");
        assert_eq!(config.max_stdout, 9_007_199_254_740_993);
        assert_eq!(config.timeout, Duration::from_secs(7));
        assert_eq!(config.compile_timeout, Duration::from_millis(100));
        assert!(parse("max_disk_write = 18446744073709551615").is_err(), "too large");
    }

    #[test]
    fn original_design_keys_load_as_they_are() {
        let profile = parse(
            "memory_limit_mb = 128\ntimeout_secs = 5\nfs_readonly = [\"/srv\"]\nfs_readwrite = [\"/tmp/out::/out\"]\ndeny_network = true\n",
        )
        .unwrap();
        let config = profile.config();
        assert_eq!(config.memory_limit, 128 << 20);
        assert_eq!(config.timeout, Duration::from_secs(5));
        assert_eq!(config.fs_readonly[0].guest, "/srv");
        assert_eq!(config.fs_readwrite[0].host, PathBuf::from("/tmp/out"));
        assert_eq!(config.fs_readwrite[0].guest, "/out");
    }

    #[test]
    fn readable_units_and_relative_paths() {
        let profile = parse(
            "memory_limit_mb = \"1.5GiB\"\ntimeout_secs = \"250ms\"\nmax_stdout = \"4KiB\"\nmodule = \"bin/app.wasm\"\nfs_readonly = [{ host = \"data\", guest = \"/data\" }]\n[cache]\ndir = \"cache\"\n",
        )
        .unwrap();
        let config = profile.config();
        assert_eq!(config.memory_limit, 3 << 29);
        assert_eq!(config.timeout, Duration::from_millis(250));
        assert_eq!(config.max_stdout, 4096);
        assert_eq!(config.module.as_deref(), Some(Path::new("/profiles/bin/app.wasm")));
        assert_eq!(config.fs_readonly[0].host, PathBuf::from("/profiles/data"));
        assert_eq!(config.cache.dir.as_deref(), Some(Path::new("/profiles/cache")));
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let err = parse("timeout_secs = 5\nmemory_limit = 64\n").unwrap_err();
        assert_eq!(err.position, Some((2, 1)));
        assert_eq!(err.to_string(), "p.toml:2:1: key `memory_limit`: unknown key");
    }

    #[test]
    fn unknown_keys_in_tables_and_mounts_are_named() {
        let err = parse("[cache]\nenabled = true\ndirectory = \"x\"\n").unwrap_err();
        assert_eq!((err.key.as_deref(), err.position), (Some("cache.directory"), Some((3, 1))), "{err}");
        let err = parse("fs_readonly = [\"/a\",\n  { host = \"a\", gust = \"/a\" }]\n").unwrap_err();
        assert_eq!((err.key.as_deref(), err.position), (Some("fs_readonly.gust"), Some((2, 17))), "{err}");
        let err = parse("[[fs_readwrite]]\nhost = \"a\"\n[[fs_readwrite]]\nhost = \"b\"\ngest = \"/b\"\n")
            .unwrap_err();
        assert_eq!((err.key.as_deref(), err.position), (Some("fs_readwrite.gest"), Some((5, 1))), "{err}");
        let err =
            parse("[tools.lookup]\ndescription = \"d\"\ncommand = [\"./t\"]\ntimeot = 5\n").unwrap_err();
        assert_eq!((err.key.as_deref(), err.position), (Some("tools.lookup.timeot"), Some((4, 1))), "{err}");
        let err = parse("[session]\nidle_timeout = 5\n").unwrap_err();
        assert_eq!((err.key.as_deref(), err.position), (Some("session.idle_timeout"), Some((2, 1))), "{err}");
        let err = parse("[pool]\nsize = 4\n[pool.extra]\n").unwrap_err();
        assert_eq!((err.key.as_deref(), err.position), (Some("pool.extra"), Some((3, 7))), "{err}");
        for text in ["pool = [4, 99]\n", "cache = [false, \"/x\"]\n", "session = []\n"] {
            let err = parse(text).unwrap_err();
            assert_eq!(err.position.map(|p| p.0), Some(1), "{err}");
            assert!(err.message.contains("expected a table"), "{text}: {err}");
        }
        parse("[env]\nANY_NAME = \"ok\"\n").unwrap();
        parse("[tools.t]\ndescription = \"d\"\ncommand = [\"./t\"]\ninput_schema = { any = { key = 1 } }\n")
            .unwrap();
    }

    #[test]
    fn wrong_type_names_key_and_line() {
        let err = parse("# limits\n\ndeny_network = \"yes\"\n").unwrap_err();
        assert_eq!(err.key.as_deref(), Some("deny_network"));
        assert_eq!(err.position.map(|p| p.0), Some(3));
        let err = parse("[cache]\nenabled = 3\n").unwrap_err();
        assert_eq!(err.key.as_deref(), Some("cache.enabled"), "{err}");
        assert_eq!(err.position.map(|p| p.0), Some(2));
    }

    #[test]
    fn impossible_value_names_key_and_line() {
        let err = parse("memory_limit_mb = 64\n\ntimeout_secs = 0\n").unwrap_err();
        assert_eq!(err.key.as_deref(), Some("timeout_secs"));
        assert_eq!(err.position, Some((3, 1)));
        assert!(err.message.contains("greater than zero"));
    }

    #[test]
    fn unknown_backend_is_refused() {
        let err = parse("backend = \"docker\"\n").unwrap_err();
        assert_eq!(err.key.as_deref(), Some("backend"));
        assert!(err.message.contains("`docker` is not built into"), "{err}");
    }

    #[test]
    fn syntax_error_has_a_position() {
        let err = parse("timeout_secs = = 5\n").unwrap_err();
        assert_eq!(err.position.map(|p| p.0), Some(1));
        assert!(!err.to_string().contains('\n'), "{err}");
    }
}

#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;

    use super::*;

    /// Keys a profile may have, some of its tables' keys, and some keys it
    /// may not have.
    fn keys() -> Vec<&'static str> {
        let mut keys = crate::keys::ALL.to_vec();
        keys.extend(["tools.t", "tools.t.command", "nonsense", "cache.nonsense", "\"quoted key\""]);
        keys
    }

    fn value() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            any::<i64>().prop_map(|n| n.to_string()),
            any::<f64>().prop_map(|f| format!("{f:?}")),
            any::<bool>().prop_map(|b| b.to_string()),
            ".{0,24}".prop_map(|s| format!("{s:?}")),
            "[0-9]{1,25}(\\.[0-9]+)?(B|KiB|MiB|GiB|TiB|ms|s|m|h|ns|xx)?".prop_map(|s| format!("\"{s}\"")),
            Just("\"a::b\"".to_owned()),
            Just("\"::\"".to_owned()),
            Just("{ host = \"h\" }".to_owned()),
        ];
        leaf.prop_recursive(2, 8, 4, |inner| {
            prop::collection::vec(inner, 0..4).prop_map(|items| format!("[{}]", items.join(", ")))
        })
    }

    fn profile_text() -> impl Strategy<Value = String> {
        prop::collection::vec((prop::sample::select(keys()), value(), any::<bool>()), 0..10).prop_map(
            |lines| {
                lines
                    .into_iter()
                    .map(
                        |(key, value, table)| {
                            if table { format!("[{key}]\n") } else { format!("{key} = {value}\n") }
                        },
                    )
                    .collect()
            },
        )
    }

    fn exercise(text: String) {
        let path = Path::new("fuzz.toml");
        if let Ok(profile) = Profile::parse(path, text, Path::new("/base")) {
            let config = profile.config();
            let _ = config.validate();
            if let Ok(rendered) = config.to_toml() {
                // What is rendered must load back.
                Profile::parse(path, rendered, Path::new("/")).expect("a rendered profile loads");
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn random_profiles_never_panic(text in profile_text()) {
            exercise(text);
        }

        #[test]
        fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            exercise(String::from_utf8_lossy(&bytes).into_owned());
        }
    }
}

//! The disk cache as a sandbox configures it.

use mimobox_cache::{CacheError, ModuleCache};
use mimobox_core::CacheConfig;
use mimobox_core::units::parse_size;

/// Tags the artifacts of this build: engine directories written by another
/// mimobox version are stale and are evicted first.
pub(crate) const ENGINE_TAG: &str = concat!("mimobox-wasm ", env!("CARGO_PKG_VERSION"));

/// Opens the cache that `config` describes: its directory (`cache.dir`,
/// else `MIMOBOX_CACHE_DIR`, else the per-user cache directory) and its
/// size bound (`cache.max_size`, else `MIMOBOX_CACHE_MAX_SIZE`, else
/// 1 GiB). Refuses a directory that is not private to the current user.
pub fn configured_cache(config: &CacheConfig) -> Result<ModuleCache, CacheError> {
    let dir = config.dir.clone().or_else(mimobox_cache::default_dir).ok_or(CacheError::NoDirectory)?;
    let mut cache = ModuleCache::open(&dir)?;
    cache.set_engine_tag(ENGINE_TAG);
    if let Some(bytes) = config.max_size.or_else(max_size_from_env) {
        cache.set_max_size(bytes);
    }
    Ok(cache)
}

/// `MIMOBOX_CACHE_MAX_SIZE`, a size such as `512MiB`.
fn max_size_from_env() -> Option<u64> {
    let text = std::env::var("MIMOBOX_CACHE_MAX_SIZE").ok()?;
    match parse_size(&text) {
        Ok(bytes) => Some(bytes),
        Err(e) => {
            tracing::warn!("ignoring MIMOBOX_CACHE_MAX_SIZE: {e}");
            None
        }
    }
}

//! `mimobox cache dir|stats|clear|prune`.

use std::process::ExitCode;

use anyhow::Result;
use mimobox_core::CacheConfig;
use mimobox_core::units::DisplaySize;
use mimobox_wasm::configured_cache;

use crate::cli::{CacheArgs, CacheCommand};

pub fn execute(args: CacheArgs) -> Result<ExitCode> {
    let config = CacheConfig { dir: args.cache_dir, ..CacheConfig::default() };
    let cache = configured_cache(&config)?;
    match args.command {
        CacheCommand::Dir => println!("{}", cache.dir().display()),
        CacheCommand::Stats { json } => {
            let stats = cache.stats()?;
            if json {
                let value = serde_json::json!({
                    "dir": cache.dir(),
                    "entries": stats.entries,
                    "bytes": stats.bytes,
                    "max_size": cache.max_size(),
                    "stale_entries": stats.stale_entries,
                    "stale_bytes": stats.stale_bytes,
                    "hits": stats.hits,
                    "misses": stats.misses,
                });
                println!("{value}");
            } else {
                println!("directory:     {}", cache.dir().display());
                println!("entries:       {}", stats.entries);
                println!(
                    "total size:    {} of {} allowed",
                    DisplaySize(stats.bytes),
                    DisplaySize(cache.max_size())
                );
                println!("stale entries: {} ({})", stats.stale_entries, DisplaySize(stats.stale_bytes));
                println!("hits:          {}", stats.hits);
                println!("misses:        {}", stats.misses);
            }
        }
        CacheCommand::Clear => {
            let report = cache.clear()?;
            println!(
                "removed {} modules ({}); {} in use, kept",
                report.removed,
                DisplaySize(report.freed),
                report.in_use
            );
        }
        CacheCommand::Prune { max_size } => {
            let limit = max_size.unwrap_or_else(|| cache.max_size());
            let report = cache.prune(limit)?;
            println!(
                "removed {} modules ({}); kept {} ({}) under {}; {} in use",
                report.removed,
                DisplaySize(report.freed),
                report.kept,
                DisplaySize(report.kept_bytes),
                DisplaySize(limit),
                report.in_use
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

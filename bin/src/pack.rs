//! `streamctl pack build | ls | verify`: making and checking pack files (`docs/PACK.md`).
//!
//! `build` takes every regular file under a folder; the first path component is the asset
//! type and the key is `type:relative/path`, so a pack built from a folder serves the same keys
//! as a `DirSource` on it. Symlinks are skipped, never followed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use streamrt::messages::AssetTypeName;
use streamrt::pack::{Codec, PackLimits, PackReader, PackWriter};

/// Options of `streamctl pack`.
#[derive(Debug, clap::Args)]
pub struct PackArgs {
    #[command(subcommand)]
    command: PackCommand,
}

#[derive(Debug, clap::Subcommand)]
enum PackCommand {
    /// Build a pack from a folder of assets (`<type>/<path>`).
    Build {
        /// The folder.
        dir: PathBuf,
        /// The pack to write.
        #[arg(short, long)]
        output: PathBuf,
        /// How entries are compressed.
        #[arg(long, value_enum, default_value_t = CodecArg::Lz4)]
        codec: CodecArg,
        /// Dependencies: a JSON object from key to the keys it depends on.
        #[arg(long)]
        deps: Option<PathBuf>,
    },
    /// List a pack's entries.
    Ls {
        /// The pack.
        file: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Read and check every entry; exits non-zero naming each bad one.
    Verify {
        /// The pack.
        file: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum CodecArg {
    None,
    Lz4,
    Zstd,
}

impl From<CodecArg> for Codec {
    fn from(c: CodecArg) -> Self {
        match c {
            CodecArg::None => Codec::None,
            CodecArg::Lz4 => Codec::Lz4,
            CodecArg::Zstd => Codec::Zstd,
        }
    }
}

/// Runs the pack command.
pub fn run(args: &PackArgs) -> anyhow::Result<()> {
    match &args.command {
        PackCommand::Build { dir, output, codec, deps } => {
            build(dir, output, (*codec).into(), deps.as_deref())
        }
        PackCommand::Ls { file, json } => ls(file, *json),
        PackCommand::Verify { file } => verify(file),
    }
}

/// `rel`'s components joined by `/`, the path a key names: `None` if one is not UTF-8 or holds
/// a backslash (turning it into a `/` would name another file's key).
fn key_path(rel: &Path) -> Option<String> {
    let parts: Option<Vec<&str>> = rel
        .components()
        .map(|c| c.as_os_str().to_str().filter(|part| !part.contains('\\')))
        .collect();
    Some(parts?.join("/"))
}

/// Every regular file under `dir`, as (key, path), sorted by key; symlinks are skipped.
fn collect(dir: &Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(folder) = stack.pop() {
        for entry in std::fs::read_dir(&folder).with_context(|| format!("{}", folder.display()))? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() {
                let path = entry.path();
                let Some(rel) = key_path(path.strip_prefix(dir)?) else {
                    // No key can name it, so no `DirSource` could serve it either.
                    eprintln!(
                        "pack: skipping {}: its name is not UTF-8 or holds a backslash",
                        path.display()
                    );
                    continue;
                };
                let Some((asset_type, _)) = rel.split_once('/') else {
                    eprintln!("pack: skipping {rel}: not under a <type>/ folder");
                    continue;
                };
                // A folder that is no type name (`mesh:lod`) would make a key of another type
                // and path than the file's, which a `DirSource` of the tree would not serve.
                if let Err(e) = AssetTypeName::new(asset_type) {
                    eprintln!("pack: skipping {rel}: its folder is no asset type ({e})");
                    continue;
                }
                out.push((format!("{asset_type}:{rel}"), entry.path()));
            } else {
                eprintln!("pack: skipping {}: not a regular file", entry.path().display());
            }
        }
    }
    out.sort();
    Ok(out)
}

fn build(dir: &Path, output: &Path, codec: Codec, deps: Option<&Path>) -> anyhow::Result<()> {
    let deps: BTreeMap<String, Vec<String>> = match deps {
        Some(path) => {
            let text = std::fs::read(path).with_context(|| format!("{}", path.display()))?;
            serde_json::from_slice(&text).with_context(|| {
                format!("{}: expected {{\"key\": [\"dep\", ...]}}", path.display())
            })?
        }
        None => BTreeMap::new(),
    };
    let files = collect(dir)?;
    let limits = PackLimits::default();
    let mut writer = PackWriter::create_with_limits(output, limits)?;
    let (mut raw, mut entries) = (0u64, 0usize);
    for (key, path) in &files {
        // Refused before it is read: a file far past the limit would not fit in memory.
        let size = std::fs::metadata(path).with_context(|| format!("{}", path.display()))?.len();
        if size > limits.entry_bytes_max {
            bail!(
                "{}: {size} bytes, over the {}-byte entry limit",
                path.display(),
                limits.entry_bytes_max
            );
        }
        let bytes = std::fs::read(path).with_context(|| format!("{}", path.display()))?;
        raw += bytes.len() as u64;
        entries += 1;
        writer.add(key, &bytes, codec, deps.get(key).cloned().unwrap_or_default())?;
    }
    // `files` is sorted by key.
    let listed = |k: &String| files.binary_search_by(|(key, _)| key.cmp(k)).is_ok();
    if let Some(orphan) = deps.keys().find(|k| !listed(k)) {
        bail!("the dependency file names {orphan}, which is not among the assets");
    }
    let size = writer.finish()?;
    println!(
        "pack: {entries} entries, {raw} bytes raw, {size} bytes packed ({}), {}",
        codec.name(),
        output.display()
    );
    Ok(())
}

fn ls(file: &Path, json: bool) -> anyhow::Result<()> {
    let pack = PackReader::open(file, PackLimits::default())
        .with_context(|| format!("{}", file.display()))?;
    if json {
        let rows: Vec<_> = pack
            .entries()
            .iter()
            .map(|e| {
                serde_json::json!({
                    "key": e.key, "codec": e.codec.name(), "offset": e.offset,
                    "stored_size": e.stored_size, "raw_size": e.raw_size,
                    "crc32": format!("{:08x}", e.crc32), "deps": e.deps,
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(rows));
        return Ok(());
    }
    println!("{:<48} {:>5} {:>10} {:>10}  deps", "key", "codec", "stored", "raw");
    for e in pack.entries() {
        println!(
            "{:<48} {:>5} {:>10} {:>10}  {}",
            e.key,
            e.codec.name(),
            e.stored_size,
            e.raw_size,
            e.deps.join(" ")
        );
    }
    Ok(())
}

fn verify(file: &Path) -> anyhow::Result<()> {
    let pack = PackReader::open(file, PackLimits::default())
        .with_context(|| format!("{}", file.display()))?;
    let bad = pack.verify();
    for (key, error) in &bad {
        println!("bad: {key}: {error}");
    }
    if !bad.is_empty() {
        let names: Vec<&str> = bad.iter().map(|(key, _)| key.as_str()).collect();
        bail!("{} of {} entries are bad: {}", bad.len(), pack.entries().len(), names.join(", "));
    }
    println!("ok: {} entries verified", pack.entries().len());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_fails_naming_the_entry_with_one_flipped_byte() {
        let dir = tempfile::tempdir().unwrap();
        let assets = dir.path().join("assets");
        std::fs::create_dir_all(assets.join("mesh/deep")).unwrap();
        std::fs::write(assets.join("mesh/deep/a.bin"), vec![7u8; 5_000]).unwrap();
        std::fs::write(assets.join("mesh/b.bin"), vec![9u8; 5_000]).unwrap();
        let pack = dir.path().join("a.pack");
        build(&assets, &pack, Codec::Lz4, None).unwrap();
        verify(&pack).unwrap();
        let reader = PackReader::open(&pack, PackLimits::default()).unwrap();
        let victim = reader.entry("mesh:mesh/deep/a.bin").unwrap().clone();
        drop(reader);
        let mut bytes = std::fs::read(&pack).unwrap();
        bytes[(victim.offset + victim.stored_size - 1) as usize] ^= 0x01;
        std::fs::write(&pack, &bytes).unwrap();
        let err = verify(&pack).unwrap_err().to_string();
        assert_eq!(err, "1 of 2 entries are bad: mesh:mesh/deep/a.bin");
    }

    #[test]
    fn a_file_past_the_entry_limit_or_a_missing_deps_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let assets = dir.path().join("assets");
        std::fs::create_dir_all(assets.join("blob")).unwrap();
        // Sparse: 300 MiB long without taking the room.
        let huge = std::fs::File::create(assets.join("blob/huge.bin")).unwrap();
        huge.set_len(300 << 20).unwrap();
        let pack = dir.path().join("a.pack");
        let err = build(&assets, &pack, Codec::Lz4, None).unwrap_err().to_string();
        assert!(err.contains("huge.bin") && err.contains("entry limit"), "{err}");
        let missing = dir.path().join("nope.json");
        let err = build(&assets, &pack, Codec::Lz4, Some(&missing)).unwrap_err();
        assert!(format!("{err:#}").contains("nope.json"), "{err:#}");
        assert!(!pack.exists(), "no pack is left behind");
    }

    #[test]
    fn a_file_name_with_a_backslash_is_skipped_not_taken_for_a_folder() {
        let dir = tempfile::tempdir().unwrap();
        let assets = dir.path().join("assets");
        std::fs::create_dir_all(assets.join("texture/a")).unwrap();
        std::fs::write(assets.join("texture/a\\b.png"), b"one").unwrap();
        std::fs::write(assets.join("texture/a/b.png"), b"two").unwrap();
        let files: Vec<String> = collect(&assets).unwrap().into_iter().map(|(k, _)| k).collect();
        assert_eq!(files, ["texture:texture/a/b.png"]);
    }

    #[test]
    fn a_top_folder_that_is_no_type_name_is_skipped_not_made_a_key_of_another_type() {
        let dir = tempfile::tempdir().unwrap();
        let assets = dir.path().join("assets");
        std::fs::create_dir_all(assets.join("mesh:lod")).unwrap();
        std::fs::create_dir_all(assets.join("mesh")).unwrap();
        std::fs::write(assets.join("mesh:lod/a.bin"), b"one").unwrap();
        std::fs::write(assets.join("mesh/a.bin"), b"two").unwrap();
        let files: Vec<String> = collect(&assets).unwrap().into_iter().map(|(k, _)| k).collect();
        assert_eq!(files, ["mesh:mesh/a.bin"]);
    }
}

//! `streamctl pack build | ls | verify`: making and checking pack files (`docs/PACK.md`).
//!
//! `build` takes every regular file under a folder; the first path component is the asset
//! type and the key is `type:relative/path`, so a pack built from a folder serves the same keys
//! as a `DirSource` on it. Symlinks are skipped, never followed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use rustix::fs::FileType;
use streamrt::messages::{escape_controls, AssetKey, AssetTypeName};
use streamrt::pack::{Codec, PackLimits, PackReader, PackWriter};
use streamrt::Decoder;

use crate::capped_read;
use crate::formats::MaterialDecoder;
use crate::interrupt;
use crate::shown::{json_line, shown};

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
        /// Print JSON: `{"entries": N, "bad": [{"key": ..., "error": ...}]}` (still exiting
        /// non-zero when an entry is bad).
        #[arg(long)]
        json: bool,
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
        PackCommand::Verify { file, json } => verify(file, *json),
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

/// Where `output` will be, its folder's symlinks resolved (`None` if that folder does not
/// exist: then no file of the tree is the output).
fn packed_path(output: &Path) -> Option<PathBuf> {
    let folder = output.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    Some(std::fs::canonicalize(folder).ok()?.join(output.file_name()?))
}

/// A file as the file system knows it, whatever path reached it: its device and inode.
type FileId = (u64, u64);

fn file_id(meta: &std::fs::Metadata) -> FileId {
    use std::os::unix::fs::MetadataExt;
    (meta.dev(), meta.ino())
}

/// [`file_id`] of what `statat` found; the fields' widths differ between targets.
#[allow(clippy::useless_conversion)]
fn stat_id(stat: &rustix::fs::Stat) -> FileId {
    (u64::from(stat.st_dev), u64::from(stat.st_ino))
}

/// Every regular file under `dir` but the pack being built (`output`, written into the tree, a
/// previous build's would be packed again), as (key, path, the file listed), sorted by key;
/// symlinks are skipped.
///
/// Each folder below `dir` is opened without following a symlink and checked to be the one its
/// parent's listing found, then listed through that handle: a folder swapped for a symlink
/// while the tree is walked is refused, never listed (its files, outside the tree, would be
/// listed with their own ids and pass [`read_capped`]'s check).
fn collect(dir: &Path, output: &Option<PathBuf>) -> anyhow::Result<Vec<(String, PathBuf, FileId)>> {
    let mut out = Vec::new();
    let mut stack = vec![(dir.to_owned(), None)];
    while let Some((folder, listed)) = stack.pop() {
        for (path, kind, id) in list_folder(&folder, listed)? {
            if kind == FileType::Directory {
                stack.push((path, Some(id)));
            } else if kind == FileType::RegularFile {
                if let Some(key) = file_key(dir, &path, output)? {
                    out.push((key, path, id));
                }
            } else {
                eprintln!(
                    "pack: skipping {}: not a regular file",
                    shown(&path.display().to_string())
                );
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The entries of the folder at `path` as (path, kind, the file listed); `listed` is the folder
/// its parent's listing found there (`None` for the tree's root, opened as the user named it).
/// Each entry is looked at through the folder's handle, without following a symlink.
fn list_folder(
    path: &Path,
    listed: Option<FileId>,
) -> anyhow::Result<Vec<(PathBuf, FileType, FileId)>> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::OpenOptionsExt;
    let shown_path = || shown(&path.display().to_string()).to_string();
    let nofollow = if listed.is_some() { libc::O_NOFOLLOW } else { 0 };
    let folder = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | nofollow)
        .open(path)
        .with_context(shown_path)?;
    let id = file_id(&folder.metadata().with_context(shown_path)?);
    if listed.is_some_and(|listed| listed != id) {
        bail!("{}: not the folder listed there (it was replaced)", shown_path());
    }
    let mut entries =
        rustix::fs::Dir::new(std::os::fd::OwnedFd::from(folder)).with_context(shown_path)?;
    let mut out = Vec::new();
    while let Some(entry) = entries.read() {
        let entry = entry.with_context(shown_path)?;
        let name = entry.file_name();
        if matches!(name.to_bytes(), b"." | b"..") {
            continue;
        }
        let child = path.join(std::ffi::OsStr::from_bytes(name.to_bytes()));
        let shown_child = || shown(&child.display().to_string()).to_string();
        let nofollow = rustix::fs::AtFlags::SYMLINK_NOFOLLOW;
        let stat = match rustix::fs::statat(entries.fd().with_context(shown_path)?, name, nofollow)
        {
            Ok(stat) => stat,
            // Deleted since the folder was read (an editor's swap file, say): not in the tree.
            Err(rustix::io::Errno::NOENT) => {
                eprintln!("pack: skipping {}: removed while the tree was read", shown_child());
                continue;
            }
            Err(e) => return Err(e).with_context(shown_child),
        };
        out.push((child, FileType::from_raw_mode(stat.st_mode), stat_id(&stat)));
    }
    Ok(out)
}

/// The key of the regular file at `path` under the tree `dir`, or `None` (saying why) if it is
/// skipped: no key can name it, or it is the pack being built (`output`) or a temporary file
/// of a build of it (this one's is made after the tree is read; one a killed build left is not).
fn file_key(dir: &Path, path: &Path, output: &Option<PathBuf>) -> anyhow::Result<Option<String>> {
    let Some(rel) = key_path(path.strip_prefix(dir)?) else {
        // No key can name it, so no `DirSource` could serve it either.
        eprintln!(
            "pack: skipping {}: its name is not UTF-8 or holds a backslash",
            shown(&path.display().to_string())
        );
        return Ok(None);
    };
    let Some((asset_type, _)) = rel.split_once('/') else {
        eprintln!("pack: skipping {}: not under a <type>/ folder", shown(&rel));
        return Ok(None);
    };
    // A folder that is no type name (`mesh:lod`) would make a key of another type and path
    // than the file's, which a `DirSource` of the tree would not serve.
    if let Err(e) = AssetTypeName::new(asset_type) {
        let e = escape_controls(&e.to_string()).into_owned();
        eprintln!("pack: skipping {}: its folder is no asset type ({e})", shown(&rel));
        return Ok(None);
    }
    // Any other name no key can hold (a path past a key's length) is skipped too, rather than
    // refused by the writer after the files before it were read.
    let key = format!("{asset_type}:{rel}");
    if let Err(e) = AssetKey::parse(&key) {
        eprintln!("pack: skipping {}: {e}", shown(&rel));
        return Ok(None);
    }
    if let Some(output) = output {
        let here = std::fs::canonicalize(path).ok();
        if here.as_ref() == Some(output) {
            eprintln!("pack: skipping {}: the pack being built", shown(&rel));
            return Ok(None);
        }
        if here.is_some_and(|here| PackWriter::is_temporary_of(&here, output)) {
            eprintln!("pack: skipping {}: a temporary file of a build of this pack", shown(&rel));
            return Ok(None);
        }
    }
    Ok(Some(key))
}

/// The bytes of the regular file at `path`, at most `max` of them; `listed` is the file the
/// tree's listing found there. The file is opened without following a symlink (in its last
/// component) or blocking, and checked through the open handle: another file than the one
/// listed was reached through a folder swapped for a symlink after the listing (or the file
/// was replaced), and a file swapped for a symlink (to `/dev/zero`, say) or a FIFO is refused
/// too; one that grows while read is read no further than one byte past `max`.
fn read_capped(path: &Path, listed: FileId, max: u64) -> anyhow::Result<Vec<u8>> {
    let file = capped_read::open_nonblocking(path, libc::O_NOFOLLOW)?;
    let meta = file.metadata()?;
    if file_id(&meta) != listed {
        bail!("not the file listed there (a folder on its path, or the file, was replaced)");
    }
    capped_read::read_regular(file, &meta, max, "entry limit")
}

/// The largest `--deps` file `pack build` reads: a map of every key to its dependencies, far
/// past any pack's index (`/dev/zero` or a FIFO given by mistake is refused, not read).
const DEPS_FILE_BYTES_MAX: u64 = 64 << 20;

/// The dependencies of the asset `key` whose bytes are `bytes`, `listed` those `--deps` gives
/// it. A material's are the textures its bytes name (`formats::material`), which `--deps` may
/// list but not contradict; a material that does not decode (its load will fail) keeps what
/// `--deps` lists. Any other asset's are what `--deps` lists.
///
/// # Errors
///
/// `--deps` lists other dependencies for a material than its bytes name.
fn dependencies(
    key: &str,
    bytes: &[u8],
    listed: Option<&Vec<String>>,
) -> anyhow::Result<Vec<String>> {
    let listed = listed.cloned().unwrap_or_default();
    let Some(material) = key.strip_prefix("material:").and(AssetKey::parse(key).ok()) else {
        return Ok(listed);
    };
    let named = match MaterialDecoder.decode(&material, bytes.to_vec()) {
        Ok(decoded) => decoded.textures.iter().map(ToString::to_string).collect::<Vec<_>>(),
        Err(e) => {
            let e = escape_controls(&e.to_string()).into_owned();
            eprintln!("pack: {}: not a valid material ({e}): its --deps only", shown(key));
            return Ok(listed);
        }
    };
    let sorted = |keys: &[String]| {
        let mut keys = keys.to_vec();
        keys.sort_unstable();
        keys
    };
    if !listed.is_empty() && sorted(&listed) != sorted(&named) {
        bail!("{key}: --deps lists {listed:?}, but its bytes name the textures {named:?}");
    }
    Ok(named)
}

fn build(dir: &Path, output: &Path, codec: Codec, deps: Option<&Path>) -> anyhow::Result<()> {
    let deps: BTreeMap<String, Vec<String>> = match deps {
        Some(path) => {
            let text = capped_read::read_whole(path, DEPS_FILE_BYTES_MAX, "limit of a --deps file")
                .with_context(|| format!("{}", path.display()))?;
            serde_json::from_slice(&text).with_context(|| {
                format!("{}: expected {{\"key\": [\"dep\", ...]}}", path.display())
            })?
        }
        None => BTreeMap::new(),
    };
    let files = collect(dir, &packed_path(output))?;
    // Checked before any file is read or compressed: `files` is sorted by key.
    let listed = |k: &String| files.binary_search_by(|(key, ..)| key.cmp(k)).is_ok();
    if let Some(orphan) = deps.keys().find(|k| !listed(k)) {
        bail!("the dependency file names {orphan}, which is not among the assets");
    }
    let limits = PackLimits::default();
    // Declared first, so dropped after the writer (which removes its file unfinished): a
    // signal in between finds nothing left to remove.
    let _interrupted_removes;
    let mut writer = PackWriter::create_with_limits(output, limits)?;
    _interrupted_removes = interrupt::Registered::new(writer.temporary_path());
    let (mut raw, mut entries) = (0u64, 0usize);
    for (key, path, listed) in &files {
        let bytes = read_capped(path, *listed, limits.entry_bytes_max)
            .with_context(|| format!("{}", shown(&path.display().to_string())))?;
        raw += bytes.len() as u64;
        entries += 1;
        let key_deps = dependencies(key, &bytes, deps.get(key))?;
        writer.add(key, &bytes, codec, key_deps)?;
    }
    // The codec asked for is not each entry's: one it would not make smaller is stored as is.
    let compressed = writer.compressed_entries();
    let size = writer.finish()?;
    println!(
        "pack: {entries} entries, {raw} bytes raw, {size} bytes packed ({}: {compressed} \
         compressed, {} stored as is), {}",
        codec.name(),
        entries - compressed,
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
        println!("{}", json_line(&rows)?);
        return Ok(());
    }
    println!("{:<48} {:>5} {:>10} {:>10}  deps", "key", "codec", "stored", "raw");
    let (mut stored, mut raw) = (0u64, 0u64);
    for e in pack.entries() {
        let deps: Vec<_> = e.deps.iter().map(|d| shown(d)).collect();
        let line = format!(
            "{:<48} {:>5} {:>10} {:>10}  {}",
            shown(&e.key),
            e.codec.name(),
            e.stored_size,
            e.raw_size,
            deps.join(" ")
        );
        println!("{}", line.trim_end());
        stored = stored.saturating_add(e.stored_size);
        raw = raw.saturating_add(e.raw_size);
    }
    println!("entries: {} stored={stored} raw={raw}", pack.entries().len());
    Ok(())
}

fn verify(file: &Path, json: bool) -> anyhow::Result<()> {
    let pack = PackReader::open(file, PackLimits::default())
        .with_context(|| format!("{}", file.display()))?;
    let bad = pack.verify();
    let entries = pack.entries().len();
    if json {
        let listed: Vec<_> = bad
            .iter()
            .map(|(key, error)| serde_json::json!({ "key": key, "error": error.to_string() }))
            .collect();
        // Keys are the pack's, untrusted: written with every control character escaped.
        println!("{}", json_line(&serde_json::json!({ "entries": entries, "bad": listed }))?);
    } else {
        for (key, error) in &bad {
            println!("bad: {}: {error}", shown(key));
        }
    }
    if !bad.is_empty() {
        let names: Vec<_> = bad.iter().map(|(key, _)| shown(key)).collect();
        bail!("{} of {entries} entries are bad: {}", bad.len(), names.join(", "));
    }
    if !json {
        println!("ok: {entries} entries verified");
    }
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
        verify(&pack, false).unwrap();
        let reader = PackReader::open(&pack, PackLimits::default()).unwrap();
        let victim = reader.entry("mesh:mesh/deep/a.bin").unwrap().clone();
        drop(reader);
        let mut bytes = std::fs::read(&pack).unwrap();
        bytes[(victim.offset + victim.stored_size - 1) as usize] ^= 0x01;
        std::fs::write(&pack, &bytes).unwrap();
        let err = verify(&pack, false).unwrap_err().to_string();
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
        let err = format!("{:#}", build(&assets, &pack, Codec::Lz4, None).unwrap_err());
        assert!(err.contains("huge.bin") && err.contains("entry limit"), "{err}");
        let missing = dir.path().join("nope.json");
        let err = build(&assets, &pack, Codec::Lz4, Some(&missing)).unwrap_err();
        assert!(format!("{err:#}").contains("nope.json"), "{err:#}");
        assert!(!pack.exists(), "no pack is left behind");
        // Not read at all: a device that never ends, or a file past the limit (sparse).
        let err = build(&assets, &pack, Codec::Lz4, Some(Path::new("/dev/zero"))).unwrap_err();
        assert!(format!("{err:#}").contains("not a regular file"), "{err:#}");
        let vast = dir.path().join("vast.json");
        std::fs::File::create(&vast).unwrap().set_len(DEPS_FILE_BYTES_MAX + 1).unwrap();
        let err = build(&assets, &pack, Codec::Lz4, Some(&vast)).unwrap_err();
        assert!(format!("{err:#}").contains("limit of a --deps file"), "{err:#}");
    }

    /// The keys `collect` makes of the tree under `assets`.
    fn collected_keys(assets: &Path) -> Vec<String> {
        collect(assets, &None).unwrap().into_iter().map(|(key, ..)| key).collect()
    }

    #[test]
    fn a_file_name_with_a_backslash_is_skipped_not_taken_for_a_folder() {
        let dir = tempfile::tempdir().unwrap();
        let assets = dir.path().join("assets");
        std::fs::create_dir_all(assets.join("texture/a")).unwrap();
        std::fs::write(assets.join("texture/a\\b.png"), b"one").unwrap();
        std::fs::write(assets.join("texture/a/b.png"), b"two").unwrap();
        let files = collected_keys(&assets);
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
        let files = collected_keys(&assets);
        assert_eq!(files, ["mesh:mesh/a.bin"]);
    }

    #[test]
    fn a_path_longer_than_a_key_holds_is_skipped_and_the_rest_built() {
        let dir = tempfile::tempdir().unwrap();
        let assets = dir.path().join("assets");
        let deep: PathBuf = ["blob"].into_iter().chain(["d".repeat(220).as_str(); 5]).collect();
        std::fs::create_dir_all(assets.join(&deep)).unwrap();
        std::fs::write(assets.join(&deep).join("a.bin"), b"deep").unwrap();
        std::fs::write(assets.join("blob/b.bin"), b"shallow").unwrap();
        let files = collected_keys(&assets);
        assert_eq!(files, ["blob:blob/b.bin"]);
        build(&assets, &dir.path().join("a.pack"), Codec::Lz4, None).unwrap();
    }

    #[test]
    fn a_materials_dependencies_are_the_textures_its_bytes_name() {
        let dir = tempfile::tempdir().unwrap();
        let assets = dir.path().join("assets");
        std::fs::create_dir_all(assets.join("material")).unwrap();
        std::fs::create_dir_all(assets.join("texture")).unwrap();
        let texture = AssetKey::parse("texture:texture/t.tex").unwrap();
        let material = crate::formats::Material {
            textures: vec![texture.clone()],
            base_color: [1.0; 4],
            roughness: 0.5,
        };
        let bytes = crate::formats::encode_material(&material);
        std::fs::write(assets.join("material/m.mat"), bytes).unwrap();
        std::fs::write(assets.join("texture/t.tex"), b"texels").unwrap();
        let pack = dir.path().join("a.pack");
        build(&assets, &pack, Codec::Lz4, None).unwrap();
        let reader = PackReader::open(&pack, PackLimits::default()).unwrap();
        assert_eq!(reader.entry("material:material/m.mat").unwrap().deps, [texture.to_string()]);
        let contrary = dir.path().join("deps.json");
        std::fs::write(&contrary, r#"{"material:material/m.mat": ["texture:texture/u.tex"]}"#)
            .unwrap();
        let err = build(&assets, &pack, Codec::Lz4, Some(&contrary)).unwrap_err().to_string();
        assert!(err.contains("its bytes name the textures"), "{err}");
    }

    /// The file at `path` as a listing finds it.
    fn listed(path: &Path) -> FileId {
        file_id(&std::fs::symlink_metadata(path).unwrap())
    }

    #[test]
    fn a_file_swapped_for_a_symlink_after_listing_is_refused_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let (file, link) = (dir.path().join("a.bin"), dir.path().join("b.bin"));
        std::fs::write(&file, b"bytes").unwrap();
        assert_eq!(read_capped(&file, listed(&file), 5).unwrap(), b"bytes");
        let err = read_capped(&file, listed(&file), 4).unwrap_err().to_string();
        assert!(err.contains("entry limit"), "{err}");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        assert!(read_capped(&link, listed(&link), 1 << 20).is_err(), "a symlink is not followed");
        let fifo = dir.path().join("c.bin");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(made.success());
        let err = read_capped(&fifo, listed(&fifo), 1 << 20).unwrap_err().to_string();
        assert!(err.contains("not a regular file"), "a FIFO is refused, not waited on: {err}");
    }

    #[test]
    fn a_folder_swapped_for_a_symlink_after_listing_is_refused_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/a.bin"), b"listed").unwrap();
        std::fs::create_dir_all(root.join("outside")).unwrap();
        std::fs::write(root.join("outside/a.bin"), b"secret").unwrap();
        let path = root.join("sub/a.bin");
        let was = listed(&path);
        // `sub` was a folder when the tree was listed; now it leads elsewhere.
        std::fs::rename(root.join("sub"), root.join("gone")).unwrap();
        std::os::unix::fs::symlink(root.join("outside"), root.join("sub")).unwrap();
        let err = read_capped(&path, was, 1 << 20).unwrap_err().to_string();
        assert!(err.contains("not the file listed there"), "{err}");
    }

    #[test]
    fn symlinks_in_the_tree_are_skipped_and_a_tree_named_through_one_is_walked() {
        let dir = tempfile::tempdir().unwrap();
        let assets = dir.path().join("assets");
        std::fs::create_dir_all(assets.join("mesh/lod")).unwrap();
        std::fs::write(assets.join("mesh/lod/a.bin"), b"a").unwrap();
        std::fs::create_dir_all(dir.path().join("outside")).unwrap();
        std::fs::write(dir.path().join("outside/secret.bin"), b"s").unwrap();
        use std::os::unix::fs::symlink;
        symlink(dir.path().join("outside"), assets.join("mesh/linked")).unwrap();
        symlink(dir.path().join("outside/secret.bin"), assets.join("mesh/b.bin")).unwrap();
        let named = dir.path().join("named");
        symlink(&assets, &named).unwrap();
        let found = collect(&named, &None).unwrap();
        let keys: Vec<_> = found.iter().map(|(key, ..)| key.as_str()).collect();
        assert_eq!(keys, ["mesh:mesh/lod/a.bin"], "the symlinks under the tree are skipped");
        let (_, path, id) = &found[0];
        assert_eq!(read_capped(path, *id, 1 << 20).unwrap(), b"a");
    }

    #[test]
    fn a_folder_swapped_for_a_symlink_while_the_tree_is_walked_is_not_listed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
        std::fs::create_dir_all(root.join("outside/deeper")).unwrap();
        std::fs::write(root.join("outside/deeper/a.bin"), b"secret").unwrap();
        let id_of = |entries: &[(PathBuf, FileType, FileId)], name: &str| {
            entries.iter().find(|(p, ..)| p.ends_with(name)).map(|(.., id)| *id).unwrap()
        };
        let top = list_folder(root, None).unwrap();
        let sub = id_of(&top, "sub");
        let deeper = id_of(&list_folder(&root.join("sub"), Some(sub)).unwrap(), "deeper");
        // Both were folders when listed; now `sub` leads outside the tree.
        std::fs::rename(root.join("sub"), root.join("gone")).unwrap();
        std::os::unix::fs::symlink(root.join("outside"), root.join("sub")).unwrap();
        let err = list_folder(&root.join("sub"), Some(sub)).unwrap_err();
        let os = err.root_cause().downcast_ref::<std::io::Error>().and_then(|e| e.raw_os_error());
        assert!(
            matches!(os, Some(libc::ENOTDIR | libc::ELOOP)),
            "a symlink is not opened as a folder: {err:#}"
        );
        let err = format!("{:#}", list_folder(&root.join("sub/deeper"), Some(deeper)).unwrap_err());
        assert!(err.contains("not the folder listed there"), "{err}");
    }

    #[test]
    fn a_pack_built_into_its_own_tree_is_not_packed_again_nor_a_killed_builds_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let assets = dir.path().join("assets");
        std::fs::create_dir_all(assets.join("blob")).unwrap();
        std::fs::write(assets.join("blob/a.bin"), b"a").unwrap();
        let pack = assets.join("blob/all.pack");
        build(&assets, &pack, Codec::Lz4, None).unwrap();
        // What a build killed while it wrote leaves beside the pack.
        std::fs::write(assets.join("blob/.all.pack.x1Y2z3.tmp"), b"half a pack").unwrap();
        build(&assets, &pack, Codec::Lz4, None).unwrap();
        let reader = PackReader::open(&pack, PackLimits::default()).unwrap();
        let keys: Vec<_> = reader.entries().iter().map(|e| e.key.clone()).collect();
        assert_eq!(keys, ["blob:blob/a.bin"]);
    }
}

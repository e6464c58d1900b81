//! Keys and sources stay inside their roots; packs serve their healthy entries whatever is
//! wrong with the others.

use std::os::unix::fs::symlink;

use streamrt::messages::ErrorKind;
use streamrt::pack::{Codec, PackLimits};
use streamrt::{DirSource, PackSource, Priority, ReadyError, RequestError, Runtime};
use streamrt_integration::{write_blob_pack, Blob, BlobDecoder, PATIENCE};

/// Keys that try to leave a source's root, one way or another.
const TRAVERSALS: [&str; 34] = [
    "..",
    "../x",
    "../../etc/passwd",
    "a/../../x",
    "a/b/../../../c",
    "x/..",
    "./a",
    "a/./b",
    ".",
    "a/.",
    "/etc/passwd",
    "/",
    "//server/share",
    "/..",
    "\\windows\\system32",
    "a\\..\\b",
    "..\\..\\x",
    "\\\\server\\share",
    "C:/x",
    "c:\\x",
    "D:",
    "z:relative",
    "a\0b",
    "a/\0",
    "\0",
    "",
    "a//b",
    "a/b/",
    "/a",
    "../",
    "a/../",
    "con/../../x",
    "ok/../../..",
    "../ok",
];

fn runtime(source: impl streamrt::Source) -> Runtime {
    Runtime::builder().source(source).register(BlobDecoder::default()).immediate().build().unwrap()
}

fn failure(rt: &Runtime, path: &str) -> ErrorKind {
    let h = rt.request::<Blob>(path, Priority::Normal).unwrap();
    match h.wait_timeout(PATIENCE).expect("ends") {
        Err(ReadyError::Failed(e)) => e.kind.clone(),
        other => panic!("{path}: expected a failure, got {other:?}"),
    }
}

#[test]
fn every_traversal_key_is_refused_before_any_read() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(DirSource::new(dir.path()));
    for path in TRAVERSALS {
        let refused = rt.request::<Blob>(path, Priority::Normal);
        assert!(matches!(refused, Err(RequestError::InvalidKey(_))), "{path:?} was accepted");
    }
    let long = "a".repeat(2_000);
    assert!(matches!(
        rt.request::<Blob>(&long, Priority::Normal),
        Err(RequestError::InvalidKey(_))
    ));
    assert_eq!(rt.status().requested, 0, "nothing reached a source");
}

#[test]
fn symlinks_out_of_the_root_are_denied_and_symlinks_inside_it_work() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), b"secret").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("inner")).unwrap();
    std::fs::write(root.join("inner/real"), b"inside").unwrap();
    symlink(outside.path().join("secret"), root.join("abs-file")).unwrap();
    // Denied as the one that exists: `NotFound` would tell that nothing is there.
    symlink(outside.path().join("nothing"), root.join("abs-missing")).unwrap();
    symlink(outside.path(), root.join("abs-dir")).unwrap();
    symlink("../../outside-link-target", root.join("inner/rel-up")).unwrap();
    std::fs::write(dir.path().join("outside-link-target"), b"sibling").unwrap();
    symlink(root.join("abs-file"), root.join("chain")).unwrap();
    symlink("real", root.join("inner/alias")).unwrap();
    // An absolute path that exists on any machine: this test binary.
    symlink(std::env::current_exe().unwrap(), root.join("system")).unwrap();
    let rt = runtime(DirSource::new(&root));
    let paths = ["abs-file", "abs-missing", "abs-dir/secret", "inner/rel-up", "chain", "system"];
    for path in paths {
        assert!(matches!(failure(&rt, path), ErrorKind::Denied(_)), "{path} escaped");
    }
    let alias = rt.request::<Blob>("inner/alias", Priority::Normal).unwrap();
    assert_eq!(alias.wait_timeout(PATIENCE).unwrap().unwrap().0, b"inside");
    assert!(matches!(failure(&rt, "inner/missing"), ErrorKind::NotFound));
    // Missing inside the root, whatever symlink leads there: not found, as with none.
    symlink("inner", root.join("current")).unwrap();
    symlink("inner/nothing", root.join("to-nothing")).unwrap();
    symlink(root.join("inner"), root.join("abs-inside")).unwrap();
    for path in ["current/missing", "to-nothing", "abs-inside/missing", "current/deeper/missing"] {
        assert!(matches!(failure(&rt, path), ErrorKind::NotFound), "{path}");
    }
}

#[test]
fn a_symlink_out_of_the_root_is_denied_in_a_folder_already_read_from() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), b"secret").unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("inner")).unwrap();
    std::fs::write(dir.path().join("inner/first"), b"first").unwrap();
    let rt = runtime(DirSource::new(dir.path()));
    let first = rt.request::<Blob>("inner/first", Priority::Normal).unwrap();
    assert_eq!(first.wait_timeout(PATIENCE).unwrap().unwrap().0, b"first");
    // The folder is now known to lie inside the root; its new entries are still checked.
    symlink(outside.path().join("secret"), dir.path().join("inner/late-link")).unwrap();
    std::fs::write(dir.path().join("inner/late-file"), b"late").unwrap();
    assert!(matches!(failure(&rt, "inner/late-link"), ErrorKind::Denied(_)), "escaped");
    let late = rt.request::<Blob>("inner/late-file", Priority::Normal).unwrap();
    assert_eq!(late.wait_timeout(PATIENCE).unwrap().unwrap().0, b"late");
    assert!(matches!(failure(&rt, "inner/missing"), ErrorKind::NotFound));
}

#[test]
fn a_folder_read_from_then_swapped_for_a_symlink_out_of_the_root_is_denied() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("next"), b"secret").unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("inner")).unwrap();
    std::fs::write(dir.path().join("inner/first"), b"first").unwrap();
    std::fs::write(dir.path().join("inner/next"), b"next").unwrap();
    let rt = runtime(DirSource::new(dir.path()));
    let first = rt.request::<Blob>("inner/first", Priority::Normal).unwrap();
    assert_eq!(first.wait_timeout(PATIENCE).unwrap().unwrap().0, b"first");
    // The tree is rewritten while the source reads: the folder it read from (and knows to lie
    // inside the root) becomes a symlink out of it.
    std::fs::rename(dir.path().join("inner"), dir.path().join("moved")).unwrap();
    symlink(outside.path(), dir.path().join("inner")).unwrap();
    assert!(matches!(failure(&rt, "inner/next"), ErrorKind::Denied(_)), "escaped");
}

#[test]
fn clones_of_a_dir_source_keep_the_root_the_first_read_resolved_when_it_is_repointed() {
    use streamrt::Source;
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), b"secret").unwrap();
    let base = tempfile::tempdir().unwrap();
    let (v1, v2, link) = (base.path().join("v1"), base.path().join("v2"), base.path().join("link"));
    std::fs::create_dir_all(v1.join("a")).unwrap();
    std::fs::write(v1.join("a/x"), b"x").unwrap();
    std::fs::create_dir_all(&v2).unwrap();
    symlink(outside.path(), v2.join("a")).unwrap();
    symlink(&v1, &link).unwrap();
    let first = DirSource::new(&link);
    let second = first.clone();
    let key = |k: &str| streamrt::messages::AssetKey::parse(k).unwrap();
    assert_eq!(first.read(&key("blob:a/x")).unwrap(), b"x");
    // A deploy swaps the root's symlink; `a`, remembered under the first root, is a symlink
    // out of the second.
    std::fs::remove_file(&link).unwrap();
    symlink(&v2, &link).unwrap();
    let read = second.read(&key("blob:a/secret"));
    assert!(matches!(read, Err(streamrt::SourceError::NotFound)), "escaped: {read:?}");
}

#[test]
fn a_key_that_cannot_name_a_file_is_not_found_at_once_not_retried() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("plain"), b"a file, not a folder").unwrap();
    let rt = runtime(DirSource::new(dir.path()));
    for path in ["plain/x".to_owned(), format!("{}/x", "n".repeat(300))] {
        let h = rt.request::<Blob>(&path, Priority::Normal).unwrap();
        match h.wait_timeout(PATIENCE).expect("ends") {
            Err(ReadyError::Failed(e)) => {
                assert_eq!((e.kind.clone(), e.attempt), (ErrorKind::NotFound, 1), "{path}");
            }
            other => panic!("{path}: {other:?}"),
        }
    }
}

#[test]
fn a_folder_reached_through_a_symlink_is_resolved_on_every_read() {
    let outside = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    std::fs::write(elsewhere.path().join("secret"), b"secret").unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("inner")).unwrap();
    std::fs::write(dir.path().join("inner/first"), b"first").unwrap();
    std::fs::write(dir.path().join("inner/second"), b"second").unwrap();
    // `via/hop` leads out of the root and back into `inner`: allowed, as it resolves inside.
    symlink(outside.path(), dir.path().join("via")).unwrap();
    symlink(dir.path().join("inner"), outside.path().join("hop")).unwrap();
    let rt = runtime(DirSource::new(dir.path()));
    let first = rt.request::<Blob>("via/hop/first", Priority::Normal).unwrap();
    assert_eq!(first.wait_timeout(PATIENCE).unwrap().unwrap().0, b"first");
    // Whoever owns the outside folder repoints the hop; the folder must not have been trusted.
    std::fs::remove_file(outside.path().join("hop")).unwrap();
    symlink(elsewhere.path(), outside.path().join("hop")).unwrap();
    assert!(matches!(failure(&rt, "via/hop/secret"), ErrorKind::Denied(_)), "escaped");
    std::fs::write(elsewhere.path().join("second"), b"outside").unwrap();
    assert!(matches!(failure(&rt, "via/hop/second"), ErrorKind::Denied(_)), "escaped");
}

#[test]
fn a_pack_serves_its_healthy_entries_while_a_corrupt_one_fails_typed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("assets.pack");
    let payload = |i: u8| -> Vec<u8> { (0..2_000u32).map(|j| (j % 31) as u8 ^ i).collect() };
    let codecs = [Codec::None, Codec::Lz4, Codec::Zstd];
    write_blob_pack(&path, (0..8u8).map(|i| (payload(i), codecs[usize::from(i) % 3], vec![])));
    let source = PackSource::open(&path, PackLimits::default()).unwrap();
    let victim = source.entries()[3].clone();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[(victim.offset + 5) as usize] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    let rt = runtime(PackSource::open(&path, PackLimits::default()).unwrap());
    assert!(matches!(failure(&rt, "e3"), ErrorKind::Corrupt(_)));
    for i in [0u8, 1, 2, 4, 5, 6, 7] {
        let h = rt.request::<Blob>(&format!("e{i}"), Priority::Normal).unwrap();
        assert_eq!(h.wait_timeout(PATIENCE).unwrap().unwrap().0, payload(i), "e{i}");
    }
    assert!(matches!(failure(&rt, "absent"), ErrorKind::NotFound));
    let small = PackLimits { entry_bytes_max: 1_000, ..PackLimits::default() };
    let rt = runtime(
        PackSource::open(dir.path().join("assets.pack"), small)
            .unwrap_or_else(|e| panic!("stored sizes fit, only raw sizes are over: {e}")),
    );
    assert!(matches!(failure(&rt, "e0"), ErrorKind::TooLarge { .. }));
}

//! The format against hostile input: every corruption gives a typed error, never a panic.

use std::path::{Path, PathBuf};

use crate::*;

fn payload(i: usize) -> Vec<u8> {
    // Compressible but not trivial: a repeating pattern with a varying tail.
    let mut v: Vec<u8> = (0..4_096).map(|j| (j % 97) as u8).collect();
    v.extend_from_slice(format!("entry-{i}").as_bytes());
    v
}

fn build(dir: &Path, codec: Codec) -> PathBuf {
    let path = dir.join(format!("test-{}.pack", codec.name()));
    let mut w = PackWriter::create(&path).unwrap();
    w.add("blob:base", &payload(0), codec, vec![]).unwrap();
    w.add("blob:a", &payload(1), codec, vec!["blob:base".into()]).unwrap();
    w.add("blob:b", &payload(2), codec, vec!["blob:a".into(), "blob:base".into()]).unwrap();
    w.finish().unwrap();
    path
}

#[test]
fn every_codec_round_trips_with_its_dependencies() {
    let dir = tempfile::tempdir().unwrap();
    for codec in [Codec::None, Codec::Lz4, Codec::Zstd] {
        let pack = PackReader::open(&build(dir.path(), codec), PackLimits::default()).unwrap();
        assert_eq!(pack.entries().len(), 3);
        let b = pack.entry("blob:b").unwrap();
        assert_eq!(b.codec, codec, "this payload compresses");
        assert_eq!(b.deps, ["blob:a", "blob:base"]);
        assert_eq!(pack.read(b).unwrap(), payload(2));
        assert!(pack.verify().is_empty());
    }
}

#[test]
fn an_entry_stored_larger_than_the_limit_is_refused_before_its_bytes_are_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let limits = PackLimits { entry_bytes_max: 64 << 10, ..PackLimits::default() };
    let pack = PackReader::open(&build(dir.path(), Codec::None), limits).unwrap();
    // A hostile index: a small raw size, a stored size past the limit.
    let hostile =
        IndexEntry { raw_size: 1_024, stored_size: 1 << 40, ..entry(Codec::Lz4, &[], 0, 0) };
    let refused = pack.read_with(&hostile, || panic!("the stored bytes were asked for"));
    assert_eq!(refused, Err(EntryError::TooLarge { size: 1 << 40, max: 64 << 10 }));
}

#[test]
fn a_read_into_a_used_buffer_overwrites_it_and_refuses_past_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let limits = PackLimits { entry_bytes_max: 64 << 10, ..PackLimits::default() };
    let pack = PackReader::open(&build(dir.path(), Codec::None), limits).unwrap();
    let a = pack.entry("blob:a").unwrap();
    let mut buf = vec![0xAA; 10_000];
    let len = usize::try_from(a.stored_size).unwrap();
    pack.read_stored_front(a.offset, a.stored_size, &mut buf).unwrap();
    assert_eq!(buf[..len], payload(1));
    assert!(buf[len..].iter().all(|&b| b == 0xAA), "no byte past the entry is read");
    // Past the initialised bytes, into spare capacity reserved for them (a capacity short
    // of the entry, as a kept buffer of a smaller window has): as many as asked, no more.
    let mut spare = Vec::with_capacity(100);
    spare.extend_from_slice(&[0xAA; 10]);
    pack.read_stored_front(a.offset, a.stored_size, &mut spare).unwrap();
    assert_eq!((spare.len(), &spare[..len]), (len, &payload(1)[..]));
    let refused = pack.read_stored_front(a.offset, (64 << 10) + 1, &mut buf);
    assert!(matches!(refused, Err(EntryError::TooLarge { .. })), "{refused:?}");
}

#[test]
fn a_pack_cut_short_after_it_was_opened_fails_the_entries_past_the_cut() {
    let dir = tempfile::tempdir().unwrap();
    let path = build(dir.path(), Codec::None);
    let pack = PackReader::open(&path, PackLimits::default()).unwrap();
    let (base, b) = (pack.entry("blob:base").unwrap(), pack.entry("blob:b").unwrap());
    // Cut inside `blob:b`: its read finds the end of the file, the entries before it still read.
    let cut = b.offset + 10;
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(cut).unwrap();
    assert_eq!(
        pack.read(b).unwrap_err(),
        EntryError::Corrupt(format!("the file ends at byte {cut}, in the entry"))
    );
    assert_eq!(pack.read(base).unwrap(), payload(0));
}

#[test]
fn a_flipped_byte_in_the_data_names_the_entry_and_spares_the_others() {
    let dir = tempfile::tempdir().unwrap();
    for codec in [Codec::None, Codec::Lz4, Codec::Zstd] {
        let path = build(dir.path(), codec);
        let a = PackReader::open(&path, PackLimits::default()).unwrap().entry("blob:a").cloned();
        let a = a.unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[(a.offset + a.stored_size / 2) as usize] ^= 0x10;
        std::fs::write(&path, &bytes).unwrap();
        let pack = PackReader::open(&path, PackLimits::default()).unwrap();
        let bad = pack.verify();
        assert_eq!(bad.len(), 1, "{codec:?}: {bad:?}");
        assert_eq!(bad[0].0, "blob:a");
        assert!(matches!(bad[0].1, EntryError::Corrupt(_)));
        assert_eq!(pack.read(pack.entry("blob:base").unwrap()).unwrap(), payload(0));
    }
}

#[test]
fn any_flipped_bit_in_the_header_or_index_is_refused_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = build(dir.path(), Codec::Lz4);
    let clean = std::fs::read(&path).unwrap();
    let index_at = u64::from_le_bytes(clean[16..24].try_into().unwrap()) as usize;
    let flipped = dir.path().join("flipped.pack");
    let positions = (0..HEADER_LEN as usize).chain(index_at..clean.len());
    for at in positions {
        for bit in [0, 3, 7] {
            let mut bytes = clean.clone();
            bytes[at] ^= 1 << bit;
            std::fs::write(&flipped, &bytes).unwrap();
            let result = PackReader::open(&flipped, PackLimits::default());
            assert!(result.is_err(), "bit {bit} of byte {at} went unnoticed");
        }
    }
}

#[test]
fn truncation_at_every_point_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = build(dir.path(), Codec::Zstd);
    let clean = std::fs::read(&path).unwrap();
    let cut = dir.path().join("cut.pack");
    for len in 0..clean.len() {
        std::fs::write(&cut, &clean[..len]).unwrap();
        let err = PackReader::open(&cut, PackLimits::default()).unwrap_err();
        if len < HEADER_LEN as usize {
            assert_eq!(err, PackError::Truncated { len: len as u64 });
        } else {
            assert!(matches!(err, PackError::IndexOutOfBounds { .. }), "cut at {len}: {err}");
        }
    }
}

#[test]
fn wrong_magic_and_unknown_versions_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = build(dir.path(), Codec::None);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[0] = b'X';
    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(PackReader::open(&path, PackLimits::default()).unwrap_err(), PackError::BadMagic);
    bytes[0] = b'S';
    bytes[8..12].copy_from_slice(&2u32.to_le_bytes());
    let crc = crc32fast::hash(&bytes[..36]);
    bytes[36..40].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(
        PackReader::open(&path, PackLimits::default()).unwrap_err(),
        PackError::UnsupportedVersion { found: 2 }
    );
}

#[test]
fn an_entry_larger_than_memory_is_refused_when_a_raised_limit_lets_it_through() {
    let stored = zstd::bulk::compress(b"small", 3).unwrap();
    // 4 EiB: no machine allocates it, and a failed allocation must not end the process.
    let huge = entry(Codec::Zstd, &stored, 1 << 62, 0);
    let refused = decode_entry(&huge, stored.clone(), u64::MAX).unwrap_err();
    assert_eq!(refused, EntryError::TooLarge { size: 1 << 62, max: u64::MAX });
}

#[test]
fn an_lz4_entry_claiming_more_than_its_stored_bytes_can_hold_is_corrupt_before_allocating() {
    // Within a raised limit, so only the stored size can refuse it before the allocation
    // (which would fail, or be made and cleared, for each read of the entry).
    let stored = lz4_flex::block::compress(b"small");
    let claimed = entry(Codec::Lz4, &stored, 1 << 62, 0);
    let refused = decode_entry(&claimed, stored.clone(), u64::MAX).unwrap_err();
    let EntryError::Corrupt(reason) = &refused else { panic!("{refused:?}") };
    assert!(reason.contains("cannot hold"), "{reason}");
    // LZ4's best ratio, on zeros, is within the bound: such an entry still decodes.
    let zeros = vec![0u8; 64 << 20];
    let stored = lz4_flex::block::compress(&zeros);
    let honest = entry(Codec::Lz4, &stored, zeros.len() as u64, crc32fast::hash(&zeros));
    assert_eq!(decode_entry(&honest, stored, 1 << 30).map(|raw| raw.len()), Ok(zeros.len()));
}

fn entry(codec: Codec, stored: &[u8], raw_size: u64, crc32: u32) -> IndexEntry {
    IndexEntry {
        key: "blob:bomb".into(),
        offset: HEADER_LEN,
        stored_size: stored.len() as u64,
        raw_size,
        codec,
        crc32,
        deps: vec![],
    }
}

#[test]
fn decompression_bombs_are_refused_before_allocating() {
    // 64 MiB of zeros compress to a few KiB; with a 1 MiB limit the claimed size is refused
    // before any buffer is made, and a smaller lie stops decompression at the claimed size.
    let zeros = vec![0u8; 64 << 20];
    let crc = crc32fast::hash(&zeros);
    for (codec, stored) in [
        (Codec::Lz4, lz4_flex::block::compress(&zeros)),
        (Codec::Zstd, zstd::bulk::compress(&zeros, 3).unwrap()),
    ] {
        assert!(stored.len() < 1 << 20, "{codec:?} bomb is small: {}", stored.len());
        let honest = entry(codec, &stored, zeros.len() as u64, crc);
        assert_eq!(
            decode_entry(&honest, stored.clone(), 1 << 20).unwrap_err(),
            EntryError::TooLarge { size: 64 << 20, max: 1 << 20 }
        );
        let lying = entry(codec, &stored, 4_096, crc);
        assert!(matches!(
            decode_entry(&lying, stored.clone(), 1 << 20),
            Err(EntryError::Corrupt(_))
        ));
        let huge = entry(codec, &stored, u64::MAX, crc);
        assert!(matches!(
            decode_entry(&huge, stored.clone(), 1 << 20),
            Err(EntryError::TooLarge { .. })
        ));
    }
}

#[test]
fn lying_sizes_in_the_index_are_refused() {
    let data_end = HEADER_LEN + 100;
    let check = |e: IndexEntry| {
        let bytes = postcard::to_allocvec(&PackIndex { entries: vec![e] }).unwrap();
        parse_index(&bytes, data_end).unwrap_err()
    };
    let base = entry(Codec::None, &[0; 10], 10, 0);
    let past_end = IndexEntry { stored_size: 200, raw_size: 200, ..base.clone() };
    assert!(matches!(check(past_end), PackError::BadEntry { .. }));
    let overflow = IndexEntry { offset: u64::MAX - 1, ..base.clone() };
    assert!(matches!(check(overflow), PackError::BadEntry { .. }));
    let in_header = IndexEntry { offset: 3, ..base.clone() };
    assert!(matches!(check(in_header), PackError::BadEntry { .. }));
    let uncompressed_lie = IndexEntry { raw_size: 11, ..base.clone() };
    assert!(matches!(check(uncompressed_lie), PackError::BadEntry { .. }));
    let traversal = IndexEntry { key: "blob:../etc/passwd".into(), ..base.clone() };
    assert!(matches!(check(traversal), PackError::BadEntry { .. }));
    let dangling = IndexEntry { deps: vec!["blob:nowhere".into()], ..base };
    assert!(matches!(check(dangling), PackError::BadEntry { .. }));
}

#[test]
fn building_rejects_cycles_and_missing_dependencies_naming_the_keys() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = PackWriter::create(&dir.path().join("cycle.pack")).unwrap();
    w.add("blob:a", b"a", Codec::None, vec!["blob:b".into()]).unwrap();
    w.add("blob:b", b"b", Codec::None, vec!["blob:c".into()]).unwrap();
    w.add("blob:c", b"c", Codec::None, vec!["blob:a".into()]).unwrap();
    let err = w.finish().unwrap_err().to_string();
    assert_eq!(err, "dependency cycle: blob:a -> blob:b -> blob:c -> blob:a");
    let mut w = PackWriter::create(&dir.path().join("missing.pack")).unwrap();
    w.add("material:m", b"m", Codec::None, vec!["texture:gone".into()]).unwrap();
    let err = w.finish().unwrap_err().to_string();
    assert_eq!(err, "missing dependencies: material:m -> texture:gone");
    let mut w = PackWriter::create(&dir.path().join("dup.pack")).unwrap();
    w.add("blob:x", b"x", Codec::None, vec![]).unwrap();
    assert!(matches!(w.add("blob:x", b"x", Codec::None, vec![]), Err(BuildError::Duplicate(_))));
    assert!(matches!(
        w.add("blob:/abs", b"x", Codec::None, vec![]),
        Err(BuildError::InvalidKey { .. })
    ));
}

proptest::proptest! {
    #[test]
    fn arbitrary_index_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
        let _ = parse_index(&bytes, 1 << 20);
    }

    #[test]
    fn arbitrary_stored_bytes_never_panic(
        bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512),
        raw_size in 0u64..100_000,
        zstd in proptest::bool::ANY,
    ) {
        let codec = if zstd { Codec::Zstd } else { Codec::Lz4 };
        let _ = decode_entry(&entry(codec, &bytes, raw_size, 0), bytes.clone(), 1 << 20);
    }
}

#[test]
fn a_named_pipe_a_socket_or_a_folder_is_not_a_pack_and_opening_one_does_not_wait() {
    let dir = tempfile::tempdir().unwrap();
    let pipe = dir.path().join("pipe");
    let owner_rw = rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR;
    rustix::fs::mkfifoat(rustix::fs::CWD, &pipe, owner_rw).expect("mkfifo");
    let (tx, rx) = std::sync::mpsc::channel();
    let opened = pipe.clone();
    std::thread::spawn(move || tx.send(PackReader::open(&opened, PackLimits::default()).err()));
    let err = rx.recv_timeout(std::time::Duration::from_secs(30)).unwrap_or_else(|_| {
        // A writer ends the blocked open, so the test fails rather than hangs.
        drop(std::fs::OpenOptions::new().write(true).open(&pipe));
        panic!("opening the pipe waited for a writer");
    });
    assert_eq!(err, Some(PackError::NotAFile));
    let folder = PackReader::open(dir.path(), PackLimits::default()).err();
    assert_eq!(folder, Some(PackError::NotAFile));
    let socket = dir.path().join("socket");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    assert_eq!(PackReader::open(&socket, PackLimits::default()).err(), Some(PackError::NotAFile));
}

/// The reason `parse_index` gives for `entries`, whose data region ends at 1,000 bytes.
fn refusal(entries: Vec<IndexEntry>) -> String {
    let bytes = postcard::to_allocvec(&PackIndex { entries }).unwrap();
    match parse_index(&bytes, 1_000).unwrap_err() {
        PackError::BadEntry { key, reason } => format!("{key}: {reason}"),
        other => panic!("not a bad entry: {other}"),
    }
}

/// An empty entry `key` at `offset` depending on `deps`.
fn at(key: &str, offset: u64, deps: &[&str]) -> IndexEntry {
    let deps = deps.iter().map(|d| (*d).to_owned()).collect();
    IndexEntry { key: key.into(), offset, ..IndexEntry { deps, ..entry(Codec::None, &[], 0, 0) } }
}

#[test]
fn an_index_with_a_dependency_cycle_or_too_many_dependencies_is_refused() {
    let own = refusal(vec![at("blob:a", 40, &["blob:a"])]);
    assert_eq!(own, "blob:a: dependency cycle: blob:a -> blob:a");
    let cycle = refusal(vec![at("blob:a", 40, &["blob:b"]), at("blob:b", 40, &["blob:a"])]);
    assert_eq!(cycle, "blob:a: dependency cycle: blob:a -> blob:b -> blob:a");
    // Older writers let a repeated dependency through: such a pack still opens.
    let twice = vec![at("blob:a", 40, &["blob:b", "blob:b"]), at("blob:b", 40, &[])];
    let bytes = postcard::to_allocvec(&PackIndex { entries: twice }).unwrap();
    assert!(parse_index(&bytes, 1_000).is_ok());
    let names: Vec<String> = (0..=DEPS_PER_ENTRY_MAX).map(|i| format!("blob:d{i}")).collect();
    let mut many: Vec<IndexEntry> = names.iter().map(|k| at(k, 40, &[])).collect();
    let deps: Vec<&str> = names.iter().map(String::as_str).collect();
    many.push(at("blob:root", 40, &deps));
    assert_eq!(refusal(many), "blob:root: 1025 dependencies, over the limit of 1024");
}

#[test]
fn a_long_chain_and_shared_dependencies_pass_and_a_cycle_behind_them_is_named() {
    // Each entry depends on the next: a walk as deep as the pack, which a recursive search
    // would overflow the stack on.
    let keys: Vec<String> = (0..200_000).map(|i| format!("blob:c{i}")).collect();
    let next = |i: usize| keys.get(i + 1).map(String::as_str);
    let mut chain: Vec<IndexEntry> =
        (0..keys.len()).map(|i| at(&keys[i], 40, next(i).as_slice())).collect();
    // A diamond: `d` is reached twice and searched once.
    chain.push(at("blob:a", 40, &["blob:b", "blob:c", "blob:c0"]));
    chain.push(at("blob:b", 40, &["blob:d"]));
    chain.push(at("blob:c", 40, &["blob:d"]));
    chain.push(at("blob:d", 40, &[]));
    let bytes = postcard::to_allocvec(&PackIndex { entries: chain.clone() }).unwrap();
    assert!(parse_index(&bytes, 1_000).is_ok());
    // A cycle among entries searched after every other one was done.
    chain.push(at("blob:x", 40, &["blob:d", "blob:y"]));
    chain.push(at("blob:y", 40, &["blob:c7", "blob:x"]));
    assert_eq!(refusal(chain), "blob:x: dependency cycle: blob:x -> blob:y -> blob:x");
}

#[test]
fn a_key_found_twice_is_refused_as_such_before_the_entries_after_it_are_checked() {
    let copied = |key: &str| IndexEntry { stored_size: 100, raw_size: 100, ..at(key, 40, &[]) };
    // The second record is a copy of the first: it overlaps it too, but the key says more.
    let twice = refusal(vec![copied("blob:a"), copied("blob:a"), at("blob:b", 9_999, &[])]);
    assert_eq!(twice, "blob:a: appears twice");
}

#[test]
fn entries_out_of_file_order_or_overlapping_are_refused() {
    let sized = |key: &str, offset: u64, size: u64| IndexEntry {
        stored_size: size,
        raw_size: size,
        ..at(key, offset, &[])
    };
    let overlapping = refusal(vec![sized("blob:a", 40, 100), sized("blob:b", 100, 100)]);
    assert_eq!(overlapping, "blob:b: starts at 100, before the previous entry's end 140");
    let shared = refusal(vec![sized("blob:a", 40, 100), sized("blob:b", 40, 100)]);
    assert!(shared.starts_with("blob:b: starts at 40"), "{shared}");
    let backwards = refusal(vec![sized("blob:a", 200, 10), sized("blob:b", 40, 10)]);
    assert!(backwards.starts_with("blob:b: starts at 40"), "{backwards}");
    let adjacent = vec![sized("blob:a", 40, 100), sized("blob:b", 140, 0), sized("blob:c", 140, 5)];
    let bytes = postcard::to_allocvec(&PackIndex { entries: adjacent }).unwrap();
    assert!(parse_index(&bytes, 1_000).is_ok(), "back to back, empty entries included");
}

#[test]
fn bytes_after_the_index_or_a_reserved_flag_are_refused() {
    let mut bytes = postcard::to_allocvec(&PackIndex { entries: vec![at("blob:a", 40, &[])] });
    let bytes = bytes.as_mut().unwrap();
    bytes.push(0);
    assert_eq!(
        parse_index(bytes, 1_000).unwrap_err(),
        PackError::IndexDecode("1 bytes after the index".into())
    );
    let dir = tempfile::tempdir().unwrap();
    let path = build(dir.path(), Codec::None);
    let mut pack = std::fs::read(&path).unwrap();
    pack[12] = 1;
    let crc = crc32fast::hash(&pack[..36]);
    pack[36..40].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&path, &pack).unwrap();
    let refused = PackReader::open(&path, PackLimits::default()).unwrap_err();
    assert_eq!(refused, PackError::UnknownFlags { flags: 1 });
}

#[test]
fn an_index_of_4_gib_or_more_is_refused_before_it_is_read_whatever_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge-index.pack");
    let index_len = INDEX_BYTES_CEILING + 1;
    // The reader must not read the index's bytes, nor make room for them.
    claiming_an_index_of(&path, index_len);
    let limits = PackLimits { index_bytes_max: u64::MAX, ..PackLimits::default() };
    let refused = PackReader::open(&path, limits).unwrap_err();
    assert_eq!(refused, PackError::IndexTooLarge { len: index_len, max: INDEX_BYTES_CEILING });
}

/// A sparse pack at `path` whose header claims an index of `index_len` bytes.
fn claiming_an_index_of(path: &Path, index_len: u64) {
    let header = Header { version: VERSION, index_at: HEADER_LEN, index_len, index_crc: 0 };
    let file = std::fs::File::create(path).unwrap();
    std::io::Write::write_all(&mut &file, &header.encode()).unwrap();
    // Sparse: the index's bytes take no room.
    file.set_len(HEADER_LEN + index_len).unwrap();
}

/// Set in the child process of the test below, which limits its own address space.
const LOW_MEMORY_CHILD: &str = "STREAMRT_PACK_TEST_LOW_MEMORY_CHILD";

#[test]
fn an_index_within_a_raised_limit_but_past_what_memory_allows_is_refused_not_an_abort() {
    const NAME: &str =
        "tests::an_index_within_a_raised_limit_but_past_what_memory_allows_is_refused_not_an_abort";
    if std::env::var_os(LOW_MEMORY_CHILD).is_none() {
        // An allocation that fails aborts the process: only a child can show it does not.
        let exe = std::env::current_exe().unwrap();
        let child = std::process::Command::new(exe)
            .args(["--exact", NAME, "--test-threads=1", "--nocapture"])
            .env(LOW_MEMORY_CHILD, "1")
            .output()
            .unwrap();
        let told = String::from_utf8_lossy(&child.stderr);
        assert!(child.status.success(), "{:?}: {told}", child.status);
        assert!(String::from_utf8_lossy(&child.stdout).contains("1 passed"), "{told}");
        return;
    }
    let space = rustix::process::Rlimit { current: Some(1 << 30), maximum: Some(1 << 30) };
    rustix::process::setrlimit(rustix::process::Resource::As, space).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("large-index.pack");
    let index_len = 2 << 30;
    claiming_an_index_of(&path, index_len);
    let limits = PackLimits { index_bytes_max: u64::MAX, ..PackLimits::default() };
    let refused = PackReader::open(&path, limits).unwrap_err();
    assert_eq!(refused, PackError::IndexTooLarge { len: index_len, max: INDEX_BYTES_CEILING });
}

#[test]
fn a_pack_named_as_long_as_a_file_name_may_be_is_built_and_its_temporary_file_is_known() {
    let dir = tempfile::tempdir().unwrap();
    // 255 bytes, the most a file name holds; the temporary file's name is cut to fit.
    for name in [format!("{}.pack", "a".repeat(250)), format!("{}.pack", "é".repeat(125))] {
        let path = dir.path().join(&name);
        let mut w = PackWriter::create(&path).unwrap();
        let temporary = w.temporary_path().to_owned();
        assert!(PackWriter::is_temporary_of(&temporary, &path), "{}", temporary.display());
        w.add("blob:a", &payload(0), Codec::Lz4, vec![]).unwrap();
        w.finish().unwrap();
        let pack = PackReader::open(&path, PackLimits::default()).unwrap();
        assert_eq!(pack.read(pack.entry("blob:a").unwrap()).unwrap(), payload(0));
    }
    let pack = dir.path().join("assets.pack");
    let named = |name: &str| dir.path().join(name);
    assert!(PackWriter::is_temporary_of(&named(".assets.pack.Ab3xYz.tmp"), &pack));
    for other in
        [".assets.pack.Ab3xYz.tmp.bak", ".assets.pack.tmp", "assets.pack", ".other.Ab3xYz.tmp"]
    {
        assert!(!PackWriter::is_temporary_of(&named(other), &pack), "{other}");
    }
    assert!(!PackWriter::is_temporary_of(Path::new("/elsewhere/.assets.pack.Ab3xYz.tmp"), &pack));
}

#[test]
fn the_writer_counts_the_entries_its_codec_made_smaller() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = PackWriter::create(&dir.path().join("counted.pack")).unwrap();
    // Too short for lz4 to save anything: stored as is.
    w.add("blob:short", b"ab", Codec::Lz4, vec![]).unwrap();
    w.add("blob:long", &payload(0), Codec::Lz4, vec![]).unwrap();
    w.add("blob:plain", &payload(1), Codec::None, vec![]).unwrap();
    assert_eq!(w.compressed_entries(), 1);
    w.finish().unwrap();
}

#[test]
fn the_writer_refuses_what_its_reader_would_within_the_same_limits() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = PackWriter::create(&dir.path().join("twice.pack")).unwrap();
    w.add("blob:a", b"a", Codec::None, vec!["blob:b".into(), "blob:b".into()]).unwrap();
    w.add("blob:b", b"b", Codec::None, vec![]).unwrap();
    assert_eq!(w.finish().unwrap_err().to_string(), "blob:a depends on blob:b twice");
    let limits = PackLimits { index_bytes_max: 200, entry_bytes_max: 8 };
    let mut w = PackWriter::create_with_limits(&dir.path().join("small.pack"), limits).unwrap();
    let large = w.add("blob:large", &[0; 9], Codec::None, vec![]).unwrap_err();
    assert!(matches!(large, BuildError::TooLarge { size: 9, max: 8, .. }), "{large}");
    for i in 0..20 {
        w.add(&format!("blob:entry-{i}"), &[0; 8], Codec::None, vec![]).unwrap();
    }
    let index = w.finish().unwrap_err();
    assert!(matches!(index, BuildError::IndexTooLarge { max: 200, .. }), "{index}");
}

#[test]
fn the_writers_dependency_errors_come_in_one_order_whatever_the_entries_order() {
    let dir = tempfile::tempdir().unwrap();
    let refusal = |entries: &[(&str, &[&str])]| {
        let mut w = PackWriter::create(&dir.path().join("order.pack")).unwrap();
        for (key, deps) in entries {
            let deps = deps.iter().map(|d| (*d).to_owned()).collect();
            w.add(key, b"x", Codec::None, deps).unwrap();
        }
        w.finish().unwrap_err().to_string()
    };
    // A repeat comes before missing dependencies, before or after them in the index.
    let repeat_last = refusal(&[("blob:a", &["blob:gone"]), ("blob:b", &["blob:a", "blob:a"])]);
    assert_eq!(repeat_last, "blob:b depends on blob:a twice");
    let repeat_first = refusal(&[("blob:b", &["blob:a", "blob:a"]), ("blob:a", &["blob:gone"])]);
    assert_eq!(repeat_first, "blob:b depends on blob:a twice");
    // Past the missing dependencies an error lists, too.
    let gone: Vec<String> = (0..=MISSING_LISTED_MAX).map(|i| format!("blob:gone{i}")).collect();
    let gone: Vec<&str> = gone.iter().map(String::as_str).collect();
    let after_many = refusal(&[("blob:a", &gone), ("blob:b", &["blob:a", "blob:a"])]);
    assert_eq!(after_many, "blob:b depends on blob:a twice");
    // A missing dependency named twice is missing, listed as named.
    let gone_twice = refusal(&[("blob:a", &["blob:gone", "blob:gone"])]);
    assert_eq!(gone_twice, "missing dependencies: blob:a -> blob:gone, blob:a -> blob:gone");
    // Too many dependencies come before a repeat among them.
    let names: Vec<String> = (0..DEPS_PER_ENTRY_MAX).map(|i| format!("blob:d{i}")).collect();
    let mut many: Vec<&str> = names.iter().map(String::as_str).collect();
    many.push("blob:d0");
    let mut entries: Vec<(&str, &[&str])> = names.iter().map(|n| (n.as_str(), &[][..])).collect();
    entries.push(("blob:root", &many));
    assert_eq!(refusal(&entries), "blob:root: 1025 dependencies, over the limit of 1024");
}

#[test]
fn a_failed_or_dropped_build_leaves_the_pack_at_its_path_as_it_was_and_no_other_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = build(dir.path(), Codec::Lz4);
    let before = std::fs::read(&path).unwrap();
    let mut w = PackWriter::create(&path).unwrap();
    w.add("blob:a", b"a", Codec::None, vec!["blob:a".into()]).unwrap();
    assert!(matches!(w.finish(), Err(BuildError::Cycle(_))));
    let mut w = PackWriter::create(&path).unwrap();
    w.add("blob:b", b"b", Codec::None, vec![]).unwrap();
    drop(w);
    assert_eq!(std::fs::read(&path).unwrap(), before);
    let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files, vec![path.clone()], "no temporary file left behind");
    // A finished build replaces the pack, with the mode a plainly created file gets.
    let mut w = PackWriter::create(&path).unwrap();
    w.add("blob:c", b"c", Codec::None, vec![]).unwrap();
    w.finish().unwrap();
    let pack = PackReader::open(&path, PackLimits::default()).unwrap();
    assert_eq!(pack.entries().len(), 1);
    let plain = dir.path().join("plain");
    std::fs::File::create(&plain).unwrap();
    use std::os::unix::fs::MetadataExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o777;
    assert_eq!(mode(&path), mode(&plain));
}

#[test]
fn a_pack_missing_many_dependencies_lists_only_the_first_few() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = PackWriter::create(&dir.path().join("missing.pack")).unwrap();
    for i in 0..64 {
        let deps = (0..1_024).map(|j| format!("blob:missing{j}")).collect();
        writer.add(&format!("blob:e{i}"), b"x", Codec::None, deps).unwrap();
    }
    match writer.finish() {
        Err(BuildError::MissingDependencies(pairs)) => {
            assert_eq!(pairs.len(), crate::MISSING_LISTED_MAX, "65,536 missing, a few listed");
            assert_eq!(pairs[0], ("blob:e0".to_owned(), "blob:missing0".to_owned()));
        }
        other => panic!("{other:?}"),
    }
}

/// Whether the graph of `deps` (entry `i` depends on each of `deps[i]`) has a cycle, by
/// Kahn's algorithm: a reference the depth-first search is checked against.
fn has_cycle(deps: &[Vec<usize>]) -> bool {
    let mut users = vec![0usize; deps.len()];
    for ds in deps {
        let mut unique = ds.clone();
        unique.sort_unstable();
        unique.dedup();
        for d in unique {
            users[d] += 1;
        }
    }
    let mut free: Vec<usize> = (0..deps.len()).filter(|&i| users[i] == 0).collect();
    let mut removed = 0;
    while let Some(i) = free.pop() {
        removed += 1;
        let mut unique = deps[i].clone();
        unique.sort_unstable();
        unique.dedup();
        for d in unique {
            users[d] -= 1;
            if users[d] == 0 {
                free.push(d);
            }
        }
    }
    removed < deps.len()
}

proptest::proptest! {
    #[test]
    fn the_graph_check_finds_a_cycle_exactly_when_there_is_one_and_names_a_real_one(
        deps in proptest::collection::vec(proptest::collection::vec(0usize..10, 0..4), 1..10),
    ) {
        let n = deps.len();
        let deps: Vec<Vec<usize>> =
            deps.into_iter().map(|ds| ds.into_iter().map(|d| d % n).collect()).collect();
        let keys: Vec<String> = (0..n).map(|i| format!("blob:n{i}")).collect();
        let entries: Vec<IndexEntry> = deps
            .iter()
            .zip(&keys)
            .map(|(ds, key)| {
                let names: Vec<&str> = ds.iter().map(|&d| keys[d].as_str()).collect();
                at(key, 40, &names)
            })
            .collect();
        let bytes = postcard::to_allocvec(&PackIndex { entries }).unwrap();
        match parse_index(&bytes, 1_000) {
            Ok(_) => proptest::prop_assert!(!has_cycle(&deps), "a cycle was missed: {deps:?}"),
            Err(PackError::BadEntry { reason, .. }) => {
                proptest::prop_assert!(has_cycle(&deps), "no cycle, yet refused: {reason}");
                let named = reason.strip_prefix("dependency cycle: ").expect("a cycle's reason");
                let path: Vec<usize> = named
                    .split(" -> ")
                    .map(|k| keys.iter().position(|key| key == k).expect("a key of the pack"))
                    .collect();
                proptest::prop_assert_eq!(path.first(), path.last());
                for step in path.windows(2) {
                    proptest::prop_assert!(deps[step[0]].contains(&step[1]), "{named}");
                }
            }
            Err(other) => proptest::prop_assert!(false, "{other}"),
        }
    }
}

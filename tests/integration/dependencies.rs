//! Dependencies: publish order along chains, shared dependencies, failures and cancellation
//! flowing up and down the tree, priority inheritance, byte-weighted progress, and trees a
//! source gets wrong.

use streamrt::messages::{AssetKey, ErrorKind, EventKind};
use streamrt::{wait_loaded, ConfigError, LoadState, Priority, ReadyError, RuntimeConfig};
use streamrt_integration::{wait_decoded, Blob, BlobDecoder, GatedSource, TextDecoder, PATIENCE};

use crate::{one_read_held, runtime};

fn key(k: &str) -> AssetKey {
    AssetKey::parse(k).expect("valid key")
}

/// The keys published, in order, among `watched`.
fn published_order(events: &streamrt::EventStream, watched: &[&str]) -> Vec<String> {
    let mut order = Vec::new();
    while order.len() < watched.len() {
        let event = events.next_timeout(PATIENCE).expect("every watched request publishes");
        if event.kind != EventKind::Published {
            continue;
        }
        let published = event.key.map(|k| k.to_string()).unwrap_or_default();
        if watched.contains(&published.as_str()) {
            order.push(published);
        }
    }
    order
}

#[test]
fn a_chain_across_types_publishes_its_root_only_after_every_dependency_is_ready() {
    let source = GatedSource::default();
    source.put_with_deps("blob:root", b"root", &["text:mid"]);
    source.put_with_deps("text:mid", b"mid", &["blob:leaf"]);
    source.put_with_deps("blob:leaf", b"leaf", &[]);
    source.gate.hold("leaf");
    let rt = runtime(&source, &BlobDecoder::default(), |b| b.register(TextDecoder).immediate());
    let events = rt.subscribe(4096);
    let root = rt.request::<Blob>("root", Priority::Normal).unwrap();
    wait_decoded(&events, root.id());
    // Not loaded: its dependencies are not.
    assert!(!wait_loaded(std::slice::from_ref(&root), std::time::Duration::from_millis(20)));
    assert!(rt.sync(PATIENCE));
    assert_eq!(root.state(), LoadState::Decoded, "decoded, held back by its dependencies");
    source.gate.release("leaf");
    let value = root.wait_timeout(PATIENCE).unwrap().expect("the chain loads");
    assert_eq!(value.0, b"root");
    let order = published_order(&events, &["blob:leaf", "text:mid", "blob:root"]);
    assert_eq!(order, ["blob:leaf", "text:mid", "blob:root"], "leaves publish first");
}

#[test]
fn the_deepest_chain_allowed_loads_on_a_small_stack_and_a_deeper_one_fails_typed() {
    let max = streamrt::DEPENDENCY_DEPTH_MAX;
    let source = GatedSource::default();
    // `blob:c0` depends on `blob:c1`, and so on: `max + 2` levels below `c0` in all.
    for i in 0..=max + 2 {
        let dep = format!("blob:c{}", i + 1);
        let deps: &[&str] = if i <= max + 1 { &[dep.as_str()] } else { &[] };
        source.put_with_deps(&format!("blob:c{i}"), b"link", deps);
    }
    let config = RuntimeConfig { dependency_depth_max: max, ..RuntimeConfig::default() };
    let rt = runtime(&source, &BlobDecoder::default(), |b| b.config(config).immediate());
    // Requested by recursion on the caller's thread: a thread of 1 MiB, half of what
    // Rust gives a spawned thread.
    let request = |path: &str| {
        std::thread::scope(|scope| {
            let on_small_stack = std::thread::Builder::new().stack_size(1 << 20);
            let asked =
                on_small_stack.spawn_scoped(scope, || rt.request::<Blob>(path, Priority::Normal));
            asked.unwrap().join().expect("no stack overflow").unwrap()
        })
    };
    let allowed = request("c2");
    assert!(allowed.wait_timeout(PATIENCE).unwrap().is_ok(), "{max} levels below c2 load");
    let deeper = request("c0");
    let error = deeper.wait_timeout(PATIENCE).unwrap().unwrap_err();
    assert!(error.to_string().contains(&format!("deeper than {max}")), "{error}");
    let past = RuntimeConfig { dependency_depth_max: max + 1, ..RuntimeConfig::default() };
    assert_eq!(past.validate(), Err(ConfigError::TooLarge { name: "dependency_depth_max", max }));
}

#[test]
fn a_chain_made_of_shared_dependencies_meets_the_depth_limit_as_one_made_anew() {
    // `r` lists a1..a10, and each a(i) depends on a(i-1): a chain ten deep, which a walk that
    // shares a(i-1) with a(i) would otherwise never see (each is made at depth 1).
    let source = GatedSource::default();
    let links: Vec<String> = (1..=10).map(|i| format!("blob:a{i}")).collect();
    let listed: Vec<&str> = links.iter().map(String::as_str).collect();
    source.put_with_deps("blob:r", b"r", &listed);
    source.put_with_deps("blob:a1", b"a1", &[]);
    for i in 2..=10 {
        source.put_with_deps(&links[i - 1], b"link", &[listed[i - 2]]);
    }
    let load = |depth_max: usize| {
        let config = RuntimeConfig { dependency_depth_max: depth_max, ..RuntimeConfig::default() };
        let rt = runtime(&source, &BlobDecoder::default(), |b| b.config(config).immediate());
        let r = rt.request::<Blob>("r", Priority::Normal).unwrap();
        let ended =
            r.wait_timeout(PATIENCE).expect("r ends").map(|_| ()).map_err(|e| e.to_string());
        rt.shutdown();
        ended
    };
    assert_eq!(load(10), Ok(()), "ten levels below r are allowed");
    let error = load(4).unwrap_err();
    assert!(error.contains("deeper than 4"), "{error}");
}

#[test]
fn a_dependency_shared_by_two_assets_loads_once_and_serves_both() {
    let source = GatedSource::default();
    source.put_with_deps("blob:m1", b"m1", &["blob:shared"]);
    source.put_with_deps("blob:m2", b"m2", &["blob:shared"]);
    source.put_with_deps("blob:shared", b"shared", &[]);
    source.gate.hold("shared");
    let rt = runtime(&source, &BlobDecoder::default(), |b| b.immediate());
    let m1 = rt.request::<Blob>("m1", Priority::Normal).unwrap();
    let m2 = rt.request::<Blob>("m2", Priority::Normal).unwrap();
    source.gate.wait_started("shared", 1);
    assert!(rt.sync(PATIENCE));
    source.gate.release("shared");
    m1.wait_timeout(PATIENCE).unwrap().expect("m1 loads");
    m2.wait_timeout(PATIENCE).unwrap().expect("m2 loads");
    assert_eq!(source.gate.started_count("shared"), 1, "one load for both dependents");
}

#[test]
fn a_failed_dependency_fails_every_dependent_up_the_chain_naming_it_and_its_cause() {
    let source = GatedSource::default();
    source.put_with_deps("blob:root", b"root", &["blob:mid"]);
    source.put_with_deps("blob:mid", b"mid", &["blob:missing"]);
    let rt = runtime(&source, &BlobDecoder::default(), |b| b.immediate());
    let root = rt.request::<Blob>("root", Priority::Normal).unwrap();
    let Some(Err(ReadyError::Failed(error))) = root.wait_timeout(PATIENCE) else {
        panic!("the root fails: {:?}", root.state());
    };
    let ErrorKind::DependencyFailed { dependency, cause } = &error.kind else {
        panic!("not a dependency failure: {error}");
    };
    assert_eq!(*dependency, key("blob:mid"));
    assert!(cause.contains("blob:missing") && cause.contains("not found"), "{cause}");
    let healthy = rt.request::<Blob>("mid", Priority::Normal);
    assert!(healthy.is_ok(), "the runtime keeps serving");
}

#[test]
fn a_dependent_failed_by_its_dependency_lets_go_of_its_own_load_while_its_handle_is_kept() {
    let source = GatedSource::default();
    source.put_with_deps("blob:root", b"root", &["blob:missing"]);
    source.gate.hold("root");
    source.gate.hold("missing");
    let rt = runtime(&source, &BlobDecoder::default(), |b| b.immediate());
    let root = rt.request::<Blob>("root", Priority::Normal).unwrap();
    source.gate.wait_started("root", 1);
    source.gate.wait_started("missing", 1);
    source.gate.release("missing");
    let Some(Err(ReadyError::Failed(error))) = root.wait_timeout(PATIENCE) else {
        panic!("the root fails: {:?}", root.state());
    };
    assert!(matches!(error.kind, ErrorKind::DependencyFailed { .. }), "{error}");
    // The root's read is still held; its load must go all the same, its handle kept.
    let mut syncs = 0;
    let holders = |rt: &streamrt::Runtime| rt.cache_stats(PATIENCE)[0].holders;
    while holders(&rt) > 0 && syncs < 1_000 {
        assert!(rt.sync(PATIENCE));
        syncs += 1;
    }
    let stats = &rt.cache_stats(PATIENCE)[0];
    assert_eq!((stats.holders, stats.entries), (0, 0), "the failed root still holds its load");
    source.gate.release("root");
    assert_eq!(root.state(), LoadState::Failed);
}

#[test]
fn cancelling_an_asset_releases_the_dependencies_only_it_held() {
    let source = GatedSource::with_blobs(1);
    source.put_with_deps("blob:d1", b"d1", &["blob:shared", "blob:only1"]);
    source.put_with_deps("blob:d2", b"d2", &["blob:shared"]);
    source.put_with_deps("blob:shared", b"shared", &[]);
    source.put_with_deps("blob:only1", b"only1", &[]);
    let (rt, blocker) = one_read_held(&source, Priority::Critical);
    let d1 = rt.request::<Blob>("d1", Priority::Normal).unwrap();
    let d2 = rt.request::<Blob>("d2", Priority::Normal).unwrap();
    assert!(rt.sync(PATIENCE));
    d1.cancel();
    assert!(rt.sync(PATIENCE));
    source.gate.release("a0");
    let mut frames = 0;
    while !d2.is_terminal() && frames < 10_000 {
        rt.tick();
        assert!(rt.sync(PATIENCE));
        frames += 1;
    }
    assert!(matches!(d2.outcome(), Some(Ok(_))), "the other dependent keeps its load");
    assert!(blocker.outcome().is_some_and(|o| o.is_ok()));
    assert_eq!(d1.outcome(), Some(Err(ReadyError::Cancelled)));
    assert_eq!(source.gate.started_count("only1"), 0, "a dependency only d1 held is dropped");
    assert_eq!(source.gate.started_count("shared"), 1);
}

#[test]
fn a_dependency_inherits_the_most_urgent_priority_and_reprioritising_propagates() {
    let source = GatedSource::with_blobs(1);
    source.put_with_deps("blob:root", b"root", &["blob:dep"]);
    source.put_with_deps("blob:dep", b"dep", &[]);
    source.put_with_deps("blob:other", b"other", &[]);
    let (rt, blocker) = one_read_held(&source, Priority::Critical);
    // The engine wants `dep` itself at Low, before anything depends on it.
    let dep_direct = rt.request::<Blob>("dep", Priority::Low).unwrap();
    let other = rt.request::<Blob>("other", Priority::Normal).unwrap();
    let root = rt.request::<Blob>("root", Priority::Low).unwrap();
    assert!(rt.sync(PATIENCE));
    root.reprioritize(Priority::Critical);
    assert!(rt.sync(PATIENCE));
    source.gate.release("a0");
    let deadline = std::time::Instant::now() + PATIENCE;
    for handle in [&dep_direct, &other, &root, &blocker] {
        while !handle.is_terminal() {
            assert!(std::time::Instant::now() < deadline, "{handle:?} never ended");
            rt.tick();
            assert!(rt.sync(PATIENCE));
        }
    }
    let started = source.gate.started();
    let position = |name: &str| started.iter().position(|s| s == name).expect("read");
    assert!(
        position("dep") < position("other") && position("root") < position("other"),
        "the critical root and its dependency are read before the normal request: {started:?}"
    );
}

#[test]
fn progress_is_weighted_by_bytes_over_the_tree_and_never_goes_backwards() {
    let source = GatedSource::default();
    source.put_with_deps("blob:small", &[1; 10], &["blob:large"]);
    source.put_with_deps("blob:large", &[2; 1000], &[]);
    source.gate.hold("large");
    let rt = runtime(&source, &BlobDecoder::default(), |b| b.immediate());
    let events = rt.subscribe(4096);
    let handle = rt.request::<Blob>("small", Priority::Normal).unwrap();
    let first = handle.progress();
    assert_eq!(first.total, 1010, "weighted by the sizes the source declares");
    wait_decoded(&events, handle.id());
    let middle = handle.progress();
    assert_eq!(
        (middle.done, middle.total),
        (10, 1010),
        "the small root decoded, not its dependency"
    );
    source.gate.release("large");
    // Sampled as the dependency ends and the tree is published: never below a sample before.
    let deadline = std::time::Instant::now() + PATIENCE;
    let mut seen = middle.done;
    while !handle.state().is_terminal() && std::time::Instant::now() < deadline {
        let now = handle.progress();
        assert!(now.done >= seen && now.total == 1010, "{now:?} after {seen}");
        seen = now.done;
        std::thread::yield_now();
    }
    handle.wait_timeout(PATIENCE).unwrap().expect("the tree loads");
    assert_eq!(handle.progress(), streamrt::ByteProgress { done: 1010, total: 1010 });
    assert!((handle.progress().fraction() - 1.0).abs() < f64::EPSILON);
}

#[test]
fn a_cycle_a_source_reports_fails_the_request_instead_of_recursing_forever() {
    let source = GatedSource::with_blobs(1);
    source.put_with_deps("blob:a", b"a", &["blob:b"]);
    source.put_with_deps("blob:b", b"b", &["blob:a"]);
    source.put_with_deps("blob:c", b"c", &["nodecoder:x"]);
    let rt = runtime(&source, &BlobDecoder::default(), |b| b.immediate());
    let cyclic = rt.request::<Blob>("a", Priority::Normal).unwrap();
    let Some(Err(ReadyError::Failed(error))) = cyclic.wait_timeout(PATIENCE) else {
        panic!("the cycle fails");
    };
    assert!(error.to_string().contains("cycle: blob:a -> blob:b -> blob:a"), "{error}");
    let unknown = rt.request::<Blob>("c", Priority::Normal).unwrap();
    let Some(Err(ReadyError::Failed(error))) = unknown.wait_timeout(PATIENCE) else {
        panic!("a dependency of an unregistered type fails its dependent");
    };
    assert!(error.to_string().contains("no decoder registered for nodecoder"), "{error}");
    let fine = rt.request::<Blob>("a0", Priority::Normal).unwrap();
    assert!(fine.wait_timeout(PATIENCE).unwrap().is_ok(), "the runtime keeps serving");
}

#[test]
fn a_dependency_that_fails_as_it_is_requested_stops_the_rest_of_the_tree_being_requested() {
    let source = GatedSource::default();
    let rest: Vec<String> = (0..50).map(|i| format!("blob:m{i}")).collect();
    let mut deps = vec!["blob:bad"];
    deps.extend(rest.iter().map(String::as_str));
    source.put_with_deps("blob:root", b"root", &deps);
    source.put_with_deps("blob:bad", b"bad", &["nodecoder:x"]);
    for dep in &rest {
        source.put_with_deps(dep, b"m", &[]);
    }
    let rt = runtime(&source, &BlobDecoder::default(), |b| b.immediate());
    let root = rt.request::<Blob>("root", Priority::Normal).unwrap();
    let Some(Err(ReadyError::Failed(error))) = root.wait_timeout(PATIENCE) else {
        panic!("the root fails with its dependency");
    };
    assert!(error.to_string().contains("blob:bad"), "{error}");
    assert!(rt.sync(PATIENCE));
    // The root and `bad`: `bad`'s own dependency is refused before it is a request.
    assert_eq!(rt.status().requested, 2, "none of the 50 after `bad` was requested");
}

#[test]
fn cancelling_the_engines_own_request_for_a_dependency_leaves_the_dependents_load_alone() {
    let source = GatedSource::default();
    source.put_with_deps("blob:root", b"root", &["blob:dep"]);
    source.put_with_deps("blob:dep", b"dep", &[]);
    source.gate.hold("dep");
    let rt = runtime(&source, &BlobDecoder::default(), |b| b.immediate());
    let direct = rt.request::<Blob>("dep", Priority::High).unwrap();
    let root = rt.request::<Blob>("root", Priority::Normal).unwrap();
    source.gate.wait_started("dep", 1);
    direct.cancel();
    assert!(rt.sync(PATIENCE));
    source.gate.release("dep");
    assert_eq!(root.wait_timeout(PATIENCE).unwrap().unwrap().0, b"root");
    assert_eq!(direct.outcome(), Some(Err(ReadyError::Cancelled)));
    assert_eq!(source.gate.started_count("dep"), 1, "the dependency's load went on");
}

#[test]
fn a_dependency_shared_within_one_tree_is_one_request_that_holds_back_each_dependent() {
    let source = GatedSource::default();
    source.put_with_deps("blob:root", b"root", &["blob:m1", "blob:m2"]);
    source.put_with_deps("blob:m1", b"m1", &["blob:shared"]);
    source.put_with_deps("blob:m2", b"m2", &["blob:shared"]);
    source.put_with_deps("blob:shared", b"shared", &[]);
    source.gate.hold("shared");
    let rt = runtime(&source, &BlobDecoder::default(), |b| b.immediate());
    let events = rt.subscribe(4096);
    let root = rt.request::<Blob>("root", Priority::Normal).unwrap();
    source.gate.wait_started("shared", 1);
    assert!(rt.sync(PATIENCE));
    assert_eq!(rt.status().requested, 4, "root, m1, m2 and one request for `shared`");
    source.gate.release("shared");
    assert_eq!(root.wait_timeout(PATIENCE).unwrap().unwrap().0, b"root");
    let order = published_order(&events, &["blob:shared", "blob:m1", "blob:m2", "blob:root"]);
    assert_eq!(order[0], "blob:shared", "neither dependent publishes before it: {order:?}");
    assert_eq!(order[3], "blob:root", "{order:?}");
    assert_eq!(source.gate.started_count("shared"), 1);
}

#[test]
fn a_dependency_that_ended_before_another_dependent_shares_it_is_told_to_that_one_at_once() {
    let source = GatedSource::default();
    source.put_with_deps("blob:root", b"root", &["blob:early", "blob:infohold_late"]);
    source.put_with_deps("blob:infohold_late", b"late", &["blob:early"]);
    source.put_with_deps("blob:early", b"early", &[]);
    source.gate.hold("info:infohold_late");
    let rt = runtime(&source, &BlobDecoder::default(), |b| b.immediate());
    let events = rt.subscribe(4096);
    std::thread::scope(|scope| {
        let asking = scope.spawn(|| rt.request::<Blob>("root", Priority::Normal).unwrap());
        // `early` is ready while the walk is held looking `late` up, before `late` shares it.
        published_order(&events, &["blob:early"]);
        source.gate.release("info:infohold_late");
        let root = asking.join().unwrap();
        assert_eq!(root.wait_timeout(PATIENCE).unwrap().unwrap().0, b"root");
    });
    assert_eq!(rt.status().requested, 3);
}

#[test]
fn an_asset_that_depends_on_an_ancestor_is_refused_naming_the_cycle() {
    let source = GatedSource::default();
    source.put_with_deps("blob:a", b"a", &["blob:b"]);
    source.put_with_deps("blob:b", b"b", &["blob:c"]);
    source.put_with_deps("blob:c", b"c", &["blob:a"]);
    let rt = runtime(&source, &BlobDecoder::default(), |b| b.immediate());
    let a = rt.request::<Blob>("a", Priority::Normal).unwrap();
    let Some(Err(ReadyError::Failed(error))) = a.wait_timeout(PATIENCE) else {
        panic!("the cycle fails");
    };
    let cycle = "dependency cycle: blob:a -> blob:b -> blob:c -> blob:a";
    assert!(error.to_string().contains(cycle), "{error}");
    assert!(rt.sync(PATIENCE));
    assert_eq!(rt.status().requested, 3, "each asset of the cycle once");
}

#[test]
fn a_shared_dependency_ready_is_counted_once_by_a_dependent_still_waiting_for_another() {
    let source = GatedSource::default();
    source.put_with_deps("blob:root", b"root", &["blob:m1", "blob:m2"]);
    source.put_with_deps("blob:m1", b"m1", &["blob:s"]);
    source.put_with_deps("blob:m2", b"m2", &["blob:s", "blob:other"]);
    source.put_with_deps("blob:s", b"s", &[]);
    source.put_with_deps("blob:other", b"other", &[]);
    source.gate.hold("other");
    let rt = runtime(&source, &BlobDecoder::default(), |b| b.immediate());
    let events = rt.subscribe(4096);
    let root = rt.request::<Blob>("root", Priority::Normal).unwrap();
    // `m1` published (so `s` was ready) and `m2` decoded: a second word of `s` to `m2`'s gate
    // would have published `m2` too.
    let (mut m1_published, mut m2_decoded) = (false, false);
    while !(m1_published && m2_decoded) {
        let event = events.next_timeout(PATIENCE).expect("m1 publishes and m2 decodes");
        let is = |k: &str| event.key.as_ref() == Some(&key(k));
        m1_published |= event.kind == EventKind::Published && is("blob:m1");
        m2_decoded |= event.kind == EventKind::Decoded && is("blob:m2");
    }
    assert!(rt.sync(PATIENCE));
    assert_eq!(rt.status().ready, 2, "`m2` still waits for `other`");
    source.gate.release("other");
    assert_eq!(root.wait_timeout(PATIENCE).unwrap().unwrap().0, b"root");
    // A publish batch is counted after its last request is woken: sync before reading it.
    assert!(rt.sync(PATIENCE));
    assert_eq!(rt.status().ready, 5);
}

#[test]
fn an_asset_listing_a_dependency_twice_waits_for_it_once_and_loads() {
    let source = GatedSource::default();
    source.put_with_deps("blob:root", b"root", &["blob:d", "blob:d"]);
    source.put_with_deps("blob:d", b"d", &[]);
    source.gate.hold("d");
    let rt = runtime(&source, &BlobDecoder::default(), |b| b.immediate());
    let events = rt.subscribe(4096);
    let root = rt.request::<Blob>("root", Priority::Normal).unwrap();
    wait_decoded(&events, root.id());
    assert!(rt.sync(PATIENCE));
    assert_eq!(rt.status().requested, 2);
    assert_eq!(root.state(), LoadState::Decoded, "held back by `d`");
    source.gate.release("d");
    assert_eq!(root.wait_timeout(PATIENCE).unwrap().unwrap().0, b"root");
    assert_eq!(root.progress(), streamrt::ByteProgress { done: 5, total: 5 }, "`d` counts once");
}

#[test]
fn a_tree_of_as_many_assets_as_its_node_limit_loads_however_often_they_are_shared() {
    let source = GatedSource::default();
    source.put_with_deps("blob:a", b"a", &["blob:b", "blob:c", "blob:b"]);
    source.put_with_deps("blob:c", b"c", &["blob:b"]);
    source.put_with_deps("blob:b", b"b", &[]);
    let config = RuntimeConfig { dependency_nodes_max: 3, ..RuntimeConfig::default() };
    let rt = runtime(&source, &BlobDecoder::default(), |b| b.config(config).immediate());
    let a = rt.request::<Blob>("a", Priority::Normal).unwrap();
    assert_eq!(a.wait_timeout(PATIENCE).unwrap().unwrap().0, b"a");
    assert_eq!(a.progress(), streamrt::ByteProgress { done: 3, total: 3 }, "each asset once");
}

#[test]
fn a_chain_of_diamonds_is_requested_reprioritised_and_counted_once_per_asset_not_per_path() {
    // 20 levels of two assets, each depending on both of the next level's: 2^21 paths. As a
    // tree, 2^21 - 1 requests, far past `dependency_nodes_max`; and a progress counted per
    // path would add the last level's bytes again for each.
    const LEVELS: usize = 20;
    let source = GatedSource::default();
    let level = |i: usize| [format!("blob:a{i}"), format!("blob:b{i}")];
    for i in 0..LEVELS {
        let next = level(i + 1);
        let next: Vec<&str> = next.iter().map(String::as_str).collect();
        let deps: &[&str] = if i + 1 < LEVELS { &next } else { &[] };
        for asset in level(i) {
            source.put_with_deps(&asset, b"d", deps);
        }
    }
    source.put_with_deps("blob:top", b"top", &["blob:a0", "blob:b0"]);
    source.gate.hold(&format!("a{}", LEVELS - 1));
    let rt = runtime(&source, &BlobDecoder::default(), |b| b.immediate());
    let events = rt.subscribe(4096);
    let top = rt.request::<Blob>("top", Priority::Normal).unwrap();
    // `top` is 3 bytes, every other asset 1.
    let bytes = 3 + 2 * LEVELS as u64;
    assert_eq!(top.progress().total, bytes, "each asset once");
    top.reprioritize(Priority::Critical);
    assert!(rt.sync(PATIENCE));
    assert_eq!(rt.status().requested, 2 * LEVELS as u64 + 1);
    let last = format!("blob:a{}", LEVELS - 1);
    source.gate.release(&last[5..]);
    assert_eq!(top.wait_timeout(PATIENCE).unwrap().unwrap().0, b"top");
    assert_eq!(top.progress(), streamrt::ByteProgress { done: bytes, total: bytes });
    // The deepest asset, still loading when `top` moved, moved with it down every level.
    let published = events.wait_for(PATIENCE, |e| {
        e.kind == EventKind::Published && e.key.as_ref() == Some(&key(&last))
    });
    assert_eq!(published.expect("published").priority, Some(Priority::Critical));
}

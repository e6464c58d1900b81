//! The runtime's worker threads: the CPU priority they run at (Linux keeps one per thread).

use streamrt::{wait_loaded, Priority, Runtime};
use streamrt_integration::{thread_name, Blob, GatedSource, NotingDecoder, PATIENCE};

/// The calling thread's nice value.
fn own_nice() -> i32 {
    rustix::process::getpriority_process(None).expect("a thread may read its own priority")
}

/// The decoding thread's name and nice value.
fn where_and_how_nice() -> (String, i32) {
    (thread_name(), own_nice())
}

/// Loads four blobs at `Normal` (decoded on the decode pool) and four at `High` (decoded on
/// the IO worker that read them) on a runtime built with `worker_nice(nice)`: the nice values
/// seen on IO threads and on decode threads.
fn nice_of_workers(nice: u8) -> (Vec<i32>, Vec<i32>) {
    let source = GatedSource::with_blobs(8);
    let decoder = NotingDecoder::new(where_and_how_nice);
    let rt = Runtime::builder()
        .source(source)
        .register(decoder.clone())
        .worker_nice(nice)
        .build()
        .expect("runtime builds");
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let priority = if i < 4 { Priority::Normal } else { Priority::High };
            rt.request::<Blob>(&format!("a{i}"), priority).expect("requested")
        })
        .collect();
    assert!(wait_loaded(&handles, PATIENCE), "every blob loads");
    rt.shutdown();
    let notes = decoder.notes();
    let on = |pool: &str| -> Vec<i32> {
        notes.values().filter(|(thread, _)| thread.starts_with(pool)).map(|(_, n)| *n).collect()
    };
    (on("streamrt-io"), on("streamrt-decode"))
}

#[test]
fn io_and_decode_threads_run_the_configured_steps_below_the_thread_that_built_the_runtime() {
    let base = own_nice();
    assert!(base < 19, "at the lowest priority already, lowering it cannot be seen");
    let lowered = (base + 5).min(19);
    let (io, decodes) = nice_of_workers(5);
    assert!(io.len() == 4 && io.iter().all(|&n| n == lowered), "IO threads at {io:?}");
    assert!(decodes.len() == 4 && decodes.iter().all(|&n| n == lowered), "{decodes:?}");
    assert_eq!(own_nice(), base, "the building thread keeps its priority");
    let (io, decodes) = nice_of_workers(0);
    assert_eq!((io.len(), decodes.len()), (4, 4));
    assert!(io.iter().chain(&decodes).all(|&n| n == base), "{io:?} {decodes:?}");
}

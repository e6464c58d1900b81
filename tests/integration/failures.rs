//! Failed loads: IO, decode, panics, missing assets and invalid keys.

use streamrt::messages::InvalidKey;
use streamrt::{ErrorKind, Priority, ReadyError, RequestError, Runtime};
use streamrt_integration::{Blob, BlobDecoder, GatedSource, PATIENCE};

use crate::runtime;

fn failure(outcome: Option<Result<std::sync::Arc<Blob>, ReadyError>>) -> streamrt::AssetLoadError {
    match outcome.expect("terminal") {
        Err(ReadyError::Failed(e)) => (*e).clone(),
        other => panic!("expected a failure, got {other:?}"),
    }
}

/// A runtime with one decode thread whose request for `path`, holding `bytes`, ended
/// quarantined after the retry policy's panics: the runtime, and that request's error.
fn quarantined(path: &str, bytes: &[u8]) -> (Runtime, streamrt::AssetLoadError) {
    let source = GatedSource::with_blobs(1);
    source.put(path, bytes);
    let rt = runtime(&source, &BlobDecoder::default(), |b| b.decode_threads(1));
    let err = failure(rt.request::<Blob>(path, Priority::Normal).unwrap().wait_timeout(PATIENCE));
    let panics_max = streamrt::RetryPolicy::default().panics_max;
    assert_eq!(err.kind, ErrorKind::Quarantined { panics: panics_max }, "{err}");
    (rt, err)
}

/// A later load decodes, and the decode pool has its one thread: it was rebuilt.
fn the_decode_thread_was_rebuilt(rt: &Runtime) {
    let after = rt.request::<Blob>("a0", Priority::Normal).unwrap();
    assert!(after.wait_timeout(PATIENCE).unwrap().is_ok(), "the one decode thread was rebuilt");
    assert_eq!(rt.live_workers().1, 1);
}

#[test]
fn an_io_error_fails_the_request_with_io_naming_the_key() {
    let source = GatedSource::with_blobs(0);
    let rt = runtime(&source, &BlobDecoder::default(), |b| b);
    let handle = rt.request::<Blob>("ioerr/x", Priority::Normal).unwrap();
    let err = failure(handle.wait_timeout(PATIENCE));
    assert!(matches!(err.kind, ErrorKind::Io(_)), "{err}");
    assert_eq!(err.key.to_string(), "blob:ioerr/x");
    assert!(err.to_string().contains("blob:ioerr/x"), "{err}");
    assert_eq!(handle.error().as_deref(), Some(&err));
}

#[test]
fn a_decode_error_fails_the_request_with_decode() {
    let source = GatedSource::with_blobs(0);
    source.put("broken", b"BAD header");
    let rt = runtime(&source, &BlobDecoder::default(), |b| b);
    let err =
        failure(rt.request::<Blob>("broken", Priority::Normal).unwrap().wait_timeout(PATIENCE));
    assert!(matches!(&err.kind, ErrorKind::Decode(m) if m.contains("BAD")), "{err}");
}

#[test]
fn a_missing_asset_fails_with_not_found() {
    let source = GatedSource::with_blobs(0);
    let rt = runtime(&source, &BlobDecoder::default(), |b| b);
    let err = failure(rt.request::<Blob>("nope", Priority::Normal).unwrap().wait_timeout(PATIENCE));
    assert_eq!(err.kind, ErrorKind::NotFound);
}

#[test]
fn a_key_whose_decoder_keeps_panicking_is_quarantined_and_the_pool_keeps_decoding() {
    let (rt, err) = quarantined("poison", b"PANIC now");
    let panics_max = streamrt::RetryPolicy::default().panics_max;
    assert_eq!(err.attempt, panics_max, "each panic was one attempt");
    let again = rt.request::<Blob>("poison", Priority::Normal).unwrap();
    assert_eq!(
        failure(again.wait_timeout(PATIENCE)).kind,
        ErrorKind::Quarantined { panics: panics_max }
    );
    the_decode_thread_was_rebuilt(&rt);
    let status = rt.status();
    assert_eq!((status.quarantined, status.restarts), (1, u64::from(panics_max)));
}

#[test]
fn a_decoder_panic_on_an_urgent_load_rebuilds_the_io_worker_that_decoded_it() {
    let source = GatedSource::with_blobs(1);
    source.put("poison", b"PANIC now");
    // One IO worker, which decodes critical loads itself: each panic must rebuild it, and the
    // key is still quarantined as on a decode thread.
    let rt = runtime(&source, &BlobDecoder::default(), |b| b.workers(1));
    let events = rt.subscribe(4096);
    let poison = rt.request::<Blob>("poison", Priority::Critical).unwrap();
    let panics_max = streamrt::RetryPolicy::default().panics_max;
    let err = failure(poison.wait_timeout(PATIENCE));
    assert_eq!(err.kind, ErrorKind::Quarantined { panics: panics_max }, "{err}");
    let after = rt.request::<Blob>("a0", Priority::Critical).unwrap();
    assert!(after.wait_timeout(PATIENCE).unwrap().is_ok(), "the one IO worker was rebuilt");
    assert_eq!(rt.live_workers().0, 1);
    assert_eq!(rt.status().restarts, u64::from(panics_max));
    // Each restart was the IO worker's, not a decode thread's.
    assert!(rt.flush_telemetry());
    let restarted: Vec<String> = std::iter::from_fn(|| events.try_next())
        .filter_map(|e| match e.kind {
            streamrt::messages::EventKind::Restarted { actor } => Some(actor),
            _ => None,
        })
        .collect();
    assert_eq!(restarted, vec!["io-worker"; panics_max as usize]);
}

#[test]
fn invalid_keys_are_refused_with_invalid_key() {
    let source = GatedSource::with_blobs(0);
    let rt = runtime(&source, &BlobDecoder::default(), |b| b);
    let cases = ["../etc/passwd", "/abs", "a\\b", "a\0b", "C:/x", "a//b", "./a", ""];
    for path in cases {
        let err = rt.request::<Blob>(path, Priority::Normal).unwrap_err();
        assert!(matches!(err, RequestError::InvalidKey(_)), "{path:?}: {err:?}");
    }
    let long = "x".repeat(2_000);
    assert!(matches!(
        rt.request::<Blob>(&long, Priority::Normal),
        Err(RequestError::InvalidKey(InvalidKey::TooLong { .. }))
    ));
    assert_eq!(rt.status().requested, 0, "refused keys never become requests");
}

#[test]
fn a_type_without_a_decoder_is_refused() {
    let source = GatedSource::with_blobs(0);
    let rt = runtime(&source, &BlobDecoder::default(), |b| b);
    let err = rt.request::<String>("a", Priority::Normal).unwrap_err();
    assert!(matches!(err, RequestError::UnknownType(_)));
}

#[test]
fn a_decoder_that_panics_sizing_its_value_fails_the_request_instead_of_leaving_it_loading() {
    let (rt, _) = quarantined("odd-size", b"SIZEPANIC");
    // The request fails before the pool has rebuilt the thread: a later load shows it has.
    the_decode_thread_was_rebuilt(&rt);
}

#[test]
fn a_source_that_panics_looking_a_key_up_fails_that_request_and_counts_it_ended() {
    let source = GatedSource::with_blobs(1);
    let rt = runtime(&source, &BlobDecoder::default(), |b| b.immediate());
    let boom = rt.request::<Blob>("infopanic/x", Priority::Normal).unwrap();
    let err = failure(boom.wait_timeout(PATIENCE));
    assert!(matches!(err.kind, ErrorKind::Io(_)), "{err}");
    assert!(err.to_string().contains("scripted panic looking up blob:infopanic/x"), "{err}");
    let after = rt.request::<Blob>("a0", Priority::Normal).unwrap();
    assert!(after.wait_timeout(PATIENCE).unwrap().is_ok());
    assert!(rt.sync(PATIENCE));
    let status = rt.status();
    assert_eq!(status.requested, status.ready + status.failed + status.cancelled);
    assert_eq!(source.gate.started_count("infopanic/x"), 0, "never read");
}

#[test]
fn a_source_that_panics_reading_fails_the_request_as_lost_and_the_pool_keeps_reading() {
    let source = GatedSource::with_blobs(1);
    let rt = runtime(&source, &BlobDecoder::default(), |b| b.workers(1));
    let boom = rt.request::<Blob>("readpanic/x", Priority::Normal).unwrap();
    let err = failure(boom.wait_timeout(PATIENCE));
    assert!(matches!(err.kind, ErrorKind::WorkerLost(_)), "{err}");
    assert!(err.to_string().contains("scripted panic reading blob:readpanic/x"), "{err}");
    assert_eq!(
        err.attempt,
        streamrt::RetryPolicy::default().attempts_max,
        "lost reads are retried"
    );
    let after = rt.request::<Blob>("a0", Priority::Normal).unwrap();
    assert!(after.wait_timeout(PATIENCE).unwrap().is_ok(), "the one IO worker was rebuilt");
    assert_eq!(rt.live_workers().0, 1);
}

//! The scripted backend a replay runs on: a source and decoders that answer with the recorded
//! outcomes, in the recorded order, so no file and no engine type is needed.
//!
//! Outcomes are banked per key as the log is read and taken one per read or decode, oldest
//! first. A job whose outcome is not banked yet is held back by the stepper ([`Gate`]), which
//! is how a replay completes reads and decodes in the order the recording saw them.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use streamrt_messages::replay_log::{DecodeOutcome, ReadOutcome};
use streamrt_messages::{AssetKey, ErrorKind};

use crate::asset::{DecodeError, Decoder};
use crate::lock::lock;
use crate::replay::stepper::Gate;
use crate::source::{EntryInfo, Source, SourceError};

/// Everything the recording said about the source and the decoders, not yet used.
#[derive(Default)]
pub(crate) struct Script {
    entries: Mutex<HashMap<AssetKey, EntryInfo>>,
    /// The messages of the source's recorded panics looking a key up, each to raise once.
    entry_panics: Mutex<HashMap<AssetKey, VecDeque<String>>>,
    reads: Mutex<HashMap<AssetKey, VecDeque<ReadOutcome>>>,
    decodes: Mutex<HashMap<AssetKey, VecDeque<DecodeOutcome>>>,
}

impl Script {
    pub(crate) fn entry(&self, key: AssetKey, info: EntryInfo) {
        lock(&self.entries).insert(key, info);
    }

    pub(crate) fn bank_entry_panic(&self, key: AssetKey, message: String) {
        lock(&self.entry_panics).entry(key).or_default().push_back(message);
    }

    pub(crate) fn bank_read(&self, key: AssetKey, outcome: ReadOutcome) {
        lock(&self.reads).entry(key).or_default().push_back(outcome);
    }

    pub(crate) fn bank_decode(&self, key: AssetKey, outcome: DecodeOutcome) {
        lock(&self.decodes).entry(key).or_default().push_back(outcome);
    }

    /// The recorded reads' and decodes' outcomes no job took: what the recording saw that the
    /// replay never asked for (or a read of a load cancelled as it ended, see
    /// `cache/recording.rs`).
    pub(crate) fn unused(&self) -> usize {
        let reads: usize = lock(&self.reads).values().map(VecDeque::len).sum();
        reads + lock(&self.decodes).values().map(VecDeque::len).sum::<usize>()
    }

    fn take_read(&self, key: &AssetKey) -> Option<ReadOutcome> {
        lock(&self.reads).get_mut(key)?.pop_front()
    }

    fn take_decode(&self, key: &AssetKey) -> Option<DecodeOutcome> {
        lock(&self.decodes).get_mut(key)?.pop_front()
    }
}

impl Gate for Script {
    fn read_ready(&self, key: &AssetKey) -> bool {
        lock(&self.reads).get(key).is_some_and(|q| !q.is_empty())
    }

    fn decode_ready(&self, key: &AssetKey) -> bool {
        lock(&self.decodes).get(key).is_some_and(|q| !q.is_empty())
    }
}

/// The largest read a replay reproduces, in bytes (the default limit of both sources this crate
/// has); a larger recorded size fails that read with `TooLarge` instead of allocating it. That
/// is a damaged log, or a source whose limit was raised past this: the replay then diverges
/// there, and says so, rather than allocate whatever size a log names.
const READ_BYTES_MAX: u64 = 1 << 28;

/// The recorded source.
pub(crate) struct ScriptedSource(pub(crate) Arc<Script>);

impl Source for ScriptedSource {
    fn read(&self, key: &AssetKey) -> Result<Vec<u8>, SourceError> {
        match self.0.take_read(key) {
            Some(ReadOutcome::Bytes(n)) if n > READ_BYTES_MAX => {
                Err(SourceError::TooLarge { size: n, max: READ_BYTES_MAX })
            }
            Some(ReadOutcome::Bytes(n)) => Ok(vec![0; usize::try_from(n).unwrap_or(0)]),
            // The recorded source panicked: so does this one, and the worker loses the job.
            Some(ReadOutcome::Failed(ErrorKind::WorkerLost(message))) => {
                std::panic::panic_any(message)
            }
            Some(ReadOutcome::Failed(kind)) => Err(source_error(kind)),
            None => Err(SourceError::Io("the recording has no read for this key".into())),
        }
    }

    fn describe(&self) -> String {
        "replay".into()
    }

    fn entry_info(&self, key: &AssetKey) -> EntryInfo {
        let panicked = lock(&self.0.entry_panics).get_mut(key).and_then(VecDeque::pop_front);
        if let Some(message) = panicked {
            // The recorded source panicked here: so does this one, with its message.
            std::panic::panic_any(message);
        }
        lock(&self.0.entries).get(key).cloned().unwrap_or_default()
    }
}

/// The source error that gives back `kind` (sources fail with these kinds only).
fn source_error(kind: ErrorKind) -> SourceError {
    match kind {
        ErrorKind::NotFound => SourceError::NotFound,
        ErrorKind::Io(m) => SourceError::Io(m),
        ErrorKind::Corrupt(m) => SourceError::Corrupt(m),
        ErrorKind::Denied(m) => SourceError::Denied(m),
        ErrorKind::TooLarge { size, max } => SourceError::TooLarge { size, max },
        other => SourceError::Io(other.to_string()),
    }
}

/// A replayed asset: only its resident size is known.
#[derive(Debug)]
pub(crate) struct Replayed {
    bytes: u64,
}

/// The recorded decoder of one type.
pub(crate) struct ScriptedDecoder {
    pub(crate) name: String,
    pub(crate) script: Arc<Script>,
}

impl Decoder for ScriptedDecoder {
    type Asset = Replayed;

    fn type_name(&self) -> &str {
        &self.name
    }

    fn decode(&self, key: &AssetKey, _bytes: Vec<u8>) -> Result<Replayed, DecodeError> {
        match self.script.take_decode(key) {
            Some(DecodeOutcome::Value(bytes)) => Ok(Replayed { bytes }),
            Some(DecodeOutcome::Failed(ErrorKind::Validation(m))) => {
                Err(DecodeError::Validation(m))
            }
            Some(DecodeOutcome::Failed(ErrorKind::Decode(m))) => Err(DecodeError::Malformed(m)),
            Some(DecodeOutcome::Failed(other)) => Err(DecodeError::Malformed(other.to_string())),
            // The recorded panic, with its message, so the failure reads the same.
            Some(DecodeOutcome::Panicked(message)) => std::panic::panic_any(message),
            None => Err(DecodeError::Malformed("the recording has no decode for this key".into())),
        }
    }

    fn size_bytes(&self, asset: &Replayed) -> u64 {
        asset.bytes
    }
}

//! The replay log, version 8 (versions 2 to 7 are read too): a recorded session's nondeterministic
//! inputs, enough for a deterministic runtime to run the session again (`docs/PROTOCOL.md`,
//! "Replay log").
//!
//! Layout: the 8 bytes [`REPLAY_LOG_MAGIC`], a `u16` little-endian version, then frames like
//! the control protocol's (a `u32` little-endian length and that many bytes of postcard, at
//! most [`RECORD_BYTES_MAX`]): first one [`LogHeader`], then [`LogRecord`]s in the order the
//! recorder saw them.
//!
//! # Invariants
//!
//! - [`LogReader`] never panics and never allocates more than a record's stated length, which
//!   it checks against [`RECORD_BYTES_MAX`] and against the bytes left before reading it. Every
//!   error names the byte offset of the frame it concerns ([`LogError`]).
//! - Keys are validated as they are deserialised, so a record that decodes holds only confined
//!   keys.

use std::io::Write;

use serde::{Deserialize, Serialize};

use crate::{AssetKey, ErrorKind, LoadState, Priority};

/// The first 8 bytes of every replay log.
pub const REPLAY_LOG_MAGIC: [u8; 8] = *b"STRMRLOG";

/// The log version this build writes. Version 8 records when a retry's backoff ran out
/// ([`LogRecord::RetryDue`]): a replay of an older log retries once nothing else can move,
/// which can put a retry ahead of inputs its recording saw first. Version 7 has the records of
/// version 6, from a runtime whose dependency walks refuse a shared dependency whose subtree would
/// sit past the depth limit (a replay of an older log shares it as its recorder did). Version 6 has
/// the records of version 5, from a
/// runtime whose dependency walks share a dependency asked for twice in a tree (a replay of
/// an older log walks as its recorder did, requesting it again: the requests' ids differ).
/// Version 5 records the retry policies of types that have
/// their own ([`LogRecord::TypePolicy`]) and a source's panic looking a key up
/// ([`LogRecord::EntryPanicked`]); version 4 records immediate-mode publishes
/// ([`LogRecord::Published`] outside frames); version 3 records frames' publishes only.
pub const REPLAY_LOG_VERSION: u16 = 8;

/// The oldest log version this build reads: version 2 has no [`LogRecord::Published`] records.
pub const REPLAY_LOG_VERSION_MIN: u16 = 2;

/// The largest header or record payload, in bytes.
pub const RECORD_BYTES_MAX: usize = 1 << 20;

/// The most records a log holds, its type policies included: 4,194,304. A record is as small
/// as 5 bytes, and a replay keeps each, and a transcript line for each of the events it makes,
/// at about a hundred times that: a damaged or hand-made log of a gigabyte of them would take
/// tens of gigabytes. A writer refuses the record past it (a recorder stops there, as at any
/// failed write, so every recorded log replays), and a reader refuses a log longer.
pub const RECORDS_MAX: usize = 1 << 22;

/// The most memory a log's records take once decoded, estimated (see `decoded_bytes`): 2 GiB.
/// A record's bytes decode into many times as many (a key of 4 bytes into one of about 100, an
/// id of 1 byte into 8), so a log's size alone does not bound what reading it takes: a writer
/// refuses the record past it, and a reader refuses a log past it.
pub const DECODED_BYTES_MAX: u64 = 2 << 30;

/// What a decoded key takes besides its text: two `Arc<str>`, each a pointer, a length and an
/// allocation holding two counts, rounded up as allocators do.
const KEY_DECODED_BYTES: u64 = 96;

/// An estimate of the memory `record`, whose frame's payload is `payload` bytes, takes once
/// decoded and kept with its offset: its slot, its text (no more than its payload), and each
/// key's and id's own cost.
fn decoded_bytes(record: &LogRecord, payload: usize) -> u64 {
    let keys = match record {
        LogRecord::Request { .. }
        | LogRecord::Read { .. }
        | LogRecord::Decode { .. }
        | LogRecord::EntryPanicked { .. }
        | LogRecord::RetryDue { .. } => 1,
        LogRecord::Entry { dependencies, .. } => 1 + dependencies.len() as u64,
        _ => 0,
    };
    let ids = match record {
        LogRecord::Published { requests } => requests.len() as u64,
        _ => 0,
    };
    let slot = std::mem::size_of::<(u64, LogRecord)>() as u64;
    slot + payload as u64 + keys * KEY_DECODED_BYTES + ids * 8
}

/// Magic and version.
const PREAMBLE_BYTES: usize = 10;

/// How decoded assets were published in the recorded session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LogPublish {
    /// As soon as they decoded.
    Immediate,
    /// At frame boundaries, within these budgets (the count actually published each frame is
    /// recorded too, since time and adaptive budgets depend on the machine).
    Frames {
        /// Requests published per frame at most.
        publish_count_max: u32,
        /// Bytes published per frame at most.
        publish_bytes_max: u64,
        /// Frames a request waits at most before it is published ahead of its priority.
        aging_frames_max: u64,
    },
}

/// The settings a replay must share with the recorded session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogConfig {
    /// IO workers of the recorded run (informational: a replay runs one virtual worker).
    pub workers: u64,
    /// Read credits.
    pub reads_in_flight: u64,
    /// The stored bytes one credit stands for (version 2).
    pub read_credit_bytes: u64,
    /// Decode credits.
    pub decode_backlog_max: u64,
    /// Loads queued at most.
    pub queue_capacity: u64,
    /// Requests not yet terminal at most.
    pub requests_outstanding_max: u64,
    /// Dependency levels at most.
    pub dependency_depth_max: u64,
    /// Requests per dependency tree at most.
    pub dependency_nodes_max: u64,
    /// The memory budget, all types.
    pub bytes_resident_max: u64,
    /// Memory budgets per type name.
    pub type_bytes_resident_max: Vec<(String, u64)>,
    /// Attempts at most for a transient failure.
    pub retry_attempts_max: u32,
    /// Retry backoff, first and largest delay in milliseconds.
    pub retry_backoff_ms: (u64, u64),
    /// Decoder panics before a key is quarantined.
    pub panics_max: u32,
    /// When decoded assets are published.
    pub publish: LogPublish,
}

/// The first frame of a log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogHeader {
    /// What recorded it (`streamctl demo`, `streamctl serve`, a test's name).
    pub recorded_by: String,
    /// The registered asset types, in registration order.
    pub types: Vec<String>,
    /// The settings that shape the session.
    pub config: LogConfig,
}

/// How a read ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReadOutcome {
    /// This many bytes were read.
    Bytes(u64),
    /// The source failed (`not_found`, `io`, `corrupt`, `denied`, `too_large`), or panicked
    /// (`worker_lost`, with the panic's message: a replay's source panics the same way).
    Failed(ErrorKind),
}

/// How a decode ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DecodeOutcome {
    /// A value keeping this many bytes resident.
    Value(u64),
    /// The decoder refused the bytes (`decode` or `validation`).
    Failed(ErrorKind),
    /// The decoder panicked with this message.
    Panicked(String),
}

/// One recorded input, in the order the recorder saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LogRecord {
    /// The engine requested `key` (dependencies are not recorded: a replay requests them).
    Request {
        /// The request's id.
        id: u64,
        /// The asset.
        key: AssetKey,
        /// Its priority.
        priority: Priority,
    },
    /// What the source said of `key` before reading it.
    Entry {
        /// The asset.
        key: AssetKey,
        /// Its dependencies.
        dependencies: Vec<AssetKey>,
        /// Its size, if known.
        size: Option<u64>,
    },
    /// The engine cancelled or dropped request `id`.
    Cancel {
        /// The request.
        id: u64,
    },
    /// The engine changed request `id`'s priority.
    Reprioritize {
        /// The request.
        id: u64,
        /// Its new priority.
        priority: Priority,
    },
    /// `begin_frame`, and how many requests it published. From version 3, the requests
    /// themselves are in the [`LogRecord::Published`] records just before it.
    BeginFrame {
        /// Requests published.
        published: u32,
    },
    /// `end_frame`.
    EndFrame,
    /// A read of `key` returned.
    Read {
        /// The asset.
        key: AssetKey,
        /// What it returned.
        outcome: ReadOutcome,
    },
    /// A decoder of `key` returned or panicked.
    Decode {
        /// The asset.
        key: AssetKey,
        /// What it did.
        outcome: DecodeOutcome,
    },
    /// Request `id` reached its terminal state (the recorded outcome a replay is checked
    /// against).
    Ended {
        /// The request.
        id: u64,
        /// `ready`, `failed` or `cancelled`.
        state: LoadState,
    },
    /// The engine shut the runtime down.
    Shutdown,
    /// Requests the next `begin_frame` published, in order (version 3): one record, empty for
    /// a frame that published none, or several of at most [`PUBLISHED_PER_RECORD_MAX`] each,
    /// just before its [`LogRecord::BeginFrame`]. A replay publishes exactly these then: one
    /// that picked its own would publish a request its runs staged sooner than the recorded
    /// one, before the engine's recorded cancel of it. From version 4, in immediate mode, also
    /// the requests each immediate publish published (none: no record), which a replay
    /// publishes at once.
    Published {
        /// The requests, by id: at most [`PUBLISHED_PER_RECORD_MAX`], refused past it as they
        /// are decoded.
        #[serde(deserialize_with = "published_at_most")]
        requests: Vec<u64>,
    },
    /// The type `type_name` was registered with a retry policy of its own (version 5): one
    /// record per such type, right after the header, before any other record. A type with
    /// none has the header's policy.
    TypePolicy {
        /// The type.
        type_name: String,
        /// Attempts at most for a transient failure.
        attempts_max: u32,
        /// Retry backoff, first and largest delay in milliseconds.
        backoff_ms: (u64, u64),
        /// Decoder panics before a key is quarantined.
        panics_max: u32,
    },
    /// The source panicked when asked what it keeps of `key` (version 5), in place of an
    /// [`LogRecord::Entry`]: the request failed with the panic. A replay's source panics the
    /// same way, once; a later request for the key has its own record.
    EntryPanicked {
        /// The asset.
        key: AssetKey,
        /// The panic's message (cut as every error text is).
        message: String,
    },
    /// The backoff of a retry of `key`'s load ran out, and the retry was queued (version 8):
    /// recorded as the cache took it, among the engine's inputs. A replay queues its retry of
    /// the key here, not once nothing else can move.
    RetryDue {
        /// The asset.
        key: AssetKey,
    },
}

/// Request ids in one [`LogRecord::Published`] at most: 10 bytes each at most, so a record
/// stays well within [`RECORD_BYTES_MAX`].
pub const PUBLISHED_PER_RECORD_MAX: usize = 65_536;

fn published_at_most<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u64>, D::Error> {
    crate::decode::at_most(d, PUBLISHED_PER_RECORD_MAX, "published requests")
}

/// What is wrong with a log, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("replay log, byte {offset}: {kind}")]
pub struct LogError {
    /// The byte offset of the frame (or preamble) at fault.
    pub offset: u64,
    /// What is wrong.
    pub kind: LogErrorKind,
}

/// See [`LogError`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogErrorKind {
    /// The file does not start with [`REPLAY_LOG_MAGIC`].
    #[error("not a streamrt replay log (bad magic)")]
    BadMagic,
    /// A version this build does not read.
    #[error(
        "version {found} is not supported (this build reads versions {REPLAY_LOG_VERSION_MIN} to {REPLAY_LOG_VERSION})"
    )]
    UnsupportedVersion {
        /// The version in the file.
        found: u16,
    },
    /// The file ends inside a frame.
    #[error("truncated: {needed} more bytes expected, {left} left")]
    Truncated {
        /// Bytes the frame needs.
        needed: u64,
        /// Bytes left in the file.
        left: u64,
    },
    /// A frame longer than [`RECORD_BYTES_MAX`].
    #[error("a frame of {len} bytes is over the {RECORD_BYTES_MAX}-byte limit")]
    TooLarge {
        /// The stated length.
        len: u64,
    },
    /// A frame that does not decode.
    #[error("malformed {what}: {message}")]
    Malformed {
        /// `header` or `record`.
        what: &'static str,
        /// The decoder's message.
        message: String,
    },
    /// A record past the [`RECORDS_MAX`] a log holds.
    #[error("more than the {max} records a log holds")]
    TooManyRecords {
        /// The most records a log holds.
        max: usize,
    },
    /// A record past what a log's records may take once decoded ([`DECODED_BYTES_MAX`]).
    #[error("records that would take more than {max} bytes once decoded")]
    TooMuchDecoded {
        /// The most bytes a log's decoded records take.
        max: u64,
    },
}

/// Writes a log: the preamble and header first, then at most [`RECORDS_MAX`] records.
pub struct LogWriter<W: Write> {
    out: W,
    records: usize,
    records_max: usize,
    /// What the records written take once decoded (see `decoded_bytes`), and the most.
    decoded: u64,
    decoded_max: u64,
}

impl<W: Write> LogWriter<W> {
    /// Writes the preamble and `header` to `out`.
    ///
    /// # Errors
    ///
    /// The writer's IO error.
    pub fn new(mut out: W, header: &LogHeader) -> std::io::Result<Self> {
        out.write_all(&REPLAY_LOG_MAGIC)?;
        out.write_all(&REPLAY_LOG_VERSION.to_le_bytes())?;
        out.write_all(&frame(header)?)?;
        let (decoded, decoded_max) = (0, DECODED_BYTES_MAX);
        Ok(Self { out, records: 0, records_max: RECORDS_MAX, decoded, decoded_max })
    }

    /// Appends one record.
    ///
    /// # Errors
    ///
    /// The writer's IO error, or `InvalidInput` for a record over [`RECORD_BYTES_MAX`], or past
    /// the [`RECORDS_MAX`] a log holds or the [`DECODED_BYTES_MAX`] its records take decoded
    /// (a reader would refuse the log at it), written not at all.
    pub fn append(&mut self, record: &LogRecord) -> std::io::Result<()> {
        let refused = |why: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, why);
        if self.records >= self.records_max {
            return Err(refused(format!("the log holds {} records at most", self.records_max)));
        }
        let frame = frame(record)?;
        let decoded = self.decoded.saturating_add(decoded_bytes(record, frame.len() - 4));
        if decoded > self.decoded_max {
            let why = format!("a log's records take {} bytes decoded at most", self.decoded_max);
            return Err(refused(why));
        }
        self.out.write_all(&frame)?;
        self.records += 1;
        self.decoded = decoded;
        Ok(())
    }

    /// Flushes the writer.
    ///
    /// # Errors
    ///
    /// The writer's IO error.
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }

    /// The writer back.
    pub fn into_inner(self) -> W {
        self.out
    }
}

/// `value`'s frame, its length and payload, to be written in one `write_all`: a buffered
/// writer then writes out whole frames only (it writes its buffer out between two calls, so
/// two calls could leave a length without its payload in the file of a recorder that died),
/// and a log cut short ends at a frame's boundary, which a reader takes.
fn frame(value: &impl Serialize) -> std::io::Result<Vec<u8>> {
    let mut frame = postcard::to_extend(value, vec![0; 4]).map_err(std::io::Error::other)?;
    let payload = frame.len() - 4;
    if payload > RECORD_BYTES_MAX {
        let why = format!("a record of {payload} bytes is over the {RECORD_BYTES_MAX}-byte limit");
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, why));
    }
    let len = u32::try_from(payload).map_err(std::io::Error::other)?;
    frame[..4].copy_from_slice(&len.to_le_bytes());
    Ok(frame)
}

/// Reads a log held in memory: the header at once, then records one by one.
#[derive(Debug)]
pub struct LogReader<'a> {
    bytes: &'a [u8],
    at: usize,
    version: u16,
    header: LogHeader,
}

impl<'a> LogReader<'a> {
    /// Checks the preamble and reads the header.
    ///
    /// # Errors
    ///
    /// A [`LogError`] naming the offset: bad magic, an unknown version, a truncated or
    /// malformed header.
    pub fn new(bytes: &'a [u8]) -> Result<Self, LogError> {
        if bytes.len() < REPLAY_LOG_MAGIC.len() || bytes[..8] != REPLAY_LOG_MAGIC {
            let kind = if bytes.len() < 8 && REPLAY_LOG_MAGIC.starts_with(bytes) {
                LogErrorKind::Truncated { needed: 8, left: bytes.len() as u64 }
            } else {
                LogErrorKind::BadMagic
            };
            return Err(LogError { offset: 0, kind });
        }
        let Some(version) = bytes.get(8..PREAMBLE_BYTES) else {
            let kind = LogErrorKind::Truncated { needed: 2, left: (bytes.len() - 8) as u64 };
            return Err(LogError { offset: 8, kind });
        };
        let found = u16::from_le_bytes([version[0], version[1]]);
        if !(REPLAY_LOG_VERSION_MIN..=REPLAY_LOG_VERSION).contains(&found) {
            return Err(LogError { offset: 8, kind: LogErrorKind::UnsupportedVersion { found } });
        }
        let mut reader = Self {
            bytes,
            at: PREAMBLE_BYTES,
            version: found,
            header: LogHeader {
                recorded_by: String::new(),
                types: Vec::new(),
                config: LogConfig::empty(),
            },
        };
        reader.header = reader.next_frame("header")?.ok_or(LogError {
            offset: PREAMBLE_BYTES as u64,
            kind: LogErrorKind::Truncated { needed: 4, left: 0 },
        })?;
        Ok(reader)
    }

    /// The log's header.
    pub fn header(&self) -> &LogHeader {
        &self.header
    }

    /// The log's version, from [`REPLAY_LOG_VERSION_MIN`] to [`REPLAY_LOG_VERSION`].
    pub fn version(&self) -> u16 {
        self.version
    }

    /// The byte offset of the next record.
    pub fn offset(&self) -> u64 {
        self.at as u64
    }

    /// The next record, `None` at the end of the log.
    ///
    /// # Errors
    ///
    /// A [`LogError`] naming the record's offset: truncated, too large or malformed.
    pub fn next_record(&mut self) -> Result<Option<LogRecord>, LogError> {
        self.next_frame("record")
    }

    fn next_frame<T: serde::de::DeserializeOwned>(
        &mut self,
        what: &'static str,
    ) -> Result<Option<T>, LogError> {
        let offset = self.at as u64;
        let rest = &self.bytes[self.at..];
        if rest.is_empty() {
            return Ok(None);
        }
        let error = |kind| LogError { offset, kind };
        let Some(len) = rest.get(..4) else {
            return Err(error(LogErrorKind::Truncated { needed: 4, left: rest.len() as u64 }));
        };
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
        if len > RECORD_BYTES_MAX {
            return Err(error(LogErrorKind::TooLarge { len: len as u64 }));
        }
        let Some(payload) = rest.get(4..4 + len) else {
            let left = (rest.len() - 4) as u64;
            return Err(error(LogErrorKind::Truncated { needed: len as u64, left }));
        };
        // A wrong length would otherwise swallow the frames it covers without a word.
        let value = crate::decode::from_whole(payload, what)
            .map_err(|message| error(LogErrorKind::Malformed { what, message }))?;
        self.at += 4 + len;
        Ok(Some(value))
    }
}

impl LogConfig {
    fn empty() -> Self {
        Self {
            workers: 0,
            reads_in_flight: 0,
            read_credit_bytes: 0,
            decode_backlog_max: 0,
            queue_capacity: 0,
            requests_outstanding_max: 0,
            dependency_depth_max: 0,
            dependency_nodes_max: 0,
            bytes_resident_max: 0,
            type_bytes_resident_max: Vec::new(),
            retry_attempts_max: 0,
            retry_backoff_ms: (0, 0),
            panics_max: 0,
            publish: LogPublish::Immediate,
        }
    }
}

/// Every record of a log and the offset each starts at.
///
/// # Errors
///
/// The first [`LogError`].
pub fn read_log(bytes: &[u8]) -> Result<(LogHeader, Vec<(u64, LogRecord)>), LogError> {
    read_whole_log(bytes).map(|log| (log.header, log.records))
}

/// A whole log, read and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WholeLog {
    /// The header.
    pub header: LogHeader,
    /// The version, from [`REPLAY_LOG_VERSION_MIN`] to [`REPLAY_LOG_VERSION`].
    pub version: u16,
    /// Every record and the offset it starts at.
    pub records: Vec<(u64, LogRecord)>,
}

/// [`read_log`] with the log's version.
///
/// # Errors
///
/// The first [`LogError`].
pub fn read_whole_log(bytes: &[u8]) -> Result<WholeLog, LogError> {
    read_records_within(bytes, RECORDS_MAX, DECODED_BYTES_MAX)
}

fn read_records_within(
    bytes: &[u8],
    records_max: usize,
    decoded_max: u64,
) -> Result<WholeLog, LogError> {
    let mut reader = LogReader::new(bytes)?;
    let mut records = Vec::new();
    let mut decoded = 0_u64;
    loop {
        let offset = reader.offset();
        match reader.next_record()? {
            Some(_) if records.len() >= records_max => {
                let kind = LogErrorKind::TooManyRecords { max: records_max };
                return Err(LogError { offset, kind });
            }
            Some(record) => {
                let payload = usize::try_from(reader.offset() - offset - 4).unwrap_or(usize::MAX);
                decoded = decoded.saturating_add(decoded_bytes(&record, payload));
                if decoded > decoded_max {
                    let kind = LogErrorKind::TooMuchDecoded { max: decoded_max };
                    return Err(LogError { offset, kind });
                }
                records.push((offset, record));
            }
            None => {
                let (header, version) = (reader.header.clone(), reader.version);
                return Ok(WholeLog { header, version, records });
            }
        }
    }
}

#[cfg(test)]
mod golden;

#[cfg(test)]
mod tests {
    use super::*;

    /// Takes every write whole and keeps its length.
    struct Calls(Vec<usize>);

    impl Write for Calls {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.push(bytes.len());
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn each_frame_is_one_write_so_a_buffer_written_out_between_two_never_splits_one() {
        let mut writer = LogWriter::new(Calls(Vec::new()), &header()).unwrap();
        writer.append(&LogRecord::Shutdown).unwrap();
        let calls = writer.into_inner().0;
        let header_frame = 4 + postcard::to_allocvec(&header()).unwrap().len();
        let record_frame = 4 + postcard::to_allocvec(&LogRecord::Shutdown).unwrap().len();
        assert_eq!(calls, [8, 2, header_frame, record_frame], "magic, version, then frames");
    }

    #[test]
    fn records_past_what_a_log_may_take_decoded_are_neither_written_nor_read() {
        let key = AssetKey::parse("blob:a").unwrap();
        let entry =
            LogRecord::Entry { key: key.clone(), dependencies: vec![key; 1_000], size: None };
        let mut out = Vec::new();
        let mut writer = LogWriter::new(&mut out, &header()).unwrap();
        for _ in 0..3 {
            writer.append(&entry).unwrap();
        }
        // Each record holds 1,001 keys, about 100 KB decoded from about 7 KB of log.
        let whole = read_records_within(&out, RECORDS_MAX, DECODED_BYTES_MAX).unwrap();
        let second = whole.records[1].0;
        let refused = read_records_within(&out, RECORDS_MAX, 150_000).unwrap_err();
        let kind = LogErrorKind::TooMuchDecoded { max: 150_000 };
        assert_eq!(refused, LogError { offset: second, kind });
        let mut again = Vec::new();
        let mut writer = LogWriter::new(&mut again, &header()).unwrap();
        writer.decoded_max = 150_000;
        writer.append(&entry).unwrap();
        let written = out_len(&writer);
        let error = writer.append(&entry).unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
        assert_eq!(out_len(&writer), written, "the record past the budget is not written");
    }

    #[test]
    fn a_record_a_reader_would_refuse_is_not_written() {
        let mut out = Vec::new();
        let mut writer = LogWriter::new(&mut out, &header()).unwrap();
        let written = out_len(&writer);
        let key = AssetKey::parse("blob:a.bin").unwrap();
        let huge = DecodeOutcome::Panicked("x".repeat(RECORD_BYTES_MAX));
        let err = writer.append(&LogRecord::Decode { key, outcome: huge }).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
        assert_eq!(out_len(&writer), written, "nothing of it written");
    }

    #[test]
    fn a_log_holds_its_records_max_and_no_more() {
        let mut writer = LogWriter::new(Vec::new(), &header()).unwrap();
        writer.records_max = 3;
        (0..3).for_each(|_| writer.append(&LogRecord::EndFrame).unwrap());
        let err = writer.append(&LogRecord::EndFrame).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
        let bytes = writer.into_inner();
        let within = |records_max| read_records_within(&bytes, records_max, DECODED_BYTES_MAX);
        assert_eq!(within(3).map(|l| l.records.len()), Ok(3));
        let refused = within(2).unwrap_err();
        assert_eq!(refused.kind, LogErrorKind::TooManyRecords { max: 2 });
        assert_eq!(refused.offset, bytes.len() as u64 - 5, "at the record past the limit");
    }

    #[test]
    fn a_published_record_past_its_limit_is_refused_as_it_is_decoded() {
        let published = |n: usize| LogRecord::Published { requests: vec![1; n] };
        let decoded = |n: usize| {
            let bytes = postcard::to_allocvec(&published(n)).unwrap();
            crate::decode::from_whole::<LogRecord>(&bytes, "record")
        };
        assert_eq!(decoded(PUBLISHED_PER_RECORD_MAX), Ok(published(PUBLISHED_PER_RECORD_MAX)));
        let refused = decoded(PUBLISHED_PER_RECORD_MAX + 1).unwrap_err();
        assert!(refused.contains("65537 published requests, over the limit of 65536"), "{refused}");
    }

    fn out_len(writer: &LogWriter<&mut Vec<u8>>) -> usize {
        writer.out.len()
    }

    fn header() -> LogHeader {
        let mut config = LogConfig::empty();
        config.workers = 2;
        LogHeader { recorded_by: "test".into(), types: vec!["blob".into()], config }
    }

    fn log() -> (Vec<u8>, Vec<LogRecord>) {
        let key = AssetKey::parse("blob:a.bin").unwrap();
        let records = vec![
            LogRecord::Request { id: 1, key: key.clone(), priority: Priority::High },
            LogRecord::Read { key: key.clone(), outcome: ReadOutcome::Bytes(10) },
            LogRecord::Decode { key, outcome: DecodeOutcome::Panicked("boom".into()) },
            LogRecord::Ended { id: 1, state: LoadState::Failed },
        ];
        let mut writer = LogWriter::new(Vec::new(), &header()).unwrap();
        records.iter().for_each(|r| writer.append(r).unwrap());
        (writer.into_inner(), records)
    }

    #[test]
    fn a_written_log_reads_back_with_the_offset_of_every_record() {
        let (bytes, records) = log();
        let (read_header, read) = read_log(&bytes).unwrap();
        assert_eq!(read_header, header());
        assert_eq!(read.iter().map(|(_, r)| r.clone()).collect::<Vec<_>>(), records);
        assert!(read.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn bad_magic_unknown_version_truncation_and_a_frame_too_long_are_typed_with_offsets() {
        let (bytes, _) = log();
        let mut bad = bytes.clone();
        bad[0] = b'X';
        assert_eq!(read_log(&bad).unwrap_err().kind, LogErrorKind::BadMagic);
        let mut future = bytes.clone();
        future[8] = 9;
        let e = read_log(&future).unwrap_err();
        assert_eq!((e.offset, e.kind), (8, LogErrorKind::UnsupportedVersion { found: 9 }));
        let mut older = bytes.clone();
        older[8] = 2;
        assert!(read_log(&older).is_ok(), "version 2 is still read");
        older[8] = 1;
        let e = read_log(&older).unwrap_err();
        assert_eq!((e.offset, e.kind), (8, LogErrorKind::UnsupportedVersion { found: 1 }));
        let (_, records) = read_log(&bytes).unwrap();
        let last = records.last().unwrap().0;
        let e = read_log(&bytes[..bytes.len() - 1]).unwrap_err();
        assert_eq!(e.offset, last);
        assert!(matches!(e.kind, LogErrorKind::Truncated { .. }), "{e}");
        let mut huge = bytes[..last as usize].to_vec();
        let mut swallowing = bytes.clone();
        let (first, second) = (records[0].0 as usize, records[1].0 as usize);
        let len = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
        let covers_both = (second - first - 4) as u32 + 4 + len(second);
        swallowing[first..first + 4].copy_from_slice(&covers_both.to_le_bytes());
        let e = read_log(&swallowing).unwrap_err();
        assert_eq!(e.offset, first as u64);
        assert!(matches!(e.kind, LogErrorKind::Malformed { what: "record", .. }), "{e}");
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        let e = read_log(&huge).unwrap_err();
        assert_eq!((e.offset, e.kind), (last, LogErrorKind::TooLarge { len: u64::from(u32::MAX) }));
    }
}

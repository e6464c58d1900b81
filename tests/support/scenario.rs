//! Scripted sessions for replay tests: a replay log written record by record, as a recorder
//! would, with a readable builder.

use streamrt::messages::replay_log::{
    DecodeOutcome, LogConfig, LogHeader, LogPublish, LogRecord, LogWriter, ReadOutcome,
};
use streamrt::messages::{AssetKey, ErrorKind, LoadState, Priority};
use streamrt::replay::{replay, ReplayOptions, ReplayReport};

/// A session being scripted; [`Scenario::log`] gives its replay log.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// The recorded configuration (tests change what they need).
    pub config: LogConfig,
    /// The asset types.
    pub types: Vec<String>,
    records: Vec<LogRecord>,
    next_id: u64,
}

/// `type:path` as a key.
pub fn key(text: &str) -> AssetKey {
    AssetKey::parse(text).expect("a valid test key")
}

impl Default for Scenario {
    fn default() -> Self {
        Self::new()
    }
}

impl Scenario {
    /// Types `blob`, `mesh` and `texture`; 4 read credits of a whole load each, frames
    /// publishing 8 at most.
    pub fn new() -> Self {
        let config = LogConfig {
            workers: 2,
            reads_in_flight: 4,
            // One byte per credit: every load takes a whole credit, whatever its size.
            read_credit_bytes: 1,
            decode_backlog_max: 4,
            queue_capacity: 64,
            requests_outstanding_max: 1_024,
            dependency_depth_max: 32,
            dependency_nodes_max: 4_096,
            bytes_resident_max: 1 << 30,
            type_bytes_resident_max: Vec::new(),
            retry_attempts_max: 3,
            retry_backoff_ms: (2, 100),
            panics_max: 3,
            publish: LogPublish::Frames {
                publish_count_max: 8,
                publish_bytes_max: u64::MAX,
                aging_frames_max: 60,
            },
        };
        let types = ["blob", "mesh", "texture"].map(String::from).to_vec();
        Self { config, types, records: Vec::new(), next_id: 0 }
    }

    /// Sets how many requests a frame publishes at most.
    #[must_use]
    pub fn frame_budget(mut self, count: u32) -> Self {
        if let LogPublish::Frames { publish_count_max, .. } = &mut self.config.publish {
            *publish_count_max = count;
        }
        self
    }

    /// Sets the dependency levels a request's tree may have below it.
    #[must_use]
    pub fn dependency_depth(mut self, levels: u64) -> Self {
        self.config.dependency_depth_max = levels;
        self
    }

    fn push(&mut self, record: LogRecord) -> &mut Self {
        self.records.push(record);
        self
    }

    /// The engine requests `key`; returns the request's id.
    pub fn request(&mut self, key_text: &str, priority: Priority) -> u64 {
        self.request_with_deps(key_text, &[], priority)
    }

    /// The engine requests `key`, which the source says depends on `deps` (each without
    /// dependencies of its own); returns the request's id. Ids follow the runtime's order:
    /// the request first, then its dependencies.
    pub fn request_with_deps(&mut self, key_text: &str, deps: &[&str], priority: Priority) -> u64 {
        for dep in deps {
            self.push(LogRecord::Entry { key: key(dep), dependencies: Vec::new(), size: None });
        }
        let dependencies = deps.iter().map(|d| key(d)).collect();
        self.push(LogRecord::Entry { key: key(key_text), dependencies, size: None });
        let id = self.next_id + 1;
        self.next_id += 1 + deps.len() as u64;
        self.push(LogRecord::Request { id, key: key(key_text), priority });
        id
    }

    /// The engine requests `key` under the recorded id `id`, of the test's choosing (a log
    /// whose ids are not the ones the replay gives).
    pub fn request_as(&mut self, id: u64, key_text: &str, priority: Priority) -> &mut Self {
        self.push(LogRecord::Entry { key: key(key_text), dependencies: Vec::new(), size: None });
        self.push(LogRecord::Request { id, key: key(key_text), priority })
    }

    /// The engine cancels request `id`.
    pub fn cancel(&mut self, id: u64) -> &mut Self {
        self.push(LogRecord::Cancel { id })
    }

    /// The engine changes request `id`'s priority.
    pub fn reprioritize(&mut self, id: u64, priority: Priority) -> &mut Self {
        self.push(LogRecord::Reprioritize { id, priority })
    }

    /// One frame: `begin_frame` (no recorded cap, nor requests: as a version 2 log, the
    /// replay picks them within its budget) and `end_frame`.
    pub fn frame(&mut self) -> &mut Self {
        self.push(LogRecord::BeginFrame { published: u32::MAX });
        self.push(LogRecord::EndFrame)
    }

    /// One frame whose `begin_frame` published the requests `published`, in order, as a
    /// recording from version 3 on says, and `end_frame`.
    pub fn frame_publishing(&mut self, published: &[u64]) -> &mut Self {
        self.push(LogRecord::Published { requests: published.to_vec() });
        let count = u32::try_from(published.len()).expect("a test's frame");
        self.push(LogRecord::BeginFrame { published: count });
        self.push(LogRecord::EndFrame)
    }

    /// An immediate-mode publish (from version 4) that published the requests `published`.
    pub fn publishing(&mut self, published: &[u64]) -> &mut Self {
        self.push(LogRecord::Published { requests: published.to_vec() })
    }

    /// A read of `key` returns `bytes` bytes.
    pub fn read(&mut self, key_text: &str, bytes: u64) -> &mut Self {
        self.push(LogRecord::Read { key: key(key_text), outcome: ReadOutcome::Bytes(bytes) })
    }

    /// A read of `key` fails with `kind`.
    pub fn read_fails(&mut self, key_text: &str, kind: ErrorKind) -> &mut Self {
        self.push(LogRecord::Read { key: key(key_text), outcome: ReadOutcome::Failed(kind) })
    }

    /// The decoder of `key` returns a value of `bytes` bytes.
    pub fn decode(&mut self, key_text: &str, bytes: u64) -> &mut Self {
        self.push(LogRecord::Decode { key: key(key_text), outcome: DecodeOutcome::Value(bytes) })
    }

    /// The decoder of `key` panics with `message`.
    pub fn decode_panics(&mut self, key_text: &str, message: &str) -> &mut Self {
        let outcome = DecodeOutcome::Panicked(message.to_owned());
        self.push(LogRecord::Decode { key: key(key_text), outcome })
    }

    /// Read then decode `key`, `bytes` bytes each.
    pub fn load(&mut self, key_text: &str, bytes: u64) -> &mut Self {
        self.read(key_text, bytes).decode(key_text, bytes)
    }

    /// The backoff of a retry of `key`'s load ran out, and its cache queued the retry.
    pub fn retry_due(&mut self, key_text: &str) -> &mut Self {
        self.push(LogRecord::RetryDue { key: key(key_text) })
    }

    /// The recording saw request `id` end in `state`.
    pub fn ended(&mut self, id: u64, state: LoadState) -> &mut Self {
        self.push(LogRecord::Ended { id, state })
    }

    /// Any record, as it is (a hand-made or damaged log's).
    pub fn record(&mut self, record: LogRecord) -> &mut Self {
        self.push(record)
    }

    /// The engine shuts the runtime down.
    pub fn shutdown(&mut self) -> &mut Self {
        self.push(LogRecord::Shutdown)
    }

    /// The replay log of the session so far.
    pub fn log(&self) -> Vec<u8> {
        let header = LogHeader {
            recorded_by: "scenario".into(),
            types: self.types.clone(),
            config: self.config.clone(),
        };
        let mut writer = LogWriter::new(Vec::new(), &header).expect("writing to memory");
        for record in &self.records {
            writer.append(record).expect("writing to memory");
        }
        writer.into_inner()
    }

    /// Replays the session with `workers` configured workers.
    ///
    /// # Panics
    ///
    /// If the replay fails.
    pub fn replay_with(&self, workers: usize) -> ReplayReport {
        replay(&self.log(), ReplayOptions { workers: Some(workers), ..ReplayOptions::default() })
            .expect("the replay runs")
    }

    /// Replays the session and renders its transcript with the closing line, as
    /// `streamctl replay` prints it.
    pub fn transcript(&self) -> (String, ReplayReport) {
        let report = replay(&self.log(), ReplayOptions::default()).expect("the replay runs");
        let mut text: String = report.lines.iter().map(|l| format!("{l}\n")).collect();
        text.push_str(&format!(
            "replay: events={} hash={:016x}\n",
            report.lines.len(),
            report.hash
        ));
        (text, report)
    }
}

//! The control protocol, version 6: what `streamctl` and the daemon say to each other, and the
//! frames it travels in (`docs/PROTOCOL.md`).
//!
//! A frame is a `u32` little-endian length followed by that many bytes of postcard, at most
//! [`FRAME_BYTES_MAX`]. The client's first frame is [`ClientMsg::Hello`] with its version; the
//! daemon answers [`ServerMsg::Welcome`] or a [`ProtocolError`] and closes.
//!
//! # Invariants
//!
//! - [`FrameDecoder`] never holds more than `4 + FRAME_BYTES_MAX` bytes, and refuses a length
//!   over the limit as soon as the 4 length bytes arrive, before any of the payload.
//! - Decoding never panics on any input: bad bytes are a [`FrameError`]. Keys are validated as
//!   they are deserialised, so a message that decodes holds only confined keys.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};

use crate::{AssetKey, Event, LoadState, Priority, RequestId, Status};

/// The protocol version this build speaks: 6 since a daemon whose stop went wrong (the runtime
/// gave up, or a log it wrote is incomplete) tells the client that asked for the stop so
/// ([`ProtocolError::StoppedBadly`] instead of `Done`; 5 said `Done` whatever happened); 5 since a
/// daemon waiting on a waited load's requests says so ([`ServerMsg::Waiting`]; 4 said nothing until
/// each ended, and a client could not tell a slow load from a daemon that stopped answering) and
/// `Status` carries `worker_nice`; 4 since the telemetry event `started` says whether urgent loads
/// decode on their IO worker (3 answered `InFlight` in pages ended by `Done`; 2 added
/// `ProtocolError::ReplyTooLarge`, which a version 1 client could not decode).
pub const PROTOCOL_VERSION: u32 = 6;

/// The largest payload a frame may carry, in bytes.
pub const FRAME_BYTES_MAX: usize = 1 << 20;

/// The length prefix's size, in bytes.
const LEN_BYTES: usize = 4;

/// Keys one [`ClientMsg::Load`] carries at most. No more could ever be answered (this many
/// already cannot): each key's entry in [`ServerMsg::Loaded`] takes at least 16 bytes of a
/// frame (a 10-byte id, a key of two 1-byte names with their lengths, a state and a priority),
/// and a load whose answer would not fit is refused `ReplyTooLarge`. A longer list is refused as
/// it is decoded, from its length, so a decoded `Load` holds at most this many keys (about
/// 100 bytes each in memory, 6 MiB), not the 25 MiB a frame of the shortest keys would make.
pub const KEYS_PER_LOAD_MAX: usize = 65_536;

/// Request ids one [`ClientMsg::Cancel`] or [`ClientMsg::Reprioritize`] carries at most (8
/// bytes each in memory, 512 KiB), refused as they are decoded past it as keys are.
pub const IDS_PER_MSG_MAX: usize = 65_536;

fn keys_at_most<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<AssetKey>, D::Error> {
    crate::decode::at_most(d, KEYS_PER_LOAD_MAX, "keys")
}

fn ids_at_most<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<RequestId>, D::Error> {
    crate::decode::at_most(d, IDS_PER_MSG_MAX, "request ids")
}

/// What a client sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientMsg {
    /// The handshake: the first frame of every connection.
    Hello {
        /// The client's protocol version.
        version: u32,
    },
    /// The runtime's live status (`GetStatus`).
    Status,
    /// Requests assets (`LoadAsset`); answered with [`ServerMsg::Loaded`], then, if `wait`, one
    /// [`ServerMsg::Ended`] per request and [`ServerMsg::Done`], with a
    /// [`ServerMsg::Waiting`] every [`WAITING_INTERVAL_MS`] while a request has not ended.
    Load {
        /// The assets: at most [`KEYS_PER_LOAD_MAX`].
        #[serde(deserialize_with = "keys_at_most")]
        keys: Vec<AssetKey>,
        /// Their priority.
        priority: Priority,
        /// Whether to stream each request's terminal state.
        wait: bool,
    },
    /// Cancels requests the daemon holds.
    Cancel {
        /// The requests: at most [`IDS_PER_MSG_MAX`].
        #[serde(deserialize_with = "ids_at_most")]
        requests: Vec<RequestId>,
    },
    /// Changes requests' priority.
    Reprioritize {
        /// The requests: at most [`IDS_PER_MSG_MAX`].
        #[serde(deserialize_with = "ids_at_most")]
        requests: Vec<RequestId>,
        /// The new priority.
        priority: Priority,
    },
    /// The requests the daemon holds that have not ended: answered with one or more
    /// [`ServerMsg::InFlight`] pages (see [`in_flight_pages`]), then [`ServerMsg::Done`].
    InFlight,
    /// Every cache's figures and the memory budget's.
    Stats,
    /// A stream of telemetry events and a status summary every interval, until the client
    /// goes.
    Watch,
    /// Stops the daemon: every request it holds ends first.
    Shutdown,
}

/// A request the daemon holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestInfo {
    /// Its id, for `cancel` and `reprioritize`.
    pub request: RequestId,
    /// The asset.
    pub key: AssetKey,
    /// Its state.
    pub state: LoadState,
    /// Its priority.
    pub priority: Priority,
}

/// One asset type's cache figures.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypeStats {
    /// The asset type.
    pub asset_type: String,
    /// Assets queued, loading, held or parked.
    pub entries: u64,
    /// Assets decoded and held.
    pub resident: u64,
    /// Assets decoded, unreferenced and kept for reuse.
    pub parked: u64,
    /// Bytes held and parked.
    pub resident_bytes: u64,
    /// Requests served from memory.
    pub hits: u64,
    /// Loads started for requests (a request whose load a cache's restart starts again counts
    /// again).
    pub misses: u64,
    /// Assets evicted by the memory budget.
    pub evictions: u64,
    /// Keys quarantined.
    pub quarantined: u64,
}

/// What the daemon sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerMsg {
    /// The handshake's answer.
    Welcome {
        /// The daemon's protocol version.
        version: u32,
        /// The daemon's source, for humans.
        source: String,
    },
    /// The live status.
    Status(Status),
    /// The requests a `Load` made, in the order of its keys.
    Loaded(Vec<RequestInfo>),
    /// A waited-for request ended.
    Ended {
        /// The request.
        request: RequestId,
        /// The asset.
        key: AssetKey,
        /// Its terminal state.
        state: LoadState,
        /// Why it failed, if it did.
        error: Option<String>,
    },
    /// The end of a multi-frame answer.
    Done,
    /// One page of the requests in flight, each page within one frame.
    InFlight(Vec<RequestInfo>),
    /// Every type's figures, then the memory budget's resident bytes and limit.
    Stats {
        /// Per type.
        types: Vec<TypeStats>,
        /// Bytes resident, all types.
        resident_bytes: u64,
        /// The overall budget.
        bytes_resident_max: u64,
    },
    /// A telemetry event (`watch`).
    Event(Event),
    /// The daemon is stopping; the connection closes next (for the client that asked for
    /// the stop, once `Done` says it is over).
    ShuttingDown,
    /// The request could not be served. The connection stays open, unless the error is about
    /// the connection itself (framing, handshake) or the daemon cannot serve it at all: `Busy`
    /// (no place for it), `ShuttingDown` (a command other than a stop's, on a connection made
    /// before the stop began) and `StoppedBadly` (the stop's answer) close it.
    Error(ProtocolError),
    /// A waited load's request had not ended when this was sent: sent every
    /// [`WAITING_INTERVAL_MS`] while the daemon waits on it (one ending then is told its end
    /// next), so a client can tell a slow load from a daemon that stopped
    /// answering (version 5).
    Waiting {
        /// The request waited on.
        request: RequestId,
        /// Its state now.
        state: LoadState,
    },
}

/// How often a daemon waiting on a waited load's request says so ([`ServerMsg::Waiting`]), in
/// milliseconds: well within the time a client waits for it (its answer timeout, 30 s by
/// default, and 2 s at least).
pub const WAITING_INTERVAL_MS: u64 = 500;

/// Why the daemon refused something.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum ProtocolError {
    /// The client speaks another version.
    #[error("protocol version {client} is not supported; the daemon speaks {daemon}")]
    Version {
        /// The client's.
        client: u32,
        /// The daemon's.
        daemon: u32,
    },
    /// The first frame was not `Hello`, or a `Hello` came again; the connection closes.
    #[error("the first frame must be Hello")]
    HandshakeRequired,
    /// A frame could not be decoded.
    #[error("bad frame: {0}")]
    Frame(FrameError),
    /// An id names no request the daemon holds.
    #[error("no request {0}")]
    UnknownRequest(RequestId),
    /// A load was refused.
    #[error("load refused: {0}")]
    Refused(String),
    /// Too many clients are connected.
    #[error("busy: {0} clients connected")]
    Busy(usize),
    /// The daemon is shutting down.
    #[error("the daemon is shutting down")]
    ShuttingDown,
    /// The answer would not fit one frame: the client asked for too much at once (a `Load` of
    /// too many keys, checked before any request is made).
    #[error("the answer would be {bytes} bytes, over the {max}-byte frame limit: ask for less")]
    ReplyTooLarge {
        /// The answer's size.
        bytes: u64,
        /// The frame limit.
        max: u64,
    },
    /// The daemon stopped, but not cleanly: the runtime gave up while it ran, or a log it was
    /// asked to write is incomplete. Sent instead of `Done` to a client that asked for the
    /// stop (version 6), which should fail as the daemon does.
    #[error("the daemon stopped, but {0}")]
    StoppedBadly(String),
}

/// Bytes of a page's payload kept for its variant's tag and its list's length (two varints).
const PAGE_OVERHEAD_BYTES: usize = 16;

/// The size in bytes of the widest [`ServerMsg::Loaded`] answer to a load of `keys` at
/// `priority`: every id as long as an id can be encoded. Worked out without building the
/// answer, which for a load whose answer is past a frame is a few MiB.
pub fn widest_loaded_bytes(keys: &[AssetKey], priority: Priority) -> u64 {
    let entry = |key: &AssetKey| RequestInfo {
        request: RequestId(u64::MAX),
        key: key.clone(),
        state: LoadState::Pending,
        priority,
    };
    let entries = keys.iter().map(|key| encoded_size(&entry(key)));
    // The empty answer's list length (one byte) gives way to the real one's.
    let framing = encoded_size(&ServerMsg::Loaded(Vec::new())) - 1 + encoded_size(&keys.len());
    entries.fold(framing as u64, |bytes, entry| bytes.saturating_add(entry as u64))
}

/// The bytes postcard encodes `value` in.
fn encoded_size<T: Serialize>(value: &T) -> usize {
    // Only a type postcard cannot encode fails, which none of the protocol's is.
    postcard::experimental::serialized_size(value).unwrap_or(usize::MAX)
}

/// Splits `requests` into [`ServerMsg::InFlight`] pages in order, as few as fit each within
/// one frame: at least one page, empty when `requests` is. Any request fits a page, as a key
/// is at most a few KiB.
pub fn in_flight_pages(requests: Vec<RequestInfo>) -> Vec<ServerMsg> {
    let mut requests = requests.into_iter().peekable();
    let mut pages = vec![in_flight_page(&mut requests)];
    while requests.peek().is_some() {
        pages.push(in_flight_page(&mut requests));
    }
    pages
}

/// The next [`ServerMsg::InFlight`] page of `requests`: as many as fit one frame, taken from
/// `requests` (at most one more is looked at and left there), empty when it is.
pub fn in_flight_page<I: Iterator<Item = RequestInfo>>(
    requests: &mut std::iter::Peekable<I>,
) -> ServerMsg {
    let room = FRAME_BYTES_MAX - PAGE_OVERHEAD_BYTES;
    let (mut page, mut bytes) = (Vec::new(), 0usize);
    // Each request is sized once: a daemon builds its pages under its table's lock.
    while let Some(info) = requests.peek() {
        let size = encoded_size(info);
        if !page.is_empty() && bytes.saturating_add(size) > room {
            break;
        }
        bytes = bytes.saturating_add(size);
        page.extend(requests.next());
    }
    ServerMsg::InFlight(page)
}

/// Why bytes are not a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum FrameError {
    /// The length prefix is over [`FRAME_BYTES_MAX`].
    #[error("frame of {len} bytes is over the {max}-byte limit")]
    TooLarge {
        /// The length announced.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// The payload is not a valid message.
    #[error("malformed payload: {0}")]
    Malformed(String),
}

/// Encodes `msg` as one frame.
///
/// # Errors
///
/// [`FrameError::TooLarge`] if the payload is over the limit (a `Loaded` of very many keys),
/// `Malformed` if it cannot be serialised.
pub fn encode_frame<T: Serialize>(msg: &T) -> Result<Vec<u8>, FrameError> {
    let mut out = vec![0u8; LEN_BYTES];
    out = postcard::to_extend(msg, out).map_err(|e| FrameError::Malformed(e.to_string()))?;
    let len = out.len() - LEN_BYTES;
    if len > FRAME_BYTES_MAX {
        return Err(FrameError::TooLarge { len: len as u64, max: FRAME_BYTES_MAX as u64 });
    }
    let prefix = u32::try_from(len)
        .map_err(|_| FrameError::TooLarge { len: len as u64, max: FRAME_BYTES_MAX as u64 })?;
    out[..LEN_BYTES].copy_from_slice(&prefix.to_le_bytes());
    Ok(out)
}

/// Splits a byte stream into frames; see the module invariants.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    /// Where the bytes not yet decoded start in `buf`: the frames before it were taken. Those
    /// bytes are dropped at the next push, once for all the frames taken since, where dropping
    /// each frame's bytes as it was taken moved the rest of the buffer every time (a 64 KiB
    /// read of small frames moved megabytes).
    start: usize,
}

impl FrameDecoder {
    /// An empty decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes received and not yet decoded.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// How many more bytes may be pushed now without passing the frame limit.
    pub fn room(&self) -> usize {
        (LEN_BYTES + FRAME_BYTES_MAX).saturating_sub(self.buffered())
    }

    /// Appends received bytes; at most [`FrameDecoder::room`] of them are kept, the rest must
    /// be pushed again after [`FrameDecoder::next_msg`] took a frame.
    pub fn push(&mut self, bytes: &[u8]) -> usize {
        self.buf.drain(..std::mem::take(&mut self.start));
        let n = bytes.len().min(self.room());
        // Grown by doubling as a `Vec` grows, but never past one whole frame: doubling alone
        // takes a buffer that holds 1 MiB to 2 MiB, for every connection that sent one.
        let needed = self.buf.len() + n;
        if needed > self.buf.capacity() {
            let grown = (self.buf.capacity() * 2).clamp(needed, LEN_BYTES + FRAME_BYTES_MAX);
            self.buf.reserve_exact(grown - self.buf.len());
        }
        self.buf.extend_from_slice(&bytes[..n]);
        n
    }

    /// The next complete message, if one has arrived.
    ///
    /// # Errors
    ///
    /// [`FrameError::TooLarge`] as soon as a length over the limit is seen; `Malformed` when a
    /// complete payload is not a `T`. The stream cannot be resynchronised after either: close
    /// it.
    pub fn next_msg<T: DeserializeOwned>(&mut self) -> Result<Option<T>, FrameError> {
        let pending = &self.buf[self.start..];
        let Some(prefix) = pending.get(..LEN_BYTES) else { return Ok(None) };
        let mut len_bytes = [0u8; LEN_BYTES];
        len_bytes.copy_from_slice(prefix);
        let len = u32::from_le_bytes(len_bytes) as usize;
        if len > FRAME_BYTES_MAX {
            return Err(FrameError::TooLarge { len: len as u64, max: FRAME_BYTES_MAX as u64 });
        }
        let Some(payload) = pending.get(LEN_BYTES..LEN_BYTES + len) else { return Ok(None) };
        let msg = crate::decode::from_whole(payload, "message").map_err(FrameError::Malformed);
        self.start += LEN_BYTES + len;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        msg.map(Some)
    }
}

#[cfg(test)]
pub(crate) mod golden;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(k: &str) -> AssetKey {
        AssetKey::parse(k).unwrap()
    }

    #[test]
    fn a_decoder_holding_a_whole_frame_holds_no_more_than_a_frame() {
        let mut decoder = FrameDecoder::new();
        let chunk = vec![0u8; 64 << 10];
        while decoder.room() > 0 {
            decoder.push(&chunk);
        }
        assert_eq!(decoder.buffered(), LEN_BYTES + FRAME_BYTES_MAX);
        assert_eq!(decoder.buf.capacity(), LEN_BYTES + FRAME_BYTES_MAX, "not doubled past it");
    }

    #[test]
    fn messages_round_trip_through_frames_split_anywhere() {
        let msgs = [
            ClientMsg::Hello { version: PROTOCOL_VERSION },
            ClientMsg::Load {
                keys: vec![key("mesh:a.mesh"), key("texture:t/b.tex")],
                priority: Priority::High,
                wait: true,
            },
            ClientMsg::Reprioritize { requests: vec![RequestId(7)], priority: Priority::Low },
            ClientMsg::Shutdown,
        ];
        let bytes: Vec<u8> = msgs.iter().flat_map(|m| encode_frame(m).unwrap()).collect();
        for split in [1, 3, 4, 5, 17, bytes.len()] {
            let mut decoder = FrameDecoder::new();
            let mut got = Vec::new();
            for chunk in bytes.chunks(split) {
                assert_eq!(decoder.push(chunk), chunk.len());
                while let Some(msg) = decoder.next_msg::<ClientMsg>().unwrap() {
                    got.push(msg);
                }
            }
            assert_eq!(got, msgs, "split every {split} bytes");
            assert_eq!(decoder.buffered(), 0);
        }
    }

    #[test]
    fn in_flight_pages_each_fit_a_frame_and_together_hold_every_request_in_order() {
        let info = |i: u64, path: &str| RequestInfo {
            request: RequestId(i),
            key: key(&format!("blob:{path}")),
            state: LoadState::Loading,
            priority: Priority::Normal,
        };
        let longest = "p".repeat(crate::key::ASSET_PATH_BYTES_MAX - 6);
        let requests: Vec<RequestInfo> = (0..63_000u64)
            .map(|i| {
                if i % 21 == 0 {
                    info(u64::MAX - i, &format!("{longest}{i:06}"))
                } else {
                    info(i, "a")
                }
            })
            .collect();
        let pages = in_flight_pages(requests.clone());
        assert!(pages.len() >= 4, "{} pages", pages.len());
        let mut joined = Vec::new();
        for page in pages {
            encode_frame(&page).expect("each page fits a frame");
            let ServerMsg::InFlight(list) = page else { panic!("not a page: {page:?}") };
            assert!(!list.is_empty(), "no empty page among several");
            joined.extend(list);
        }
        assert_eq!(joined, requests);
        assert_eq!(in_flight_pages(Vec::new()), vec![ServerMsg::InFlight(Vec::new())]);
    }

    #[test]
    fn a_page_takes_from_its_requests_what_it_lists_and_looks_at_one_more_at_most() {
        let pulled = std::cell::Cell::new(0u64);
        let endless = (0u64..).map(|i| {
            pulled.set(i + 1);
            RequestInfo {
                request: RequestId(i),
                key: key(&format!("blob:{}", "p".repeat(200))),
                state: LoadState::Loading,
                priority: Priority::Normal,
            }
        });
        let mut requests = endless.peekable();
        let ServerMsg::InFlight(page) = in_flight_page(&mut requests) else { panic!("a page") };
        assert!(page.len() > 1000, "{} in a page", page.len());
        assert_eq!(pulled.get(), page.len() as u64 + 1, "one more looked at, and kept");
        let ServerMsg::InFlight(next) = in_flight_page(&mut requests) else { panic!("a page") };
        assert_eq!(next[0].request, RequestId(page.len() as u64), "the one looked at comes next");
    }

    #[test]
    fn the_widest_answer_to_a_load_is_sized_as_it_would_be_encoded() {
        let longest = format!("texture:{}", "p".repeat(crate::key::ASSET_PATH_BYTES_MAX - 1));
        for n in [0, 1, 127, 128, 20_000] {
            let keys: Vec<_> =
                (0..n).map(|i| key(&format!("mesh:m{i}"))).chain([key(&longest)]).collect();
            let widest = keys.iter().map(|key| RequestInfo {
                request: RequestId(u64::MAX),
                key: key.clone(),
                state: LoadState::Pending,
                priority: Priority::Critical,
            });
            let answer = postcard::to_allocvec(&ServerMsg::Loaded(widest.collect())).unwrap();
            assert_eq!(widest_loaded_bytes(&keys, Priority::Critical), answer.len() as u64, "{n}");
        }
    }

    #[test]
    fn a_length_over_the_limit_is_refused_before_its_payload_arrives() {
        let mut decoder = FrameDecoder::new();
        decoder.push(&(FRAME_BYTES_MAX as u32 + 1).to_le_bytes());
        assert!(matches!(decoder.next_msg::<ClientMsg>(), Err(FrameError::TooLarge { .. })));
    }

    #[test]
    fn a_traversal_key_does_not_decode() {
        let mut frame = encode_frame(&ClientMsg::Load {
            keys: vec![key("blob:aa/bb")],
            priority: Priority::Normal,
            wait: false,
        })
        .unwrap();
        let at = frame.windows(5).position(|w| w == b"aa/bb").unwrap();
        frame[at..at + 5].copy_from_slice(b"../bb");
        let mut decoder = FrameDecoder::new();
        decoder.push(&frame);
        let e = decoder.next_msg::<ClientMsg>().unwrap_err();
        let reason = "malformed payload: invalid key \"../bb\": `..` component";
        assert_eq!(e.to_string(), reason, "the key's own reason, not postcard's");
    }

    #[test]
    fn a_load_of_more_keys_than_an_answer_can_list_is_refused_as_it_is_decoded() {
        let load = |n: usize| ClientMsg::Load {
            keys: vec![key("a:b"); n],
            priority: Priority::Normal,
            wait: false,
        };
        let mut decoder = FrameDecoder::new();
        decoder.push(&encode_frame(&load(KEYS_PER_LOAD_MAX)).unwrap());
        assert_eq!(decoder.next_msg::<ClientMsg>(), Ok(Some(load(KEYS_PER_LOAD_MAX))));
        decoder.push(&encode_frame(&load(KEYS_PER_LOAD_MAX + 1)).unwrap());
        let e = decoder.next_msg::<ClientMsg>().unwrap_err();
        assert_eq!(e.to_string(), "malformed payload: 65537 keys, over the limit of 65536");
        // Those that pass could never all be answered past the limit: the answer to the
        // shortest keys just fits.
        let widest = |n: usize| {
            let info = RequestInfo {
                request: RequestId(u64::MAX),
                key: key("a:b"),
                state: LoadState::Pending,
                priority: Priority::Normal,
            };
            ServerMsg::Loaded(vec![info; n])
        };
        assert!(encode_frame(&widest(KEYS_PER_LOAD_MAX - 1)).is_ok());
        assert!(encode_frame(&widest(KEYS_PER_LOAD_MAX)).is_err());
        let keys = vec![key("a:b"); KEYS_PER_LOAD_MAX];
        assert_eq!(widest_loaded_bytes(&keys, Priority::Normal), 1_048_580);
        let cancel = |n: usize| ClientMsg::Cancel { requests: vec![RequestId(1); n] };
        decoder.push(&encode_frame(&cancel(IDS_PER_MSG_MAX + 1)).unwrap());
        let e = decoder.next_msg::<ClientMsg>().unwrap_err();
        assert_eq!(e.to_string(), "malformed payload: 65537 request ids, over the limit of 65536");
    }

    #[test]
    fn a_frame_longer_than_its_message_is_malformed() {
        let mut frame = encode_frame(&ClientMsg::Hello { version: PROTOCOL_VERSION }).unwrap();
        frame.push(0);
        let len = u32::try_from(frame.len() - LEN_BYTES).unwrap();
        frame[..LEN_BYTES].copy_from_slice(&len.to_le_bytes());
        let mut decoder = FrameDecoder::new();
        decoder.push(&frame);
        let e = decoder.next_msg::<ClientMsg>().unwrap_err();
        assert!(matches!(&e, FrameError::Malformed(m) if m.contains("1 bytes after")), "{e}");
    }

    #[test]
    fn frames_taken_from_one_read_are_dropped_from_the_buffer_once_at_the_next_push() {
        let frame = encode_frame(&ClientMsg::Shutdown).unwrap();
        let many: Vec<u8> = frame.iter().copied().cycle().take(frame.len() * 10_000).collect();
        let mut decoder = FrameDecoder::new();
        assert_eq!(decoder.push(&many[..many.len() - 1]), many.len() - 1);
        let mut taken = 0;
        while let Some(msg) = decoder.next_msg::<ClientMsg>().unwrap() {
            assert_eq!(msg, ClientMsg::Shutdown);
            taken += 1;
        }
        assert_eq!(taken, 9_999, "the last frame lacks its last byte");
        assert_eq!(decoder.start, many.len() - frame.len(), "nothing moved frame by frame");
        assert_eq!(decoder.buffered(), frame.len() - 1);
        decoder.push(&many[many.len() - 1..]);
        assert_eq!((decoder.start, decoder.buf.len()), (0, frame.len()), "dropped at the push");
        assert_eq!(decoder.next_msg::<ClientMsg>().unwrap(), Some(ClientMsg::Shutdown));
        assert_eq!(decoder.buffered(), 0);
    }

    #[test]
    fn a_stream_past_the_limit_is_kept_to_one_frame() {
        let mut decoder = FrameDecoder::new();
        let mut stream = u32::try_from(FRAME_BYTES_MAX).unwrap().to_le_bytes().to_vec();
        stream.resize(3 * FRAME_BYTES_MAX, 0);
        let mut kept = 0;
        for piece in stream.chunks(FRAME_BYTES_MAX / 3) {
            kept += decoder.push(piece);
            assert!(decoder.buffered() <= LEN_BYTES + FRAME_BYTES_MAX);
        }
        assert_eq!(kept, LEN_BYTES + FRAME_BYTES_MAX, "one whole frame kept, no byte more");
        assert_eq!(decoder.room(), 0);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_and_never_buffer_past_the_limit(
            bytes in proptest::collection::vec(any::<u8>(), 0..4096)
        ) {
            let mut decoder = FrameDecoder::new();
            decoder.push(&bytes);
            while let Ok(Some(_)) = decoder.next_msg::<ClientMsg>() {}
            prop_assert!(decoder.buffered() <= LEN_BYTES + FRAME_BYTES_MAX);
        }

        /// Streams longer than a frame, its length at or near the limit, in chunks of any size
        /// re-pushed as a reader does: what arbitrary short inputs cannot reach.
        #[test]
        fn a_stream_longer_than_a_frame_is_never_buffered_past_the_limit(
            below in 0usize..64,
            chunk in 1usize..(256 << 10),
            fill in any::<u8>(),
        ) {
            let len = u32::try_from(FRAME_BYTES_MAX - below).unwrap();
            let mut stream = len.to_le_bytes().to_vec();
            stream.resize(LEN_BYTES + FRAME_BYTES_MAX + 4096, fill);
            let mut decoder = FrameDecoder::new();
            let mut at = 0;
            while at < stream.len() {
                let kept = decoder.push(&stream[at..(at + chunk).min(stream.len())]);
                prop_assert!(decoder.buffered() <= LEN_BYTES + FRAME_BYTES_MAX);
                at += kept;
                match decoder.next_msg::<ClientMsg>() {
                    // A frame taken, or a bad one: the stream ends there either way.
                    Ok(Some(_)) | Err(_) => break,
                    // Still short of a frame: the decoder took bytes, or had no room left,
                    // which only a whole frame leaves it.
                    Ok(None) => prop_assert!(kept > 0, "no room and no frame at {at}"),
                }
            }
        }
    }
}

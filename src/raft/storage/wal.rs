//! The write-ahead log's records and file names.
//!
//! A node's storage is a sequence of WAL segments `wal-<seq>.log` plus snapshot files
//! `snap-<index>-<term>.snap`. Every WAL record *sets* part of the state, so replaying
//! all segments in order rebuilds it:
//!
//! - `Entries`: log entries from `entries[0].index` on; a suffix at or after that
//!   index is replaced (Raft's conflict truncation, §5.3).
//! - `HardState`: term, vote and commit.
//! - `Snapshot`: the metadata of a durable snapshot file; entries it covers are
//!   dropped. Index 0 is the bootstrap configuration of a brand-new node.
//! - `Applied`: how far the state machine had applied (informational: the state
//!   machine is rebuilt from the snapshot and the log at start-up).

use protobuf::Message as _;
use raft::eraftpb::{Entry, HardState, SnapshotMetadata};

use super::record;

const KIND_ENTRIES: u8 = 1;
const KIND_HARD_STATE: u8 = 2;
const KIND_SNAPSHOT: u8 = 3;
const KIND_APPLIED: u8 = 4;

/// One WAL record.
#[derive(Debug, Clone, PartialEq)]
pub enum WalRecord {
    Entries(Vec<Entry>),
    HardState(HardState),
    Snapshot(SnapshotMetadata),
    Applied(u64),
}

pub fn segment_name(seq: u64) -> String {
    format!("wal-{seq:020}.log")
}

pub fn parse_segment_name(name: &str) -> Option<u64> {
    name.strip_prefix("wal-")?
        .strip_suffix(".log")?
        .parse()
        .ok()
}

pub fn snapshot_name(index: u64, term: u64) -> String {
    format!("snap-{index:020}-{term:020}.snap")
}

pub fn parse_snapshot_name(name: &str) -> Option<(u64, u64)> {
    let rest = name.strip_prefix("snap-")?.strip_suffix(".snap")?;
    let (index, term) = rest.split_once('-')?;
    Some((index.parse().ok()?, term.parse().ok()?))
}

/// Appends the framed encoding of `rec` to `buf`.
pub fn encode_record(buf: &mut Vec<u8>, rec: &WalRecord) {
    let mut payload = Vec::new();
    match rec {
        WalRecord::Entries(entries) => {
            payload.push(KIND_ENTRIES);
            payload.extend_from_slice(&(entries.len() as u32).to_le_bytes());
            for e in entries {
                let bytes = e.write_to_bytes().expect("encode entry");
                payload.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
                payload.extend_from_slice(&bytes);
            }
        }
        WalRecord::HardState(hs) => {
            payload.push(KIND_HARD_STATE);
            payload.extend_from_slice(&hs.write_to_bytes().expect("encode hard state"));
        }
        WalRecord::Snapshot(meta) => {
            payload.push(KIND_SNAPSHOT);
            payload.extend_from_slice(&meta.write_to_bytes().expect("encode snapshot meta"));
        }
        WalRecord::Applied(index) => {
            payload.push(KIND_APPLIED);
            payload.extend_from_slice(&index.to_le_bytes());
        }
    }
    record::encode_into(buf, &payload);
}

/// Decodes a record payload (already checksum-verified); `Err` names what is wrong.
pub fn decode_record(payload: &[u8]) -> Result<WalRecord, String> {
    let (&kind, body) = payload.split_first().ok_or("empty record")?;
    match kind {
        KIND_ENTRIES => {
            let mut cursor = body;
            let count = take_u32(&mut cursor)? as usize;
            let mut entries = Vec::with_capacity(count.min(4096));
            for _ in 0..count {
                let len = take_u32(&mut cursor)? as usize;
                if cursor.len() < len {
                    return Err("entry runs past its record".into());
                }
                let (bytes, rest) = cursor.split_at(len);
                entries.push(Entry::parse_from_bytes(bytes).map_err(|e| e.to_string())?);
                cursor = rest;
            }
            if !cursor.is_empty() {
                return Err("trailing bytes after entries".into());
            }
            Ok(WalRecord::Entries(entries))
        }
        KIND_HARD_STATE => HardState::parse_from_bytes(body)
            .map(WalRecord::HardState)
            .map_err(|e| e.to_string()),
        KIND_SNAPSHOT => SnapshotMetadata::parse_from_bytes(body)
            .map(WalRecord::Snapshot)
            .map_err(|e| e.to_string()),
        KIND_APPLIED => {
            let bytes: [u8; 8] = body
                .try_into()
                .map_err(|_| "applied record is not 8 bytes")?;
            Ok(WalRecord::Applied(u64::from_le_bytes(bytes)))
        }
        other => Err(format!("unknown record kind {other}")),
    }
}

fn take_u32(cursor: &mut &[u8]) -> Result<u32, String> {
    if cursor.len() < 4 {
        return Err("record ends inside a length".into());
    }
    let (head, rest) = cursor.split_at(4);
    *cursor = rest;
    Ok(u32::from_le_bytes(head.try_into().expect("4 bytes")))
}

/// Encodes a snapshot file: one frame holding the metadata and the data.
/// The top bit of a snapshot file's metadata length: the state bytes after the
/// metadata are LZ4-compressed (length-prefixed). Files written without
/// compression never set it (metadata is far below 2 GiB), so they read as before.
const COMPRESSED: u32 = 1 << 31;

/// A snapshot file: one framed record holding the metadata and the state bytes,
/// those compressed when `compress`.
pub fn encode_snapshot_file(meta: &SnapshotMetadata, data: &[u8], compress: bool) -> Vec<u8> {
    let meta_bytes = meta.write_to_bytes().expect("encode snapshot meta");
    let compressed;
    let (flag, data) = if compress {
        compressed = lz4_flex::compress_prepend_size(data);
        (COMPRESSED, &compressed[..])
    } else {
        (0, data)
    };
    let mut payload = Vec::with_capacity(4 + meta_bytes.len() + data.len());
    payload.extend_from_slice(&(meta_bytes.len() as u32 | flag).to_le_bytes());
    payload.extend_from_slice(&meta_bytes);
    payload.extend_from_slice(data);
    let mut buf = Vec::with_capacity(payload.len() + record::HEADER_LEN);
    record::encode_into(&mut buf, &payload);
    buf
}

/// Decodes a snapshot file written by [`encode_snapshot_file`], compressed or not.
pub fn decode_snapshot_file(bytes: &[u8]) -> Result<(SnapshotMetadata, Vec<u8>), String> {
    let (payload, end) = record::decode_at(bytes, 0).map_err(|e| e.to_string())?;
    if end != bytes.len() {
        return Err("trailing bytes after the snapshot".into());
    }
    let mut cursor = payload;
    let word = take_u32(&mut cursor)?;
    let meta_len = (word & !COMPRESSED) as usize;
    if cursor.len() < meta_len {
        return Err("snapshot metadata runs past the file".into());
    }
    let (meta_bytes, data) = cursor.split_at(meta_len);
    let meta = SnapshotMetadata::parse_from_bytes(meta_bytes).map_err(|e| e.to_string())?;
    let data = if word & COMPRESSED != 0 {
        lz4_flex::decompress_size_prepended(data)
            .map_err(|e| format!("compressed snapshot data does not decompress: {e}"))?
    } else {
        data.to_vec()
    };
    Ok((meta, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_compressed_snapshot_round_trips_and_bad_compressed_bytes_are_an_error() {
        let meta = SnapshotMetadata {
            index: 7,
            term: 2,
            ..Default::default()
        };
        let data = b"abcabcabcabcabcabcabc".repeat(50);
        for compress in [false, true] {
            let file = encode_snapshot_file(&meta, &data, compress);
            assert_eq!(
                decode_snapshot_file(&file).unwrap(),
                (meta.clone(), data.clone())
            );
        }
        // A well-framed file whose compressed bytes are not LZ4.
        let meta_bytes = meta.write_to_bytes().unwrap();
        let mut payload = (meta_bytes.len() as u32 | COMPRESSED)
            .to_le_bytes()
            .to_vec();
        payload.extend_from_slice(&meta_bytes);
        payload.extend_from_slice(&[0xff, 0xff, 0xff, 0x7f, 1, 2, 3]);
        let mut file = Vec::new();
        record::encode_into(&mut file, &payload);
        let err = decode_snapshot_file(&file).unwrap_err();
        assert!(err.contains("does not decompress"), "{err}");
    }

    fn entry(index: u64, term: u64, data: &[u8]) -> Entry {
        Entry {
            index,
            term,
            data: data.to_vec().into(),
            ..Default::default()
        }
    }

    #[test]
    fn records_round_trip() {
        let hs = HardState {
            term: 3,
            vote: 2,
            commit: 7,
            ..Default::default()
        };
        let meta = SnapshotMetadata {
            index: 5,
            term: 2,
            ..Default::default()
        };
        let records = vec![
            WalRecord::Entries(vec![entry(1, 1, b"a"), entry(2, 1, b"")]),
            WalRecord::HardState(hs),
            WalRecord::Snapshot(meta),
            WalRecord::Applied(9),
        ];
        let mut buf = Vec::new();
        for r in &records {
            encode_record(&mut buf, r);
        }
        let mut offset = 0;
        for expected in &records {
            let (payload, next) = record::decode_at(&buf, offset).unwrap();
            assert_eq!(&decode_record(payload).unwrap(), expected);
            offset = next;
        }
        assert_eq!(offset, buf.len());
    }

    #[test]
    fn names_round_trip() {
        assert_eq!(parse_segment_name(&segment_name(42)), Some(42));
        assert_eq!(parse_snapshot_name(&snapshot_name(7, 3)), Some((7, 3)));
        assert_eq!(parse_segment_name("wal-x.log"), None);
    }
}

//! The identity file: which node of which cluster a data directory belongs to.
//!
//! Starting a node on another node's data directory (a wrong path in a config file, a copied
//! disk image) would make it vote and acknowledge with someone else's log: a silent safety
//! breach. So the first open writes the node and cluster ids into `identity`, and every later
//! open checks them.
//!
//! Byte layout (28 bytes, little-endian):
//!
//! | offset | size | field                        |
//! |--------|------|------------------------------|
//! | 0      | 8    | magic: the bytes `skiff-id`  |
//! | 8      | 8    | node id: u64                 |
//! | 16     | 8    | cluster id: u64              |
//! | 24     | 4    | crc32c of bytes 0 to 23      |

use std::path::Path;

use skiff_raft::NodeId;

use crate::error::{Error, Result};
use crate::fs::{self, Fs};

/// The identity file's name in the data directory.
pub(crate) const IDENTITY_FILE: &str = "identity";

/// The magic bytes that open the identity file.
const MAGIC: &[u8; 8] = b"skiff-id";

/// The identity file's length.
const LEN: usize = 28;

/// The identity file's bytes for a node and cluster.
fn encode(node: NodeId, cluster: u64) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(LEN);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&node.0.to_le_bytes());
    bytes.extend_from_slice(&cluster.to_le_bytes());
    let crc = crc32c::crc32c(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    bytes
}

/// Checks that `dir` belongs to `node` of `cluster`, writing the identity file if the directory
/// is new (`names` lists its files). A directory with log segments but no identity is refused.
pub(crate) fn check_or_create(
    fs: &dyn Fs,
    dir: &Path,
    names: &[String],
    has_segments: bool,
    node: NodeId,
    cluster: u64,
) -> Result<()> {
    let path = dir.join(IDENTITY_FILE);
    if !names.iter().any(|name| name == IDENTITY_FILE) {
        if has_segments {
            return Err(Error::MissingIdentity { dir: dir.to_path_buf() });
        }
        fs::write_atomically(fs, dir, IDENTITY_FILE, &encode(node, cluster))?;
        // A new data directory must itself survive a crash: its entry lives in the parent.
        if let Some(parent) = dir.parent().filter(|parent| !parent.as_os_str().is_empty()) {
            fs.sync_dir(parent).map_err(crate::error::io_error("fsync directory", parent))?;
        }
        return Ok(());
    }
    let bytes = fs::read_whole(fs, &path)?;
    let corrupt =
        |reason: &str| Error::Corrupt { file: path.clone(), offset: 0, reason: reason.into() };
    if bytes.len() != LEN || &bytes[..8] != MAGIC {
        return Err(corrupt("not an identity file"));
    }
    let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    let crc = u32::from_le_bytes(bytes[24..28].try_into().expect("4 bytes"));
    if crc32c::crc32c(&bytes[..24]) != crc {
        return Err(corrupt("the identity file's checksum does not match"));
    }
    let (found_node, found_cluster) = (NodeId(word(8)), word(16));
    if (found_node, found_cluster) != (node, cluster) {
        return Err(Error::WrongDirectory {
            dir: dir.to_path_buf(),
            node,
            cluster,
            found_node,
            found_cluster,
        });
    }
    Ok(())
}

//! Membership on a running server: where members are reached, and whom the transport talks to.
//!
//! The core decides who the members are (a configuration entry in the log, in force when
//! appended: `skiff_raft::membership`); its configuration entries hold node ids only. Where a
//! node is reached — its **peer address** — travels in a **companion entry** of the log: an
//! *address record*, an ordinary key-value put of the reserved key `"\0skiff/peer/{id}"` with
//! the address as its value, committed before the configuration entry that adds the node
//! (`POST /v1/members` writes it first, then asks for the change). Being ordinary state of the
//! replicated store, the address book is
//! - replicated to every node and applied in log order, like any write;
//! - carried in snapshots with the rest of the store, so a node that catches up from a
//!   snapshot learns the addresses of members added before it;
//! - rebuilt at restart from the snapshot and the log replayed after it: no separate file.
//!
//! Client writes to keys beginning with a NUL byte are refused (docs/http-api.md), so only the
//! membership endpoint writes address records; reads of them are allowed.
//!
//! ## Whom the transport talks to
//! [`wanted_peers`]: every member of the configuration in force except this node, at its
//! address from the address book, else from `--peers` — and the leader this node follows,
//! member or not: a leader whose removal is appended but not yet committed still leads, and
//! needs its followers' answers to commit its own removal (thesis §4.2.2). A node that has no configuration yet
//! (one started with `--join`, before the leader's first append) talks to every node of
//! `--peers`, so it can answer the leader. The runtime reconciles the transport with this set
//! whenever the configuration or the address book changes: a new member is dialled, a
//! removed one disconnected.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use bytes::Bytes;
use skiff_kv::{Command, Op, Store};
use skiff_raft::{Membership, NodeId};

/// The prefix of address records' keys; the node id follows in decimal.
pub const ADDRESS_PREFIX: &[u8] = b"\0skiff/peer/";

/// The most address records read from the store: far above any real cluster.
const MAX_ADDRESS_RECORDS: usize = 10_000;

/// The command that records `address` as the peer address of `id`.
pub fn address_record(id: NodeId, address: SocketAddr) -> Command {
    let mut key = ADDRESS_PREFIX.to_vec();
    key.extend_from_slice(id.0.to_string().as_bytes());
    Command {
        session: None,
        op: Op::Put { key: Bytes::from(key), value: Bytes::from(address.to_string()) },
    }
}

/// Whether the encoded command `bytes` may be an address record: a put or delete whose key
/// starts with [`ADDRESS_PREFIX`]. Cheap (it looks at the key's offset in skiff-kv's command
/// format, version 1, and never allocates), so every applied command can be checked; a false
/// positive only costs a re-read of the address book.
pub fn may_be_address_record(bytes: &[u8]) -> bool {
    // version (1), session marker (1), session (16 when the marker is 1), operation (1),
    // key length (4), key.
    let session = match bytes.get(1) {
        Some(1) => 16,
        Some(_) => 0,
        None => return false,
    };
    let key_at = 2 + session + 1 + 4;
    bytes.get(key_at..).is_some_and(|key| key.starts_with(ADDRESS_PREFIX))
}

/// The address book as recorded in `store`; records that do not parse are skipped with a
/// warning (only this module writes them, so none should).
pub fn addresses_in(store: &Store) -> BTreeMap<NodeId, SocketAddr> {
    let (records, _) = store.scan(ADDRESS_PREFIX, MAX_ADDRESS_RECORDS);
    let mut addresses = BTreeMap::new();
    for (key, value) in records {
        let parsed = std::str::from_utf8(&key[ADDRESS_PREFIX.len()..])
            .ok()
            .and_then(|id| id.parse::<u64>().ok())
            .zip(std::str::from_utf8(&value.data).ok().and_then(|addr| addr.parse().ok()));
        match parsed {
            Some((id, address)) if id != 0 => {
                addresses.insert(NodeId(id), address);
            }
            _ => tracing::warn!(key = ?key, "skipping an address record that does not parse"),
        }
    }
    addresses
}

/// The peers the transport should talk to (see the module documentation): `recorded`
/// addresses take precedence over `flags` (the `--peers` of this start).
pub fn wanted_peers(
    this: NodeId,
    membership: &Membership,
    leader: Option<NodeId>,
    recorded: &BTreeMap<NodeId, SocketAddr>,
    flags: &BTreeMap<NodeId, SocketAddr>,
) -> BTreeMap<NodeId, SocketAddr> {
    let mut members: Vec<NodeId> = if membership.members().is_empty() {
        flags.keys().copied().collect()
    } else {
        membership.members().into_iter().collect()
    };
    members.extend(leader);
    members
        .into_iter()
        .filter(|id| *id != this)
        .filter_map(|id| Some((id, *recorded.get(&id).or_else(|| flags.get(&id))?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn address_records_are_recognized_in_their_encoded_form_and_read_back() {
        let record = address_record(NodeId(4), addr(7004)).encode();
        assert!(may_be_address_record(&record));
        let with_session = Command {
            session: Some(skiff_kv::Session { client: 9, sequence: 1 }),
            ..address_record(NodeId(5), addr(7005))
        };
        assert!(may_be_address_record(&with_session.encode()));
        let ordinary = Command {
            session: None,
            op: Op::Put { key: Bytes::from_static(b"skiff/peer/4"), value: Bytes::new() },
        };
        assert!(!may_be_address_record(&ordinary.encode()));
        assert!(!may_be_address_record(&[]));
        assert!(!may_be_address_record(&[1]));

        let mut store = Store::new();
        store.apply(1, &record);
        store.apply(2, &with_session.encode());
        store.apply(3, &ordinary.encode());
        let expected = BTreeMap::from([(NodeId(4), addr(7004)), (NodeId(5), addr(7005))]);
        assert_eq!(addresses_in(&store), expected);
    }

    #[test]
    fn the_transport_talks_to_members_at_their_recorded_addresses() {
        let flags =
            BTreeMap::from([(NodeId(1), addr(1)), (NodeId(2), addr(2)), (NodeId(3), addr(3))]);
        let recorded = BTreeMap::from([(NodeId(2), addr(22)), (NodeId(4), addr(4))]);
        let mut membership = Membership::new([NodeId(1), NodeId(2)]);
        membership.learners.insert(NodeId(4));
        let wanted = wanted_peers(NodeId(1), &membership, None, &recorded, &flags);
        assert_eq!(wanted, BTreeMap::from([(NodeId(2), addr(22)), (NodeId(4), addr(4))]));
        // A leader being removed is still followed until its removal commits.
        let wanted = wanted_peers(NodeId(1), &membership, Some(NodeId(3)), &recorded, &flags);
        assert_eq!(wanted.get(&NodeId(3)), Some(&addr(3)));
        // Not yet in a configuration (joining): every node of --peers.
        let joining = wanted_peers(NodeId(4), &Membership::default(), None, &recorded, &flags);
        assert_eq!(
            joining,
            BTreeMap::from([(NodeId(1), addr(1)), (NodeId(2), addr(22)), (NodeId(3), addr(3))])
        );
    }
}

//! skiff-kv (being written).

//! skiff-server (being written).

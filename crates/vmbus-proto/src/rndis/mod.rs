//! RNDIS (being written).

//! NVSP (being written).

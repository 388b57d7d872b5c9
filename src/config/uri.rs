//! MongoDB connection-string parsing (filled in by the URI work).

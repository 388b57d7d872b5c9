//! Server discovery and monitoring: pure topology state (filled in by the SDAM work).

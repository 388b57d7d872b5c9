//! Configuration: file, environment, CLI, validated into an immutable `Arc<Config>`.
pub mod uri;

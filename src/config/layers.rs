//! The three layers start-up reads (file, environment, flags), kept apart so that
//! `mongoplex check-config` can say which one set each setting. [`super::Config::load`]
//! goes through here too, so the check and start-up share one path.

use std::path::{Path, PathBuf};

use super::settings::{Env, Settings, SettingsError};

/// Where a setting's effective value came from, lowest precedence first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Default,
    /// An option of the upstream connection string (e.g. `maxPoolSize`).
    Uri,
    File,
    Env,
    Flag,
}

impl Source {
    pub fn name(self) -> &'static str {
        match self {
            Self::Default => "default",
            Self::Uri => "uri",
            Self::File => "file",
            Self::Env => "env",
            Self::Flag => "flag",
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Layers {
    pub file_path: Option<PathBuf>,
    pub file: Settings,
    pub env: Settings,
    pub cli: Settings,
}

impl Layers {
    pub fn read(file: Option<&Path>, env: &dyn Env, cli: Settings) -> Result<Self, SettingsError> {
        Ok(Self {
            file_path: file.map(Path::to_path_buf),
            file: match file {
                Some(p) => Settings::from_file(p)?,
                None => Settings::default(),
            },
            env: Settings::from_env(env)?,
            cli,
        })
    }

    /// File, overlaid by the environment, overlaid by the flags.
    pub fn merged(&self) -> Settings {
        self.file
            .clone()
            .overlay(self.env.clone())
            .overlay(self.cli.clone())
    }

    /// The layer that set `key`, if any did: the one that wins in [`Layers::merged`].
    pub fn source(&self, key: &str) -> Option<Source> {
        [
            (&self.cli, Source::Flag),
            (&self.env, Source::Env),
            (&self.file, Source::File),
        ]
        .into_iter()
        .find(|(layer, _)| layer.is_set(key))
        .map(|(_, source)| source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_winning_layer_is_the_source() {
        let layers = Layers {
            file: Settings {
                max_pool_size: Some(1),
                min_pool_size: Some(1),
                listen: Some("127.0.0.1:1".into()),
                ..Settings::default()
            },
            env: Settings {
                max_pool_size: Some(2),
                min_pool_size: Some(2),
                ..Settings::default()
            },
            cli: Settings {
                max_pool_size: Some(3),
                ..Settings::default()
            },
            file_path: None,
        };
        let cases = [
            ("max_pool_size", Some(Source::Flag)),
            ("min_pool_size", Some(Source::Env)),
            ("listen", Some(Source::File)),
            ("admin", None),
            ("no_such_key", None),
        ];
        for (key, want) in cases {
            assert_eq!(layers.source(key), want, "{key}");
        }
        let merged = layers.merged();
        assert_eq!((merged.max_pool_size, merged.min_pool_size), (Some(3), Some(2)));
        assert!(Settings::keys().contains(&"max_pool_size"));
        assert!(Settings::keys().iter().all(|k| !Settings::default().is_set(k)));
    }
}

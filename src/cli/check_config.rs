//! `mongoplex check-config`: the configuration start-up would run with, one setting a
//! line, with the layer it came from. It is given the same [`Layers`] and the same
//! validated [`Config`] start-up builds, so it cannot disagree with start-up.
//!
//! Secrets never appear: the upstream URI is printed redacted, a configured password
//! only as `"***"`.

use std::time::Duration;

use crate::config::layers::{Layers, Source};
use crate::config::uri::UriOptions;
use crate::config::{Config, LogFormat, Settings};

/// One setting's effective value, or `None` when it is unset (and unset means off).
type Value = Option<String>;

fn ms(d: Duration) -> Value {
    Some(d.as_millis().to_string())
}

fn ms_or_zero(d: Option<Duration>) -> Value {
    ms(d.unwrap_or(Duration::ZERO))
}

fn text(s: &str) -> Value {
    Some(serde_json::Value::from(s).to_string())
}

fn num(n: usize) -> Value {
    Some(n.to_string())
}

/// The effective value of `key` (a [`Settings`] key); `Err` names a key this table does
/// not know, so that a setting added to `Settings` without a line here is caught by the
/// test that walks [`Settings::keys`], not printed wrong.
pub fn effective(key: &str, c: &Config, merged: &Settings) -> Result<Value, String> {
    let p = &c.pool;
    Ok(match key {
        "listen" => text(&c.listen.to_string()),
        "unix_socket" => c
            .unix_socket
            .as_ref()
            .and_then(|p| text(&p.display().to_string())),
        "admin" => text(&c.admin.map_or_else(|| "off".to_string(), |a| a.to_string())),
        "upstream" => text(&c.upstream_redacted),
        "upstream_password_file" => merged
            .upstream_password_file
            .as_ref()
            .and_then(|p| text(&p.display().to_string())),
        "upstream_password" => merged.upstream_password.as_ref().and_then(|_| text("***")),
        "max_pool_size" => num(p.max_size),
        "min_pool_size" => num(p.min_size),
        "max_connecting" => num(p.max_connecting),
        "max_idle_time_ms" => ms_or_zero(p.max_idle_time),
        "max_lifetime_ms" => ms_or_zero(p.max_lifetime),
        "wait_queue_timeout_ms" => ms(p.wait_queue_timeout),
        "long_poll_pool_size" => num(c.long_poll_pool_size),
        "connect_timeout_ms" => ms(c.connect.connect_timeout),
        "socket_timeout_ms" => ms_or_zero(c.connect.socket_timeout),
        "server_selection_timeout_ms" => ms(c.server_selection_timeout),
        "heartbeat_frequency_ms" => ms(c.heartbeat_frequency),
        "local_threshold_ms" => ms(c.local_threshold),
        "app_name" => text(&c.connect.app_name),
        "max_client_connections" => num(c.max_client_connections),
        "client_read_timeout_ms" => ms(c.client_read_timeout),
        "client_write_timeout_ms" => ms(c.client_write_timeout),
        "client_idle_timeout_ms" => ms_or_zero(c.client_idle_timeout),
        "max_buffered_bytes" => num(c.max_buffered_bytes),
        "compressors" => {
            let names: Vec<_> = c.compressors.iter().map(|k| k.name()).collect();
            Some(serde_json::Value::from(names).to_string())
        }
        "shutdown_timeout_ms" => ms(c.shutdown_timeout),
        "shutdown_delay_ms" => ms(c.shutdown_delay),
        "allow_remote_reload" => Some(c.allow_remote_reload.to_string()),
        "max_app_labels" => num(c.max_app_labels),
        "failover_buffer_window_ms" => ms(c.failover.buffer_window),
        "failover_max_duration_ms" => ms(c.failover.max_duration),
        "failover_max_buffered" => num(c.failover.max_buffered),
        "log_format" => text(match c.log_format {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }),
        "log_level" => text(&c.log_level),
        "enable_test_commands" => Some(c.enable_test_commands.to_string()),
        "dns_server" => c
            .dns
            .as_ref()
            .and_then(|d| d.server)
            .and_then(|a| text(&a.to_string())),
        "srv_min_rescan_interval_ms" => c.srv.as_ref().and_then(|s| ms(s.min_rescan_interval)),
        "client_auth" => text(c.client_auth.name()),
        "client_users_file" => match &c.client_auth {
            crate::config::client_auth::ClientAuth::File { path, .. } => text(&path.display().to_string()),
            crate::config::client_auth::ClientAuth::Off => None,
        },
        "command_allow" => Some(serde_json::Value::from(c.command_policy.allow.clone()).to_string()),
        "command_deny" => Some(serde_json::Value::from(c.command_policy.deny.clone()).to_string()),
        "tls_cert_file" => c
            .client_tls
            .as_ref()
            .and_then(|t| text(&t.cert_file.display().to_string())),
        "tls_key_file" => merged
            .tls_key_file
            .as_ref()
            .and_then(|p| text(&p.display().to_string())),
        "tls_ca_file" => c
            .client_tls
            .as_ref()
            .and_then(|t| t.ca_file.as_ref())
            .and_then(|p| text(&p.display().to_string())),
        other => return Err(format!("check-config does not know the setting {other:?}")),
    })
}

/// Whether the upstream URI sets the option behind `key`; used only where no layer
/// set `key`, since explicit settings win over URI options.
pub fn set_by_uri(key: &str, o: &UriOptions) -> bool {
    match key {
        "max_pool_size" => o.max_pool_size.is_some(),
        "min_pool_size" => o.min_pool_size.is_some(),
        "max_connecting" => o.max_connecting.is_some(),
        "max_idle_time_ms" => o.max_idle_time.is_some(),
        "wait_queue_timeout_ms" => o.wait_queue_timeout.is_some(),
        "connect_timeout_ms" => o.connect_timeout.is_some(),
        "socket_timeout_ms" => o.socket_timeout.is_some(),
        "server_selection_timeout_ms" => o.server_selection_timeout.is_some(),
        "heartbeat_frequency_ms" => o.heartbeat_frequency.is_some(),
        "local_threshold_ms" => o.local_threshold.is_some(),
        "app_name" => o.app_name.is_some(),
        _ => false,
    }
}

pub fn source(key: &str, layers: &Layers, c: &Config) -> Source {
    layers
        .source(key)
        .unwrap_or(if set_by_uri(key, &c.upstream.options) {
            Source::Uri
        } else {
            Source::Default
        })
}

/// The report: a few `#` lines on the upstream, then `key = value  # source` for every
/// setting (`(unset)` for an unset one).
pub fn report(layers: &Layers, c: &Config) -> Result<String, String> {
    let merged = layers.merged();
    let mut out = String::from("# mongoplex check-config: the configuration is valid\n");
    if let Some(p) = &layers.file_path {
        out += &format!("# file: {}\n", p.display());
    }
    let seeds: Vec<String> = c.seeds.iter().map(ToString::to_string).collect();
    out += &format!(
        "# upstream: seeds {}, replica set {}, directConnection {}, TLS {}\n",
        seeds.join(","),
        c.replica_set.as_deref().unwrap_or("(none)"),
        c.direct_connection,
        if c.connect.tls.is_some() { "on" } else { "off" },
    );
    match &c.connect.credential {
        Some(cred) => {
            use crate::auth::Method;
            let mechanism = match cred.method {
                Method::Scram(None) => "negotiated (SCRAM)",
                Method::Scram(Some(m)) => m.name(),
                Method::X509 => "MONGODB-X509",
            };
            let user = cred.username.as_deref().unwrap_or("(the certificate's subject)");
            out += &format!(
                "# upstream login: user {user:?} on {:?}, mechanism {mechanism}\n",
                cred.source,
            );
        }
        None => out += "# upstream login: none\n",
    }
    if let Some(users) = c.client_auth.users() {
        out += &format!("# client login: {} users in client_users_file\n", users.len());
    }
    for w in &c.upstream.warnings {
        out += &format!("# warning: upstream connection string: {w}\n");
    }
    for key in Settings::keys() {
        let value = effective(key, c, &merged)?.unwrap_or_else(|| "(unset)".into());
        let line = format!("{key} = {value}");
        out += &format!("{line:<56} # {}\n", source(key, layers, c).name());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::uri::Secret;

    fn check(layers: &Layers) -> String {
        let c = Config::validate(layers.merged()).expect("valid");
        report(layers, &c).expect("every key known")
    }

    fn line<'a>(report: &'a str, key: &str) -> &'a str {
        report
            .lines()
            .find(|l| l.starts_with(&format!("{key} = ")))
            .unwrap_or_else(|| panic!("no line for {key} in\n{report}"))
    }

    #[test]
    fn every_setting_has_a_line_and_a_source() {
        let layers = Layers {
            file: Settings {
                upstream: Some(
                    "mongodb://svc:uri-secret@h1,h2/?replicaSet=rs0&maxPoolSize=7&appName=a".into(),
                ),
                max_connecting: Some(3),
                ..Settings::default()
            },
            env: Settings {
                upstream_password: Some(Secret::new("env-secret")),
                max_connecting: Some(4),
                ..Settings::default()
            },
            cli: Settings {
                log_level: Some("debug".into()),
                ..Settings::default()
            },
            file_path: Some("/etc/mongoplex.toml".into()),
        };
        let r = check(&layers);
        assert_eq!(
            r.lines().filter(|l| !l.starts_with('#')).count(),
            Settings::keys().len()
        );
        let cases = [
            ("max_pool_size", "7", "uri"),
            ("app_name", "\"a\"", "uri"),
            ("max_connecting", "4", "env"),
            ("log_level", "\"debug\"", "flag"),
            ("upstream_password", "\"***\"", "env"),
            ("min_pool_size", "0", "default"),
            ("unix_socket", "(unset)", "default"),
            (
                "upstream",
                "\"mongodb://svc:***@h1,h2/?replicaSet=rs0&maxPoolSize=7&appName=a\"",
                "file",
            ),
        ];
        for (key, value, source) in cases {
            let l = line(&r, key);
            let (lhs, src) = l.split_once('#').unwrap();
            assert_eq!(lhs.trim(), format!("{key} = {value}"), "{l}");
            assert_eq!(src.trim(), source, "{l}");
        }
        assert!(!r.contains("secret"), "a password leaked:\n{r}");
        assert!(r.contains("# file: /etc/mongoplex.toml"), "{r}");
        assert!(r.contains("user \"svc\" on \"admin\""), "{r}");
    }

    #[test]
    fn an_unknown_key_is_an_error_not_a_blank() {
        let c = Config::validate(Settings::default()).unwrap();
        let e = effective("dns_servr", &c, &Settings::default()).unwrap_err();
        assert!(e.contains("dns_servr"), "{e}");
    }
}

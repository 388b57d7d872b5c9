//! SecantusDB with `--auth` and users (../shared/PEERS.md): the users are created on a
//! store on disk without `--auth`, the server is stopped, and started again on the same
//! store with `--auth`.

#![allow(dead_code)]

use std::path::PathBuf;

use mongodb::bson::{doc, Document};

use super::peers::{unique_temp_dir, Secantus};

/// A user to create: name, password, mechanisms (empty: the server's default, both).
pub type User<'a> = (&'a str, &'a str, &'a [&'a str]);

pub struct AuthSecantus {
    pub server: Secantus,
    data: PathBuf,
}

impl Drop for AuthSecantus {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

impl AuthSecantus {
    /// A server with `--auth` whose admin database holds `users`, each with root.
    pub async fn start(users: &[User<'_>]) -> Self {
        Self::start_with(users, &[], &[]).await
    }

    /// Like [`AuthSecantus::start`], with `commands` run (each on its database) before
    /// `--auth` is turned on, and `restart` flags for the server with `--auth`: TLS
    /// flags (`--tls-*`) make it a TLS server.
    pub async fn start_with(users: &[User<'_>], commands: &[(&str, Document)], restart: &[&str]) -> Self {
        let data = unique_temp_dir("secantus-auth");
        let store = data.join("store");
        let store_arg = store.to_str().unwrap().to_owned();
        let mut setup = Secantus::start_with_args(&["--storage-path", &store_arg]);
        {
            let client = mongodb::Client::with_uri_str(setup.uri()).await.unwrap();
            for (name, pwd, mechanisms) in users {
                let mut cmd = doc! { "createUser": *name, "pwd": *pwd, "roles": ["root"] };
                if !mechanisms.is_empty() {
                    cmd.insert("mechanisms", mechanisms.to_vec());
                }
                client
                    .database("admin")
                    .run_command(cmd)
                    .await
                    .expect("createUser");
            }
            for (db, cmd) in commands {
                client
                    .database(db)
                    .run_command(cmd.clone())
                    .await
                    .unwrap_or_else(|e| panic!("{cmd}: {e}"));
            }
        }
        setup.terminate();
        drop(setup);
        let mut args = vec!["--storage-path", &store_arg, "--auth"];
        args.extend_from_slice(restart);
        let server = if restart.iter().any(|a| a.starts_with("--tls")) {
            Secantus::start_tls(&args)
        } else {
            Secantus::start_with_args(&args)
        };
        Self { server, data }
    }

    /// `mongodb://USER:PASSWORD@127.0.0.1:PORT/` plus `options` (with `?`).
    pub fn uri_as(&self, user: &str, password: &str, options: &str) -> String {
        format!("mongodb://{user}:{password}@{}/{options}", self.server.addr())
    }
}

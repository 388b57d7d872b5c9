//! mongoplex: a MongoDB connection pooler.
//!
//! # How a request travels
//!
//! Layers run bytes → frame → command → action:
//!
//! 1. [`server`] accepts a client (TCP or unix socket) under the client-connection limit
//!    (lowered by [`fdlimit`] when descriptors are short) and spawns a [`session`] for it;
//!    a client past the limit has its hello answered with an error ([`session::refuse`]).
//! 2. [`session`] reads whole messages with [`wire::FrameReader`] (lengths checked
//!    before allocating; no buffer held while the client is idle), unwraps
//!    OP_COMPRESSED, and parses the OP_MSG view ([`wire::OpMsg`]).
//! 3. [`command`] reads the few top-level fields that matter (name, `$db`, `lsid`,
//!    `txnNumber`, `$readPreference`, cursor ids) from the raw body, and holds the one
//!    table of what each command is ([`command::Spec`]: its route, read or write and
//!    retryability, cursor role). Routing, retries, labels and pins read it.
//! 4. hello/isMaster is answered locally by [`handshake`] as a mongos. With
//!    `client_auth = "file"` the client logs in to the proxy itself (SCRAM, often inside
//!    hello: [`auth::login`] over the secrets of [`auth::users`]), and
//!    [`command::policy`] (pure, from the table's `gate` column) decides what it may send
//!    before and after. Everything else goes to [`router`], a pure function from command and [`pins`] to a target: a pinned
//!    member (cursor, transaction) or selection criteria.
//! 5. [`topology`] selects a member (monitors per member feed it; the pure SDAM state
//!    machine and selection rules live in [`sdam`]), and that member's [`pool`] hands out
//!    an [`upstream`] connection, FIFO, bounded by waitQueueTimeoutMS; a new one logs in
//!    with the proxy's credential ([`auth`], SCRAM or X.509).
//! 6. The request's bytes go upstream with a new requestID (compressed when that
//!    connection negotiated a compressor, [`upstream::compression`]; replies are inflated
//!    in [`upstream`] before anything reads them); the reply comes back, the
//!    connection is checked in (on drop), pins are updated, state-change errors are
//!    reported to the topology, and the reply is written with the client's responseTo.
//!    Errors the proxy makes itself are MongoDB error documents from [`errors`].
//!
//! Retries are decided by [`retry`] (pure), capped across the driver's own retries by
//! [`attempts`]; errors from members are reported as a mongos would by
//! [`command::translate`]. A client's `maxTimeMS` bounds every wait of steps 5 and 6 and
//! the retries, and what is left of it is what the server is sent ([`budget`], pure).
//!
//! Around that: [`config`] (file → environment → CLI → validated `Arc<Config>`; for a
//! `mongodb+srv://` upstream, [`srv`] looks up the seeds at start-up and rescans them),
//! [`metrics`] (one struct of Prometheus handles, registry passed in), [`admin`]
//! (`/metrics`, `/live`, `/ready`, `/status`, `POST /reload`), [`reload`] (SIGHUP and
//! `/reload`: which changed settings apply live, published on a `watch` in [`context`]),
//! and [`context`] (the handles every session shares). [`cli`] holds the binary's
//! operator subcommands (`health`, `check-config`, `top`). Hostile input is bounded by
//! [`memory`] (one budget for large messages and
//! replies), the client limits in [`server`] and [`session::refuse`], [`fdlimit`], and
//! [`throttle`] (rate-limited logs of repeated events). There is no global state;
//! shutdown is CancellationToken plus TaskTracker.
#![forbid(unsafe_code)]
pub mod address;
pub mod admin;
pub mod attempts;
pub mod auth;
pub mod budget;
pub mod cli;
pub mod command;
pub mod config;
pub mod context;
pub mod errors;
pub mod failpoint;
pub mod fdlimit;
pub mod handshake;
pub mod memory;
pub mod metrics;
pub mod pins;
pub mod pool;
pub mod reload;
pub mod retry;
pub mod router;
pub mod sdam;
pub mod server;
pub mod session;
pub mod srv;
pub mod throttle;
pub mod topology;
pub mod upstream;
pub mod wire;

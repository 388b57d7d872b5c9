//! What client authentication costs (`client_auth = "file"`), measured with raw OP_MSG
//! clients through mongoplex in front of SecantusDB:
//! - 200 sequential connections (connect, hello, ping, close), without a login and with
//!   one (hello carrying speculativeAuthenticate, then the proof in saslContinue): the
//!   difference in wall time and in this process's CPU time, per connection;
//! - 1,000 clients logging in at once: the time until all have, and that all did.
//!
//! The clients derive their keys once, so the CPU they add is a few HMACs; the rest is
//! the proxy's. The figures are printed (README quotes them) and bounded loosely, so
//! that a login that ran PBKDF2 per connection (about 15 ms of CPU each in a debug
//! build) fails the test.

mod common;

use std::time::{Duration, Instant};

use bson::{rawdoc, RawDocument, RawDocumentBuf};
use common::peers::{unique_temp_dir, Secantus};
use common::proxy::TestProxy;
use mongoplex::auth::scram::{ClientFirst, Keys, Mechanism};
use mongoplex::wire::{build_msg, decode_frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PASSWORD: &str = "cost-Pw1";

async fn cmd(s: &mut TcpStream, buf: &mut bytes::BytesMut, body: &RawDocument) -> RawDocumentBuf {
    let frame = build_msg(1, 0, 0, body.as_bytes());
    s.write_all(frame.as_bytes()).await.unwrap();
    loop {
        if let Some(f) = decode_frame(buf, 64 << 20).unwrap() {
            return RawDocument::from_bytes(&f.payload()[5..]).unwrap().to_owned();
        }
        let n = tokio::time::timeout(Duration::from_secs(60), s.read_buf(buf))
            .await
            .expect("a reply within 60 s")
            .unwrap();
        assert!(n > 0, "the proxy closed the connection");
    }
}

fn bin(s: &str) -> bson::Binary {
    bson::Binary {
        subtype: bson::spec::BinarySubtype::Generic,
        bytes: s.as_bytes().to_vec(),
    }
}

/// One connection: hello (with a speculative login when `keys` is given), the proof,
/// ping, close. Returns the keys it derived when it had none (the first connection).
async fn one(addr: std::net::SocketAddr, keys: Option<&Keys>) -> Option<Keys> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    let mut buf = bytes::BytesMut::new();
    let m = Mechanism::Sha256;
    let nonce = format!("{:x}", rand::random::<u64>());
    let first = ClientFirst::new(m, "app", &nonce);
    let mut hello = rawdoc! { "hello": 1, "$db": "admin" };
    let mut derived = None;
    {
        hello.append(
            bson::cstr!("speculativeAuthenticate"),
            rawdoc! { "saslStart": 1, "mechanism": m.name(), "payload": bin(&first.message()), "db": "admin", "options": { "skipEmptyExchange": true } },
        );
    }
    let reply = cmd(&mut s, &mut buf, &hello).await;
    {
        let spec = reply
            .get_document("speculativeAuthenticate")
            .expect("a speculative answer");
        let payload = String::from_utf8(spec.get_binary("payload").unwrap().bytes.to_vec()).unwrap();
        let challenge = first.server_first(&payload).unwrap();
        let keys = match keys {
            Some(k) => k.clone(),
            None => {
                let prepared = m.prepare_password("app", PASSWORD).unwrap();
                let k = Keys::derive(m, &prepared, &challenge.salt, challenge.iterations);
                derived = Some(k.clone());
                k
            }
        };
        let (client_final, signature) = challenge.client_final(&keys);
        let id = spec.get_i32("conversationId").unwrap();
        let done = cmd(
            &mut s,
            &mut buf,
            &rawdoc! { "saslContinue": 1, "conversationId": id, "payload": bin(&client_final), "$db": "admin" },
        )
        .await;
        assert!(done.get_bool("done").unwrap_or(false), "login failed: {done:?}");
        let v = String::from_utf8(done.get_binary("payload").unwrap().bytes.to_vec()).unwrap();
        signature.verify(&v).unwrap();
    }
    let ping = cmd(
        &mut s,
        &mut buf,
        &rawdoc! { "find": "c", "limit": 1, "$db": "cost" },
    )
    .await;
    assert!(
        ping.get_document("cursor").is_ok(),
        "find after the login: {ping:?}"
    );
    derived
}

async fn one_plain(addr: std::net::SocketAddr) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    let mut buf = bytes::BytesMut::new();
    cmd(&mut s, &mut buf, &rawdoc! { "hello": 1, "$db": "admin" }).await;
    let ping = cmd(
        &mut s,
        &mut buf,
        &rawdoc! { "find": "c", "limit": 1, "$db": "cost" },
    )
    .await;
    assert!(ping.get_document("cursor").is_ok(), "{ping:?}");
}

/// This process's user + system CPU time.
fn cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cost_of_a_client_login() {
    let _ = mongoplex::fdlimit::raise();
    let upstream = Secantus::start();
    let users = unique_temp_dir("cost-users").join("users.toml");
    mongoplex::auth::users::add(&users, "app", "admin", PASSWORD, &[Mechanism::Sha256]).unwrap();
    let plain = TestProxy::builder(&upstream.seed_uri())
        .max_pool_size(4)
        .start()
        .await;
    let users_path = users.clone();
    let auth = TestProxy::builder(&upstream.seed_uri())
        .max_pool_size(4)
        .settings(move |s| {
            s.client_auth = Some("file".into());
            s.client_users_file = Some(users_path);
        })
        .start()
        .await;
    let keys = one(auth.addr, None).await.expect("derived once");
    one_plain(plain.addr).await;

    const N: u32 = 200;
    let (cpu0, t0) = (cpu(), Instant::now());
    for _ in 0..N {
        one_plain(plain.addr).await;
    }
    let (plain_cpu, plain_wall) = (cpu() - cpu0, t0.elapsed());
    let (cpu0, t0) = (cpu(), Instant::now());
    for _ in 0..N {
        one(auth.addr, Some(&keys)).await;
    }
    let (auth_cpu, auth_wall) = (cpu() - cpu0, t0.elapsed());
    let per = |d: Duration| d.as_secs_f64() * 1e6 / f64::from(N);
    let added_cpu = per(auth_cpu) - per(plain_cpu);
    let added_wall = per(auth_wall) - per(plain_wall);
    println!(
        "COST {N} sequential connections: without login {:.0} us wall, {:.0} us CPU each; with login {:.0} us wall, {:.0} us CPU each; added {added_wall:.0} us wall, {added_cpu:.0} us CPU",
        per(plain_wall),
        per(plain_cpu),
        per(auth_wall),
        per(auth_cpu)
    );

    const M: usize = 1000;
    let t0 = Instant::now();
    let addr = auth.addr;
    let tasks: Vec<_> = (0..M)
        .map(|_| {
            let keys = keys.clone();
            tokio::spawn(async move { one(addr, Some(&keys)).await })
        })
        .collect();
    for t in tasks {
        t.await.expect("every client logs in");
    }
    let storm = t0.elapsed();
    println!(
        "COST {M} clients logging in at once: all done in {:.2} s",
        storm.as_secs_f64()
    );

    // A PBKDF2 run per login (15000 rounds) would cost milliseconds each.
    assert!(added_cpu < 2_000.0, "a login added {added_cpu:.0} us of CPU");
    assert!(storm < Duration::from_secs(60), "1000 logins took {storm:?}");
    plain.shutdown().await;
    auth.shutdown().await;
}

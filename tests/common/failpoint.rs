//! SecantusDB's `failCommand` fail point, armed for one matching command.

#![allow(dead_code)]

use mongodb::bson::{doc, Document};
use mongodb::Client;

/// Arms `failCommand` with `data` for the next matching command, via a direct client.
pub async fn fail_once(direct: &Client, data: Document) {
    direct
        .database("admin")
        .run_command(doc! { "configureFailPoint": "failCommand", "mode": { "times": 1 }, "data": data })
        .await
        .expect("configureFailPoint");
}
